"""Activation patching heatmaps for the item: saved results (a `mechinterp patch` table) and an exact sweep
run on demand (no heads)."""

import streamlit as st

from mechinterp.explore import compute, figures, ui
from mechinterp.explore.results import read_kind
from mechinterp.locate.figures import DIRECTION_TITLE

sel = ui.selection()
ui.header(sel, "Activation patching")
st.caption("Normalised effect: 0 = the ambiguous (corrupt) run's surprisal of the disambiguating word, 1 = the "
           "unambiguous (clean) run's. Each cell patches one site at the last token of one region.")


def show(df, where: str) -> None:
    comps = [c for c in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out") if c in set(df["component"])]
    dirs = [d for d in ("clean_to_corrupt", "corrupt_to_clean") if d in set(df["direction"])]
    if not comps or not dirs:
        st.info("No exact patching rows (heads and attribution rows are not drawn here).")
        return
    c1, c2 = st.columns(2)
    comp = c1.selectbox("Component", comps, key=f"comp_{where}")
    direction = c2.selectbox("Direction", dirs, key=f"dir_{where}", format_func=lambda d: DIRECTION_TITLE.get(d, d))
    grid = compute.patching_grid(df, direction, comp)
    if grid.empty:
        st.info("No rows for this component and direction.")
        return
    st.plotly_chart(figures.patching_heatmap(grid, f"{comp}, {direction}"), key=f"heat_{where}")
    row = df.iloc[0]
    st.caption(f"Metric {row['metric']}: clean {row['clean_value']:.2f}, corrupt {row['corrupt_value']:.2f} "
               "(bits) for this item.")


with ui.guard("saved patching results"):
    cat = ui.catalogue(sel)
    if cat is not None and not sel.typed:
        m = ui.model(sel)
        saved, used = read_kind(cat, "patching", m.weights_sha256, m.name, sel.suite.name)
        mine = saved[saved["item"].astype(str) == sel.item.key] if len(saved) else saved
        if len(mine):
            st.subheader("Saved")
            show(mine, "saved")
            st.caption("From " + ", ".join(str(t.path) for t in used))
        else:
            st.info(f"No saved patching rows for {m.name}, suite {sel.suite.name}, item {sel.item.key} under "
                    f"{cat.root} (write them with `mechinterp patch --suite {sel.suite.name} --out "
                    f"{cat.root}/patch.parquet`).")

st.subheader("Run on demand")
with ui.guard("patching"):
    if not compute.has_pair(sel.suite, sel.item):
        st.info("Patching needs both versions of the item: type an unambiguous control sentence too.")
    else:
        spec = st.text_input("Sites", compute.DEFAULT_PATCH_SWEEP, key="patch_spec",
                             help="site spec (see mechinterp.locate.sites): region=* = each region before the disambiguator")
        metric = st.selectbox("Metric", ["surprisal", "logprob_diff"], key="patch_metric")
        key = (sel.model_name, ui.suite_key(sel), sel.item.key, spec, metric)
        if st.button("Run patching for this item", key="run_patch"):
            st.session_state["_patch_key"] = key
        if st.session_state.get("_patch_key") == key:
            show(ui.patching(sel, spec, metric), "live")

"""The reading probes over layers at the item's ambiguous words: saved probe artifacts (from a sweep's results
store) applied on demand, the sweep's saved readout of this item, and its verdicts for the construction."""

import streamlit as st

from mechinterp.explore import compute, figures, ui
from mechinterp.explore.results import read_kind
from mechinterp.stimuli.constructions import canonical_construction

sel = ui.selection()
ui.header(sel, "Reading probes")
st.caption("Linear probes trained on varied unambiguous sentences (never on the minimal pairs), read at the last "
           "token of the ambiguous region. P = the probability of the reading people prefer.")

HOW = ("Train probes with a sweep, e.g. `mechinterp sweep sweeps/quick.toml` (SmolLM2) or "
       "`mechinterp sweep sweeps/readings.toml`, and point the explorer at the sweep's folder (or a parent of it).")

with ui.guard("probes"):
    cat = ui.catalogue(sel)
    if cat is not None:
        m = ui.model(sel)
        cons = canonical_construction(sel.construction)
        refs = [p for p in cat.probes if p.construction == cons
                and (p.weights_sha256 == m.weights_sha256 if p.weights_sha256 else p.model == m.name)]
        if not refs:
            others = sorted({f"{p.model} / {p.construction}" for p in cat.probes})
            st.warning(f"No saved reading probes for {m.name} and construction {cons} under {cat.root}. "
                       + (f"Found probes for: {', '.join(others)}. " if others else "") + HOW)
        else:
            comps = sorted({p.component for p in refs})
            comp = st.selectbox("Component", comps, key="probe_component") if len(comps) > 1 else comps[0]
            chosen = [str(p.path) for p in refs if p.component == comp]
            curve = ui.probe_curve(sel, chosen)
            summ = compute.summarise_curve(curve)
            st.plotly_chart(figures.probe_curve_figure(
                summ, f"P({curve['preferred_reading'].iloc[0]}) at the ambiguous words, {comp}"), key="probe_fig")
            seeds = summ["n_seeds"].max()
            st.caption(f"{len(chosen)} probes ({summ['layer'].nunique()} layers, up to {seeds} seed(s); band = "
                       f"min-max over seeds). Readings: {curve['preferred_reading'].iloc[0]} (P → 1) vs "
                       f"{curve['other_reading'].iloc[0]} (P → 0).")
            with st.expander("Values"):
                st.dataframe(summ, hide_index=True)

        verdicts, used = read_kind(cat, "probe_verdicts", m.weights_sha256, m.name,
                                   None if sel.typed else sel.suite.name)
        if len(verdicts):
            v = verdicts[(verdicts["construction"] == cons)]
            if "model" in v:
                v = v[v["model"] == m.name]
            if len(v):
                st.subheader(f"Verdicts for {cons} (saved)")
                keep = [c for c in ("suite", "seed", "component", "layer", "accuracy", "z", "z_low", "z_high", "delta",
                                    "verdict") if c in v.columns]
                st.dataframe(v.sort_values([c for c in ("component", "layer", "seed") if c in v.columns])[keep],
                             hide_index=True)
        if not sel.typed:
            readout, used = read_kind(cat, "probe_readout", m.weights_sha256, m.name, sel.suite.name)
            if len(readout):
                r = readout[readout["item"].astype(str) == sel.item.key]
                if "model" in r:
                    r = r[r["model"] == m.name]
                if len(r):
                    st.plotly_chart(figures.readout_layers_figure(r), key="readout_fig")

"""SAE feature activations along the item's sentences, for an SAE found under the results directory (or
typed): the features that differ most between the two versions at the ambiguous words."""

import streamlit as st

from mechinterp.explore import figures, ui
from mechinterp.explore.results import read_kind

sel = ui.selection()
ui.header(sel, "SAE features")

with ui.guard("SAE"):
    cat = ui.catalogue(sel, quiet=True)
    found = [str(p) for p in cat.saes] if cat is not None else []
    typed = st.text_input("SAE directory (optional)", key="sae_path", placeholder="out/sae-l6",
                          help="an SAE-Lens directory (cfg.json + sae_weights.safetensors) under the results "
                               "directory or a folder allowed with --allow-path").strip()
    if typed:
        typed = ui.allowed_path(typed, "SAE directory")
    options = ([typed] if typed else []) + found
    if not options:
        st.warning("No SAE found" + (f" under {cat.root}" if cat is not None else "") + ". Train one with "
                   "`mechinterp sae train --model ... --layer 6 --out out/sae-l6` or type its directory above.")
    else:
        path = st.selectbox("SAE", options, key="sae_choice")
        sae = ui.load_sae(path)
        m = ui.model(sel)
        sae.check_model(m)
        if sae.model_name and sae.model_name != m.name:
            st.warning(f"This SAE was trained on {sae.model_name}, not on {m.name}.")
        n = st.slider("Features shown", 3, 20, 8, key="sae_n")
        res = ui.sae_item(sel, path, n)
        st.caption(f"{sae.hook_name}, {sae.d_sae} features. Ranked by: {res.position}.")
        if res.ranking.empty:
            st.info("No feature is active at the ranked position.")
        else:
            st.dataframe(res.ranking, hide_index=True)
            for cond in dict.fromkeys(res.tokens["condition"]):
                st.plotly_chart(figures.sae_heatmap(res.tokens, cond), key=f"sae_{cond}")
        if cat is not None and not sel.typed:
            summ, _ = read_kind(cat, "sae_summary", m.weights_sha256, m.name, sel.suite.name)
            if len(summ):
                s = summ[(summ["layer"] == sae.layer) & (summ["component"] == sae.component)] \
                    if {"layer", "component"} <= set(summ.columns) else summ
                st.subheader("Saved: top features per reading in this suite")
                st.dataframe(s.drop(columns=["_source"], errors="ignore"), hide_index=True)

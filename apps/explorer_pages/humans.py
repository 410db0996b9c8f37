"""The human comparison for the item's construction: the SAP Benchmark's garden-path effects (ms) at ROIs 0-2,
the item's effect in bits, and, with a saved surprisal-to-ms link for this model, its predicted effect in ms
(with and without the active intervention)."""

import pandas as pd
import streamlit as st

from mechinterp.explore import compute, figures, ui
from mechinterp.explore.results import read_kind

sel = ui.selection()
ui.header(sel, "Humans")

with ui.guard("human comparison"):
    cons = sel.construction
    human = compute.human_effects(cons)
    spec = ui.active_intervention()
    runs = {"original": ui.words(sel)}
    if spec:
        runs[f"intervention: {spec}"] = ui.words(sel, spec)
    effects = {name: compute.item_effects(w, sel.suite, sel.item) for name, w in runs.items()}
    model_ms = None
    cat = ui.catalogue(sel, quiet=True)
    m = ui.model(sel)
    if cat is not None and cat.linking and compute.has_pair(sel.suite, sel.item):
        from mechinterp.compare.linking import LinkingFit

        fits = [LinkingFit.load(p) for p in cat.linking]
        fits = [f for f in fits if not f.model or f.model.get("weights_sha256") == m.weights_sha256]
        if fits:
            fit = fits[0]
            model_ms = pd.concat([compute.item_predicted_ms(w, sel.suite, sel.item, fit).assign(label=f"{m.name}: {name}")
                                  for name, w in runs.items()], ignore_index=True)
    if human.empty:
        st.warning(f"The SAP Benchmark has no human effects for construction {cons!r} (it covers NP/Z, NP/S and "
                   "MV/RR). Pick one of those (for a typed sentence: the Construction box).")
    else:
        st.plotly_chart(figures.human_figure(human, model_ms, f"{cons}: garden-path effect in reading times"),
                        key="human_fig")
        st.caption("Humans: SAP Benchmark ClassicGP self-paced reading (Huang et al. 2024), mean over items with "
                   "95% intervals. ROI 0 = the disambiguating word, 1-2 = the words after it.")
        if model_ms is None:
            st.info("No saved surprisal-to-ms link for this model under the results directory, so the item is shown "
                    "in bits only. Save one with `mechinterp compare ... --naturalstories DIR --save-linking "
                    "out/link.json`.")
    rows = []
    for name, e in effects.items():
        if e is not None:
            rows.append(e.assign(run=name)[["run", "roi", "word", "effect_bits"]])
    if rows:
        st.subheader("This item (bits)")
        table = pd.concat(rows, ignore_index=True).pivot_table(index=["roi", "word"], columns="run",
                                                               values="effect_bits").reset_index()
        st.dataframe(table, hide_index=True)
    else:
        st.info("Only one version of this sentence: no item effect to compare.")
    if model_ms is not None:
        st.dataframe(model_ms, hide_index=True)
    if not human.empty:
        from mechinterp.compare.humans import noise_ceiling

        ceil = noise_ceiling()
        ceil = ceil[ceil["construction"] == human["construction"].iloc[0]]
        with st.expander("Human data"):
            st.dataframe(human, hide_index=True)
            st.caption("Split-half reliability of the human by-item effects (the ceiling for any item-level "
                       "correlation):")
            st.dataframe(ceil, hide_index=True)
    if cat is not None:
        saved, used = read_kind(cat, "compare", m.weights_sha256, m.name, None if sel.typed else sel.suite.name)
        if len(saved):
            s = saved[saved["construction"] == human["construction"].iloc[0]] if not human.empty else saved
            if len(s):
                st.subheader("Saved comparison for the suite")
                keep = [c for c in ("intervention", "roi", "effect_bits", "predicted_ms", "predicted_low",
                                    "predicted_high", "human_ms", "ratio", "inside_human_interval",
                                    "flag_perplexity") if c in s.columns]
                st.dataframe(s[keep], hide_index=True)

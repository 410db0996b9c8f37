"""Per-word surprisal and entropy of the item's conditions, and its garden-path effect at ROIs 0-2."""

import streamlit as st

from mechinterp.explore import compute, figures, ui
from mechinterp.explore.results import read_kind

sel = ui.selection()
ui.header(sel, "Surprisal and entropy")

with ui.guard("surprisal"):
    words = ui.words(sel)
    effects = compute.item_effects(words, sel.suite, sel.item)
    if effects is not None and len(effects):
        cols = st.columns(len(effects))
        for col, (_, r) in zip(cols, effects.iterrows()):
            col.metric(f"Effect at ROI {int(r['roi'])} ({r['word']})", f"{r['effect_bits']:+.2f} bits",
                       help=f"surprisal of '{r['word']}' in the ambiguous version ({r['surprisal_ambiguous']:.2f} bits) "
                            f"minus '{r['word_unambiguous']}' in the unambiguous one ({r['surprisal_unambiguous']:.2f})")
    else:
        st.info("Only one version of this sentence: no garden-path effect (type an unambiguous control to get one).")
    roles = figures.region_roles(sel.suite)
    tab_s, tab_e, tab_t, tab_r = st.tabs(["Surprisal", "Entropy", "Table", "Regions"])
    tab_s.plotly_chart(figures.words_figure(words, "surprisal_bits", roles=roles), key="surprisal_fig")
    tab_e.plotly_chart(figures.words_figure(words, "entropy_bits", roles=roles), key="entropy_fig")
    tab_t.dataframe(words[["condition", "word_index", "word", "region_name", "n_tokens", "surprisal_bits",
                           "entropy_bits"]], hide_index=True)
    tab_r.dataframe(compute.region_table(sel.suite, sel.item), hide_index=True)
    st.caption("Orange: the ambiguous region; red: the disambiguating region. Entropy is that of the "
               "next-token distribution at each word's onset (bits).")

if not sel.typed:
    with ui.guard("saved effects"):
        cat = ui.catalogue(sel, quiet=True)
        if cat is not None:
            m = ui.model(sel)
            saved, used = read_kind(cat, "item_effects", m.weights_sha256, m.name, sel.suite.name)
            if len(saved):
                from mechinterp.reports.effects import item_effects_figure

                st.subheader("This item among the suite (saved effects)")
                st.plotly_chart(item_effects_figure(saved[saved["construction"] == sel.construction]), key="suite_fig")
                st.caption("From " + ", ".join(str(t.path) for t in used))

"""Beyond surprisal: every word-level predictor of the item (surprisal, entropy and its change, the parse-belief
update from behaviour and from saved reading probes, representational reanalysis per layer, routing to the
ambiguous words per head), word by word in both versions, beside the human garden-path effect; and the memory
ladder when a ladder table was saved under the results directory."""

import streamlit as st

from mechinterp.explore import predictors, ui
from mechinterp.stimuli.constructions import canonical_construction

sel = ui.selection()
ui.header(sel, "Beyond surprisal")
st.caption("Each predictor is defined, with its formula, in `mechinterp/compare/predictors.py`; `mechinterp fit` "
           "asks which of them explain reading times beyond length, frequency and surprisal.")

with ui.guard("predictors"):
    m = ui.model(sel)
    cat = ui.catalogue(sel, quiet=True)
    cons = canonical_construction(sel.construction)
    refs = [] if cat is None else [p for p in cat.probes if p.construction == cons and (
        p.weights_sha256 == m.weights_sha256 if p.weights_sha256 else p.model == m.name)]
    probe_labels = {f"{p.component}_L{p.layer}" + (f"_s{p.seed}" if p.seed is not None else ""): str(p.path)
                    for p in refs}
    c1, c2, c3 = st.columns([2, 2, 1])
    layers = c1.multiselect("Layers (representational reanalysis)", list(range(m.n_layers)),
                            default=predictors.default_layers(m.n_layers), key="pred_layers")
    heads_text = c2.text_input("Heads (routing to the ambiguous words)", key="pred_heads", placeholder="L3H0, L5H1",
                               help="heads as L<layer>H<head>, comma-separated; attention to the ambiguous region, or "
                                    "in a SAP item to the words both versions share before the disambiguator")
    readings = c3.toggle("Parse belief (slow)", value=True, key="pred_readings",
                         help="the exact reading estimator after every word prefix")
    chosen_probes: list[str] = []
    if probe_labels:
        names = sorted(probe_labels)
        chosen_probes = st.multiselect(f"Saved reading probes for {cons}", names, default=names[len(names) // 2:][:1],
                                       key="pred_probes")
    heads = predictors.parse_heads(heads_text, m.n_layers)
    table = ui.predictors(sel, {k: probe_labels[k] for k in chosen_probes}, heads, sorted(layers), readings)
    cols = predictors.predictor_columns(table)
    show = st.multiselect("Predictors shown", cols, default=cols, key="pred_show")

    human = predictors.item_human_effect(sel.suite, sel.item)
    human_label = "human effect of this item (ms, SAP by-item)"
    if human is None:
        human = predictors.construction_human_effect(cons)
        human_label = f"human effect of {cons}, mean over SAP items (ms)"
        note = ("This item is not a SAP Benchmark item, so it has no by-item human effect: the top panel is the "
                f"mean over the SAP {cons} items." if human is not None else
                f"The SAP Benchmark has no human effects for {cons} (it covers NP/Z, NP/S and MV/RR).")
        st.info(note)
    if show:
        st.plotly_chart(predictors.predictors_figure(table, show, human, human_label,
                                                     f"{sel.label}: every predictor, word by word"), key="pred_fig")
        st.caption("Red: the ambiguous version; blue: the unambiguous one; words counted from the disambiguator "
                   "(0 = ROI 0, ROIs 0-2 shaded). repr_* are distances between the versions' states at the same "
                   "word (one line).")
    else:
        st.info("Pick at least one predictor to draw.")
    diffs = predictors.roi_differences(table, sel.suite, sel.item, show or cols)
    if diffs is not None:
        st.subheader("At ROIs 0-2: ambiguous − unambiguous")
        if human is not None:
            diffs = diffs.merge(human[["roi", "effect"]].rename(columns={"effect": "human_ms"}), on="roi", how="left")
        st.dataframe(diffs, hide_index=True)
    else:
        st.info("Only one version of this sentence: no differences at ROIs 0-2 (type an unambiguous control).")
    with st.expander("Every word, every predictor"):
        st.dataframe(table, hide_index=True)

st.subheader("Memory ladder")
with ui.guard("memory ladder"):
    m = ui.model(sel)
    cat = ui.catalogue(sel, quiet=True)
    found = [] if cat is None else predictors.ladder_tables(cat, m.weights_sha256, m.name)
    if not found:
        st.info(predictors.LADDER_HOW)
    else:
        labels = [str(t.path.relative_to(cat.root)) for t in found] if cat is not None else []
        pick = st.selectbox("Ladder table", labels, key="ladder_table") if len(labels) > 1 else labels[0]
        ladder = found[labels.index(pick)].read()
        fig = predictors.ladder_figure(ladder)
        if fig is not None:
            st.plotly_chart(fig, key="ladder_fig")
        else:
            st.caption("This version of the workbench has no ladder figure; the table as saved:")
        st.dataframe(ladder, hide_index=True)

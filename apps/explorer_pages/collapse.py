"""Switch a collapse intervention on and watch which reading the model holds and the item's surprisal change.

By default the intervention commits the model to the reading people prefer (the garden path): a clamp of the
reading direction toward the preferred reading, fit on the probes' generated sentences. The other choices: an
erasure (LEACE) of that direction, the ambiguous-vs-unambiguous direction of the built-in minimal pairs, an SAE
feature edit, context truncation or any spec. Whether it worked is shown first: P(dispreferred reading) at the
end of the ambiguous region before and after (the exact estimator), then the effect on the surprisal."""

import streamlit as st

from mechinterp.errors import MechinterpError
from mechinterp.explore import compute, figures, ui
from mechinterp.explore.results import read_kind

sel = ui.selection()
ui.header(sel, "Collapse: intervene and watch the surprisal")

KINDS = {"clamp": "clamp the reading direction", "leace": "erase the reading direction (LEACE)",
         "truncate": "truncate the context", "sae": "ablate SAE features", "custom": "custom spec"}
CONTROLS = ("iv_kind", "iv_fit", "iv_layer", "iv_target", "iv_shift", "iv_k", "iv_where", "iv_sae", "iv_custom",
            "iv_on")
FITS = {"pairs": "minimal pairs (ambiguous vs unambiguous)", "readings": "generated sentences (preferred vs other reading)"}
# Widget values vanish when another page is shown; keep a copy so the intervention survives a page change.
saved = st.session_state.setdefault("_iv_controls", {})
for k in CONTROLS:
    if k in saved and k not in st.session_state:
        st.session_state[k] = saved[k]



def reading_table(sel):
    """The item's reading probabilities under the original model, or None (with a note) when they cannot be
    measured for this suite."""
    try:
        return ui.readings(sel)
    except MechinterpError as exc:
        st.caption(f"Reading probabilities are not available for this item: {exc}")
        return None


def show_readings(sel, before, spec):
    """Which reading the model holds at the end of the ambiguous region, before and (with ``spec``) after."""
    if before is None:
        return
    after = None
    if spec is not None:
        try:
            after = ui.readings(sel, spec)
        except MechinterpError as exc:
            st.caption(f"Reading probabilities under this intervention are not available: {exc}")
    shift = compute.reading_shift(before, after)
    st.subheader("Which reading does the model hold?")
    amb = shift[shift["ambiguous"]]
    for _, row in amb.iterrows():
        value = row["P(dispreferred) after"] if after is not None else row["P(dispreferred)"]
        delta = None if after is None else f"x{row['dispreferred factor']:.2f} vs original"
        st.metric(f"P(dispreferred reading), {row['condition']}", f"{value:.3f}", delta=delta, delta_color="inverse")
    st.caption("P(reading) = the next-token mass of the construction's diagnostic continuations for that reading, "
               "normalised over the two readings. A commit to the preferred reading should push P(dispreferred) "
               "down; an intervention that leaves it where it was has not collapsed the model.")
    with st.expander("Reading probabilities, every condition"):
        st.dataframe(shift, hide_index=True)


with ui.guard("intervention"):
    m = ui.model(sel)
    if st.session_state.get("iv_layer", 0) > m.n_layers - 1:  # kept from a model with more layers
        st.session_state.pop("iv_layer")
    # defaults through Session State only (a widget given both a default and a restored value warns)
    for key, value in {"iv_kind": "clamp", "iv_fit": "readings", "iv_layer": m.n_layers // 2, "iv_target": "preferred",
                       "iv_shift": 1.0, "iv_k": 3, "iv_where": "pre_disambiguator", "iv_on": False}.items():
        st.session_state.setdefault(key, value)
    c1, c2, c3 = st.columns(3)
    kind = c1.selectbox("Intervention", list(KINDS), key="iv_kind", format_func=lambda k: f"{k}: {KINDS[k]}")
    layer = shift = k = sae = custom = None
    target, where, fit = "preferred", "pre_disambiguator", "readings"
    if kind in ("clamp", "leace", "sae"):
        fit = st.selectbox("Fit on", list(FITS), key="iv_fit", format_func=FITS.get,
                           help="minimal pairs: the built-in suite of the item's construction, labelled by condition "
                                "(its cue precedes the noun phrase); generated sentences: the probes' unambiguous "
                                "sentences, labelled by the reading their structure fixes")
        if st.session_state.get("iv_target") not in compute.FIT_TARGETS[fit]:
            st.session_state["iv_target"] = compute.FIT_TARGETS[fit][0]
    if kind in ("clamp", "leace"):
        layer = c2.slider("Layer", 0, m.n_layers - 1, key="iv_layer")
    if kind in ("clamp", "sae"):
        target = c3.selectbox("Towards / remove", list(compute.FIT_TARGETS[fit]), key="iv_target",
                              help="clamp: the class whose typical value the direction is set to; sae: the class "
                                   "whose most specific features are ablated")
    if kind == "clamp":
        shift = st.slider("Shift (gaps beyond the class's median)", 0.0, 3.0, step=0.5, key="iv_shift")
    if kind in ("clamp", "leace", "sae"):
        where = st.selectbox("Where", ["pre_disambiguator", "ambiguous_region", "prefix"], key="iv_where")
    if kind == "truncate":
        k = c2.slider("Tokens of context each word sees", 0, 12, key="iv_k")
    if kind == "sae":
        cat = ui.catalogue(sel, quiet=True)
        saes = [str(p) for p in cat.saes] if cat is not None else []
        if st.session_state.get("iv_sae") not in saes:  # kept from another results directory
            st.session_state.pop("iv_sae", None)
        sae = c2.selectbox("SAE", saes, key="iv_sae") if saes else None
        if not saes:
            st.warning("No SAE found under the results directory.")
    if kind == "custom":
        custom = st.text_input("Spec", key="iv_custom", placeholder="clamp:layer=6,target=unambiguous,shift=1")
    on = st.toggle("Intervention on", key="iv_on")
    for key in CONTROLS:
        if key in st.session_state:
            saved[key] = st.session_state[key]

    original = ui.words(sel)
    base_eff = compute.item_effects(original, sel.suite, sel.item)
    base_readings = reading_table(sel)
    if not on:
        st.session_state[ui.INTERVENTION] = None
        st.info("The intervention is off: the plot shows the original model. Switch it on to fit it (once) and "
                "score the item with it.")
        show_readings(sel, base_readings, None)
        st.plotly_chart(figures.words_figure(original, "surprisal_bits", "Surprisal (original model)",
                                             figures.region_roles(sel.suite)), key="orig_fig")
    else:
        spec = compute.intervention_spec(kind, layer=layer, shift=shift or 0.0, k=k or 0, target=target, sae=sae,
                                         where=where, custom=custom, fit=fit)
        st.session_state[ui.INTERVENTION] = None
        built = ui.intervention(sel, spec)
        intervened = ui.words(sel, spec)
        st.session_state[ui.INTERVENTION] = spec
        st.success(f"Intervention on: `{spec}`")
        show_readings(sel, base_readings, spec)
        diff = compute.compare_runs(original, intervened)
        if base_eff is not None and len(base_eff):
            new_eff = compute.item_effects(intervened, sel.suite, sel.item)
            cols = st.columns(len(base_eff))
            for col, (_, a), (_, b) in zip(cols, base_eff.iterrows(), new_eff.iterrows()):
                col.metric(f"Effect at ROI {int(a['roi'])} ({a['word']})", f"{b['effect_bits']:+.2f} bits",
                           delta=f"{b['effect_bits'] - a['effect_bits']:+.2f} bits vs original", delta_color="inverse")
        else:
            d = diff.loc[diff["region"] == (sel.suite.ambiguity.disambiguating_region if sel.suite.ambiguity else -1)]
            if len(d):
                st.metric("Disambiguating word", f"{d['intervened_bits'].iloc[0]:.2f} bits",
                          delta=f"{d['change_bits'].iloc[0]:+.2f} bits vs original", delta_color="inverse")
        st.plotly_chart(figures.intervention_figure(diff), key="iv_fig")
        with st.expander("Per word"):
            st.dataframe(diff, hide_index=True)
        with st.expander("What was fitted"):
            st.json(built.describe())

if not sel.typed:
    with ui.guard("saved collapse results"):
        cat = ui.catalogue(sel, quiet=True)
        if cat is not None:
            m = ui.model(sel)
            eff, used = read_kind(cat, "collapse_effects", m.weights_sha256, m.name, sel.suite.name)
            mine = eff[eff["item"].astype(str) == str(sel.item.number)] if len(eff) else eff
            if "construction" in mine:
                mine = mine[mine["construction"] == sel.construction]
            if len(mine):
                st.subheader("Saved: this item under each intervention")
                st.plotly_chart(figures.effects_bar(mine, "Saved effects of this item"), key="saved_iv_fig")
            side, _ = read_kind(cat, "side_effects", m.weights_sha256, m.name)
            if len(side):
                st.subheader("Saved side effects")
                st.dataframe(side.drop(columns=["_source"], errors="ignore"), hide_index=True)

"""Switch a collapse intervention on and watch the item's surprisal change: a clamp or erasure of the
ambiguous-vs-unambiguous direction (fit on the built-in suite of the item's construction) or of the reading
(fit on the probes' generated sentences), an SAE feature edit or context truncation, fitted once and cached."""

import streamlit as st

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

with ui.guard("intervention"):
    m = ui.model(sel)
    if st.session_state.get("iv_layer", 0) > m.n_layers - 1:  # kept from a model with more layers
        st.session_state.pop("iv_layer")
    # defaults through Session State only (a widget given both a default and a restored value warns)
    for key, value in {"iv_kind": "clamp", "iv_fit": "pairs", "iv_layer": m.n_layers // 2, "iv_target": "unambiguous",
                       "iv_shift": 1.0, "iv_k": 3, "iv_where": "pre_disambiguator", "iv_on": False}.items():
        st.session_state.setdefault(key, value)
    c1, c2, c3 = st.columns(3)
    kind = c1.selectbox("Intervention", list(KINDS), key="iv_kind", format_func=lambda k: f"{k}: {KINDS[k]}")
    layer = shift = k = sae = custom = None
    target, where, fit = "unambiguous", "pre_disambiguator", "pairs"
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
    if not on:
        st.session_state[ui.INTERVENTION] = None
        st.info("The intervention is off: the plot shows the original model. Switch it on to fit it (once) and "
                "score the item with it.")
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

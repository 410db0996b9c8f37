"""The Streamlit parts the explorer's pages share: the sidebar that picks a model and an item (or a typed
sentence), cached loading of models, suites, SAEs, probes and interventions, and :func:`guard`, which turns
bad input into a message in the page instead of a traceback.

Only ``apps/explorer.py`` and its pages import this module (it imports Streamlit). Defaults come from the
environment, which ``mechinterp explore`` sets from its options:

* ``MECHINTERP_EXPLORER_MODEL``: registry name or local model directory (default ``gemma3-270m``);
* ``MECHINTERP_EXPLORER_RESULTS``: the results directory to read (default ``out``);
* ``MECHINTERP_EXPLORER_SUITE``: the suite shown first (default ``npz``);
* ``MECHINTERP_EXPLORER_ALLOW``: further folders the explorer may read (see :mod:`mechinterp.explore.paths`).

Query parameters ``?suite=...&item=...`` (and ``model=``) choose an item from a link. Every path from a query
parameter or a field goes through :mod:`mechinterp.explore.paths` before anything reads it.
"""

from __future__ import annotations

import logging
import os
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import streamlit as st

from mechinterp.errors import ConfigError, MechinterpError
from mechinterp.explore import inputs, paths
from mechinterp.explore.compute import (
    build_intervention,
    item_patching,
    item_readings,
    item_words,
    sae_item_activations,
)
from mechinterp.explore.predictors import item_predictors
from mechinterp.explore.results import Catalogue, scan
from mechinterp.models import load_model
from mechinterp.models.registry import REGISTRY
from mechinterp.probes import ProbeArtifact
from mechinterp.saes.load import load_sae as _load
from mechinterp.stimuli import builtin_suites, load_suite

log = logging.getLogger("mechinterp.explore")

ENV_MODEL = paths.ENV_MODEL
ENV_RESULTS = paths.ENV_RESULTS
ENV_SUITE = paths.ENV_SUITE
OTHER = "other (path) …"
SELECTION = "_selection"
SELECTION_ERROR = "_selection_error"
INTERVENTION = "_intervention"  # the active intervention spec (kept across pages)
SAP_SUITES = ("sap:ClassicGP", "sap:RelativeClause", "sap:AttachmentAmbiguity", "sap:Agreement")


@dataclass(frozen=True)
class Selection:
    """What the sidebar picked: a model name, a suite and one of its items (a typed sentence is a one-item
    suite), and the results directory."""

    model_name: str
    suite: Any
    item: Any
    typed: bool
    results: str

    @property
    def construction(self) -> str:
        return self.suite.construction_of(self.item)

    @property
    def label(self) -> str:
        return "typed sentence" if self.typed else f"{self.suite.name} item {self.item.key}"


# ---- error handling -------------------------------------------------------------------------------------------
@contextmanager
def guard(what: str = "") -> Iterator[None]:
    """Show a MechinterpError (bad input) as an error message; show any other error as a short message too
    (its traceback goes to the server log, never into the page)."""
    prefix = f"{what}: " if what else ""
    try:
        yield
    except MechinterpError as exc:
        st.error(prefix + str(exc))
    except Exception as exc:  # noqa: BLE001 - the page must not show a traceback
        log.error("explorer: %s%s\n%s", prefix, exc, traceback.format_exc())
        st.error(f"{prefix}{type(exc).__name__}: {exc}")


# ---- cached resources -----------------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the model (the first load of a registry model converts it once) …",
                   max_entries=2)
def _load_model(name: str) -> Any:
    return load_model(name, device=os.environ.get(paths.ENV_DEVICE, "auto"),
                      dtype=os.environ.get(paths.ENV_DTYPE, "float32"))


@st.cache_resource(show_spinner="Loading a copy of the model whose attention no other backend has taken over …",
                   max_entries=1)
def _own_model(name: str) -> Any:
    return load_model(name, device=os.environ.get(paths.ENV_DEVICE, "auto"),
                      dtype=os.environ.get(paths.ENV_DTYPE, "float32"), cached=False)


def attention_model(name: str) -> Any:
    """The model for work that reads attention weights: the shared copy, or one of its own once a
    TransformerLens bridge (another page's backend) has taken over the shared copy's attention modules."""
    shared = _load_model(name)
    return _own_model(name) if shared.wrapped else shared


def model(sel: Selection) -> Any:
    return _load_model(sel.model_name)


@st.cache_resource(show_spinner=False, max_entries=16)
def _load_suite(spec: str) -> Any:
    return load_suite(spec)


def allowed_path(path: str, what: str) -> str:
    """``path`` resolved, if the explorer may read it (see :mod:`mechinterp.explore.paths`); else PathRefused."""
    return str(paths.confine(path, paths.allowed_roots(), what))


@st.cache_resource(show_spinner="Loading the SAE …", max_entries=4)
def _load_sae(path: str) -> Any:
    return _load(path)


def load_sae(path: str) -> Any:
    """The SAE in directory ``path`` (refused outside the allowed folders)."""
    return _load_sae(allowed_path(path, "SAE directory"))


@st.cache_resource(show_spinner=False, max_entries=512)
def _load_probe(path: str) -> Any:
    return ProbeArtifact.load(path)


def load_probe(path: str) -> Any:
    """The probe artifact at ``path`` (refused outside the allowed folders)."""
    return _load_probe(allowed_path(path, "probe"))


@st.cache_resource(show_spinner="Fitting the intervention (once per model, spec and suite) …", max_entries=8)
def _build_intervention(model_name: str, spec: str, suite_key: str, _suite: Any) -> Any:
    checked = paths.check_spec(spec, paths.allowed_roots())  # no @file; its paths inside the allowed folders
    return build_intervention(_load_model(model_name), checked, _suite)


def intervention(sel: Selection, spec: str) -> Any:
    return _build_intervention(sel.model_name, spec, f"{sel.suite.name}:{sel.suite.sha256}", sel.suite)


@st.cache_data(show_spinner="Looking for results …", ttl=60, max_entries=8)
def _scan(path: str) -> Catalogue:
    return scan(path)


def catalogue(sel: Selection, quiet: bool = False) -> Catalogue | None:
    """The results catalogue of the selected directory, or None (with a message unless ``quiet``)."""
    root = paths.confine(sel.results, paths.allowed_roots(), "results directory") if sel.results.strip() else None
    if root is None or not root.is_dir():
        if not quiet:
            st.info(f"No results directory {sel.results!r}: set one in the sidebar (a folder that `mechinterp` "
                    "commands or sweeps wrote into) to see saved results here.")
        return None
    return _scan(str(root.resolve()))


# ---- sidebar ----------------------------------------------------------------------------------------------------
def _registry() -> list[str]:
    return list(REGISTRY)


def _suite_options() -> list[str]:
    return [*builtin_suites(), *SAP_SUITES]


def _suite_label(spec: str) -> str:
    return f"SAP {spec[4:]}" if spec in SAP_SUITES else spec


def _clear(*keys: str) -> None:
    for k in keys:
        st.session_state.pop(k, None)


def _apply_query_params() -> None:
    """Seed the sidebar from ``?model=&suite=&item=&sentence=`` once per session."""
    if st.session_state.get("_query_applied"):
        return
    st.session_state["_query_applied"] = True
    qp = st.query_params
    if "model" in qp:
        st.session_state["model_choice"] = qp["model"]
    if "suite" in qp:
        st.session_state["_query_suite"] = qp["suite"]
    if "item" in qp:
        st.session_state["_query_item"] = qp["item"]
    if "sentence" in qp:
        st.session_state["source"] = "Typed sentence"
        st.session_state["sentence"] = qp["sentence"]


def _model_picker() -> str:
    default = os.environ.get(ENV_MODEL) or "gemma3-270m"
    options = _registry()
    if default not in options:
        options = [default] + options
    chosen = st.session_state.get("model_choice")
    if chosen is not None and chosen not in options and chosen != OTHER:
        options = [chosen] + options
    options.append(OTHER)
    st.session_state.setdefault("model_choice", default)
    choice = st.sidebar.selectbox("Model", options, key="model_choice",
                                  help="a registry model or the path of a local Hugging Face model directory")
    if choice == OTHER:
        return st.sidebar.text_input("Model directory", key="model_path", placeholder="/path/to/hf-model").strip()
    return choice


def _suite_item() -> tuple[Any, Any]:
    options = _suite_options()
    qsuite = st.session_state.get("_query_suite")
    default = os.environ.get(ENV_SUITE) or "npz"
    if qsuite is not None:
        if qsuite not in options:
            options = [qsuite] + options
        st.session_state.setdefault("suite", qsuite)
    elif default not in options:
        options = [default] + options
    options = options + [OTHER]
    st.session_state.setdefault("suite", default)
    spec = st.sidebar.selectbox("Suite", options, key="suite", format_func=_suite_label,
                                on_change=_clear, args=("_query_suite", "_query_item", "_item_error", "item"))
    if spec == OTHER:
        spec = st.sidebar.text_input("Suite file", key="suite_path", placeholder="a SyntaxGym .json or SAP .csv").strip()
        if not spec:
            raise ConfigError("type the path of a suite file (SyntaxGym .json or SAP Benchmark .csv)")
    suite = _load_suite(paths.suite_spec(spec, paths.allowed_roots()))
    keys = [it.key for it in suite.items]
    if not keys:
        raise ConfigError(f"suite {suite.name!r} has no items")
    qitem = st.session_state.pop("_query_item", None)
    if qitem is not None:
        try:
            st.session_state["item"] = inputs.find_item(suite, qitem).key
        except ConfigError as exc:  # reported in the page until another item is picked
            st.session_state["_item_error"] = str(exc)
    if st.session_state.get("item") not in keys:
        st.session_state["item"] = keys[0]

    def label(k: str) -> str:
        it = next(i for i in suite.items if i.key == k)
        text = it.conditions[0].text
        return f"{k}: {text[:48]}{'…' if len(text) > 48 else ''}"

    key = st.sidebar.selectbox("Item", keys, key="item", format_func=label, on_change=_clear, args=("_item_error",))
    if st.session_state.get("_item_error"):
        raise ConfigError(st.session_state["_item_error"])
    return suite, inputs.find_item(suite, key)


def _typed() -> tuple[Any, Any]:
    st.sidebar.caption("Type a garden-path sentence and name its ambiguous and disambiguating words.")
    sentence = st.sidebar.text_area("Sentence", key="sentence",
                                    placeholder="While the man hunted the deer ran into the woods.")
    amb = st.sidebar.text_input("Ambiguous words", key="ambiguous_words", placeholder="the deer")
    dis = st.sidebar.text_input("Disambiguating word(s)", key="disambiguating_words", placeholder="ran")
    control = st.sidebar.text_area("Unambiguous control (optional)", key="control",
                                   placeholder="While the man hunted, the deer ran into the woods.")
    cons = st.sidebar.selectbox("Construction", inputs.CONSTRUCTIONS, key="construction")
    suite = inputs.custom_suite(sentence, dis, amb, control, cons)
    return suite, suite.items[0]


def sidebar() -> None:
    """Build the sidebar and record the selection (or the error that prevents one) for the page."""
    _apply_query_params()
    st.sidebar.header("What to look at")
    st.session_state[SELECTION] = None
    st.session_state[SELECTION_ERROR] = None
    try:
        model_name = _model_picker()
        st.session_state.setdefault("results", os.environ.get(ENV_RESULTS) or "out")
        results = st.sidebar.text_input("Results directory", key="results",
                                        help="a folder that mechinterp commands or sweeps wrote into")
        if st.sidebar.button("Rescan results", key="rescan"):
            _scan.clear()
        source = st.sidebar.radio("Input", ["Suite item", "Typed sentence"], key="source", horizontal=True)
        if not model_name:
            raise ConfigError("type the path of a local model directory (or pick a registry model)")
        model_name = paths.model_name(model_name, paths.allowed_roots())
        if results.strip():
            paths.confine(results, paths.allowed_roots(), "results directory")
        suite, item = _suite_item() if source == "Suite item" else _typed()
        st.session_state[SELECTION] = Selection(model_name, suite, item, source != "Suite item", results)
    except MechinterpError as exc:
        st.session_state[SELECTION_ERROR] = str(exc)
    except Exception as exc:  # noqa: BLE001
        log.error("explorer sidebar: %s\n%s", exc, traceback.format_exc())
        st.session_state[SELECTION_ERROR] = f"{type(exc).__name__}: {exc}"


def selection() -> Selection:
    """The current selection; shows the sidebar's error and stops the page when there is none."""
    err = st.session_state.get(SELECTION_ERROR)
    sel = st.session_state.get(SELECTION)
    if err or sel is None:
        st.error(err or "choose a model and an item in the sidebar")
        st.stop()
    return sel


def header(sel: Selection, title: str) -> None:
    st.title(title)
    conds = " · ".join(f"**{c.name}**: {c.text}" for c in sel.item.conditions)
    st.caption(f"{sel.model_name} · {sel.label} · construction {sel.construction}")
    st.markdown(conds)


def active_intervention() -> str | None:
    return st.session_state.get(INTERVENTION)


# ---- cached computations for one item -------------------------------------------------------------------------
def suite_key(sel: Selection) -> str:
    return f"{sel.suite.name}:{sel.suite.sha256}"


@st.cache_data(show_spinner="Scoring the sentences …", max_entries=64)
def _words(model_name: str, skey: str, item_key: str, spec: str | None, _suite: Any, _item: Any) -> Any:
    iv = None if spec is None else _build_intervention(model_name, spec, skey, _suite)
    return item_words(_load_model(model_name), _suite, _item, iv)


def words(sel: Selection, spec: str | None = None) -> Any:
    """Per-word surprisal of the selected item (under the intervention ``spec`` if given)."""
    return _words(sel.model_name, suite_key(sel), sel.item.key, spec, sel.suite, sel.item)


@st.cache_data(show_spinner="Measuring which reading the model holds …", max_entries=64)
def _readings(model_name: str, skey: str, item_key: str, spec: str | None, _suite: Any, _item: Any) -> Any:
    iv = None if spec is None else _build_intervention(model_name, spec, skey, _suite)
    return item_readings(_load_model(model_name), _suite, _item, iv)


def readings(sel: Selection, spec: str | None = None) -> Any:
    """Reading probabilities of the selected item (under the intervention ``spec`` if given)."""
    return _readings(sel.model_name, suite_key(sel), sel.item.key, spec, sel.suite, sel.item)


@st.cache_data(show_spinner="Patching every site of this item …", max_entries=16)
def _patching(model_name: str, skey: str, item_key: str, spec: str, metric: str, _suite: Any, _item: Any) -> Any:
    return item_patching(_load_model(model_name), _suite, _item, spec, metric)


def patching(sel: Selection, spec: str, metric: str) -> Any:
    return _patching(sel.model_name, suite_key(sel), sel.item.key, spec, metric, sel.suite, sel.item)


@st.cache_data(show_spinner="Encoding the activations with the SAE …", max_entries=16)
def _sae_item(model_name: str, sae_path: str, skey: str, item_key: str, n: int, _suite: Any, _item: Any) -> Any:
    return sae_item_activations(_load_model(model_name), load_sae(sae_path), _suite, _item, n)


def sae_item(sel: Selection, sae_path: str, n: int) -> Any:
    return _sae_item(sel.model_name, sae_path, suite_key(sel), sel.item.key, n, sel.suite, sel.item)


@st.cache_data(show_spinner="Applying the probes …", max_entries=16)
def _probe_curve(model_name: str, paths: tuple[str, ...], skey: str, item_key: str, _suite: Any, _item: Any) -> Any:
    from mechinterp.explore.compute import probe_curve

    return probe_curve(_load_model(model_name), [load_probe(p) for p in paths], _suite, _item)


def probe_curve(sel: Selection, paths: list[str]) -> Any:
    return _probe_curve(sel.model_name, tuple(paths), suite_key(sel), sel.item.key, sel.suite, sel.item)


@st.cache_data(show_spinner="Computing every predictor of this item (the reading estimator runs after each word) …",
               max_entries=16)
def _predictors(model_name: str, probes: tuple[tuple[str, str], ...], heads: tuple[str, ...], layers: tuple[int, ...],
                readings: bool, skey: str, item_key: str, _suite: Any, _item: Any) -> Any:
    return item_predictors(attention_model(model_name), _suite, _item, {label: load_probe(p) for label, p in probes},
                           heads, layers, readings)


def predictors(sel: Selection, probes: dict[str, str], heads: list[str], layers: list[int], readings: bool) -> Any:
    """Every word-level predictor of the selected item (``probes``: column label -> probe directory)."""
    return _predictors(sel.model_name, tuple(sorted(probes.items())), tuple(heads), tuple(layers), readings,
                       suite_key(sel), sel.item.key, sel.suite, sel.item)

"""Intervention specs: what to fit and where to apply it, as data (pydantic, frozen), and how to build them.

On the command line an intervention is ``[NAME=]KIND:key=value,key=value``; ``layers`` is a layer list
(:mod:`mechinterp.layers`: ``*``, ``N``, ``N-M`` or ``every K`` joined by ``+``), the other list values
(``fit``, ``features``) are joined by ``/``; ``+`` followed by a kind (``leace:``, ``clamp:``, ``sae:``,
``truncate:``) composes parts; JSON (``{...}`` / ``[...]``) or ``@file.json`` also work::

    leace:layers=6+9+12                      LEACE of the condition at layers 6, 9, 12 (resid_post)
    clamp:layer=9,target=ambiguous,shift=1   clamp the ambiguous-vs-unambiguous direction at layer 9
    sae:sae=out/sae-l6,remove=ambiguous      ablate the 8 SAE features most specific to the ambiguous class
    leace:layers=6,fit=readings              erase the reading (preferred vs dispreferred) at layer 6
    clamp:layer=6,fit=readings,target=preferred,shift=1   commit to the reading people prefer
    sae:sae=out/sae-l6,fit=readings,remove=dispreferred   ablate the features of the other reading
    truncate:k=3                             every word sees only the 3 tokens before it (plus BOS)
    learned:method=steer,layers=6+9,budget=0.05   a steering vector at layers 6 and 9, trained with gradients
                                             to lower P(dispreferred reading) with held-out KL <= 0.05 nats/token
    learned:method=subspace,layers=6,rank=2,budget=0.05   a rank-2 subspace set to a learned target
    learned:method=steer,layers=6,load=DIR   a saved fit (LearnedIntervention.save), placed on the suite
    commit=clamp:layer=9,shift=1+truncate:k=5   ... (a named composite)

Common keys of the fitted kinds: ``fit`` (suites whose labelled activations fit the intervention, joined by
``/``; default: the built-in suites of the evaluated suite's constructions, which share no lexical items with
the SAP items, labelled ``ambiguous`` / ``unambiguous``; or ``readings``: the probes package's generated
unambiguous sentences for those constructions, at the probed word, labelled ``preferred`` / ``dispreferred``
by the reading their structure fixes -- no cue confound, see docs/science.md), ``where`` (``pre_disambiguator`` |
``ambiguous_region`` | ``prefix``), ``n_words`` (for ``pre_disambiguator``, default 2), ``conditions`` (apply to ``all`` | ``ambiguous`` | ``unambiguous``
conditions of the evaluated suite), ``component`` (default ``resid_post``), ``n_fit`` (``fit=readings``: generated
sentences per reading and construction, default 150).

``learned`` parts are trained on the generated reading sentences only (never ``fit=``), with the keys of
:class:`~mechinterp.interventions.learned.LearnedTraining` (``steps``, ``lr``, ``seed``, ``train_stories`` and
``heldout_stories`` joined by ``/``, ...); see :mod:`mechinterp.interventions.learned`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mechinterp.errors import ConfigError
from mechinterp.interventions.base import Conditions, TokenTable, Where
from mechinterp.interventions.clamp import clamp_from_probe, fit_clamp
from mechinterp.interventions.compose import Composite, compose
from mechinterp.interventions.erasure import fit_erasure
from mechinterp.interventions.labelled import (
    READINGS_SOURCE,
    Labelled,
    reading_activations,
    suite_activations,
)
from mechinterp.interventions.learned import LearnedIntervention, LearnedTraining, fit_learned
from mechinterp.interventions.sae_clamp import fit_sae_edit
from mechinterp.interventions.truncation import Truncation
from mechinterp.layers import (
    check_layer_text,
    check_layers,
    format_layers,
    parse_layers,
)
from mechinterp.locate.sites import Site
from mechinterp.saes.load import load_sae
from mechinterp.stimuli import load_suite
from mechinterp.stimuli.library import builtin_suites

if TYPE_CHECKING:
    from mechinterp.models import Backend, Model
    from mechinterp.stimuli.types import Suite

Component = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class FittedSpec(_Spec):
    fit: tuple[str, ...] | None = None
    where: Where = "pre_disambiguator"
    n_words: int = Field(default=2, ge=1)
    n_fit: int = Field(default=150, ge=10)
    conditions: Conditions = "all"
    component: Component = "resid_post"


def layer_list(v: Any) -> Any:
    """A spec's ``layers``: text in the grammar of :mod:`mechinterp.layers` (kept as text while it needs the
    model's layer count, ``*`` or ``every K``) or numbers."""
    if isinstance(v, str):
        check_layer_text(v)
        try:
            return tuple(parse_layers(v, None))
        except ConfigError:
            return v.strip()
    return tuple(check_layers(v, None))


class LeaceSpec(FittedSpec):
    kind: Literal["leace"] = "leace"
    layers: tuple[int, ...] | str
    method: Literal["leace", "orth"] = "leace"

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, v: Any) -> Any:
        return layer_list(v)

    def layer_numbers(self, n_layers: int) -> list[int]:
        """The layers for a model with ``n_layers`` blocks (ConfigError if one is out of range)."""
        return check_layers(self.layers, n_layers)


class ClampSpec(FittedSpec):
    kind: Literal["clamp"] = "clamp"
    layer: int | None = None
    target: str = "ambiguous"

    @field_validator("layer", mode="before")
    @classmethod
    def _layer(cls, v: Any) -> Any:
        """One layer, in the grammar of :mod:`mechinterp.layers` (negative layers are refused)."""
        if v is None:
            return v
        layers = check_layers(v if isinstance(v, str) else [v], None)
        if len(layers) != 1:
            raise ConfigError(f"clamp layer={v!r}: give one layer (several: compose clamps with '+')")
        return layers[0]
    shift: float = 0.0
    probe: str | None = None


class SAESpec(FittedSpec):
    kind: Literal["sae"] = "sae"
    sae: str
    remove: str = "ambiguous"
    mode: Literal["ablate", "clamp"] = "ablate"
    n_features: int = Field(default=8, ge=1)
    features: tuple[int, ...] | None = None


class TruncateSpec(_Spec):
    kind: Literal["truncate"] = "truncate"
    k: int = Field(ge=0)


class LearnedSpec(LearnedTraining):
    """A learned intervention (:mod:`mechinterp.interventions.learned`): its form, sites and budget, where it acts,
    and how it is trained (the fields of :class:`~mechinterp.interventions.learned.LearnedTraining`)."""

    kind: Literal["learned"] = "learned"
    method: Literal["steer", "subspace"] = "steer"
    layers: tuple[int, ...] | str
    rank: int = Field(default=1, ge=1)
    budget: float = Field(default=0.05, gt=0, allow_inf_nan=False)
    where: Where = "pre_disambiguator"
    n_words: int = Field(default=2, ge=1)
    conditions: Conditions = "all"
    component: Component = "resid_post"
    load: str | None = None

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, v: Any) -> Any:
        return layer_list(v)

    @model_validator(mode="after")
    def _rank_of_subspace(self) -> "LearnedSpec":
        if self.method == "steer" and self.rank != 1:
            raise ConfigError(f"rank={self.rank} applies to method=subspace; a steering vector has no rank")
        return self

    def layer_numbers(self, n_layers: int) -> list[int]:
        """The layers for a model with ``n_layers`` blocks (ConfigError if one is out of range)."""
        return check_layers(self.layers, n_layers)

    def training(self, **override: Any) -> LearnedTraining:
        """The training settings of this spec; ``override`` replaces fields the spec did not set itself."""
        fields = set(LearnedTraining.model_fields)
        mine = self.model_dump(include=fields)
        mine.update({k: v for k, v in override.items() if k in fields and k not in self.model_fields_set})
        return LearnedTraining.model_validate(mine)


PartSpec = Annotated[LeaceSpec | ClampSpec | SAESpec | TruncateSpec | LearnedSpec, Field(discriminator="kind")]


class InterventionSpec(_Spec):
    """A named intervention: one part, or several composed in order."""

    name: str
    parts: tuple[PartSpec, ...] = Field(min_length=1)


_LISTS = {"fit", "features", "train_stories", "heldout_stories"}
_KINDS = ("leace", "clamp", "sae", "truncate", "learned")
_PART_SPLIT = re.compile(r"\+(?=\s*(?:{})\s*(?::|$))".format("|".join(_KINDS)))


def _parse_part(text: str) -> dict[str, Any]:
    kind, sep, rest = text.strip().partition(":")
    kind = kind.strip()
    if kind not in _KINDS:
        raise ConfigError(f"intervention {text!r}: unknown kind {kind!r} (choose {', '.join(_KINDS)})")
    d: dict[str, Any] = {"kind": kind}
    for item in filter(None, (p.strip() for p in rest.split(","))) if sep else []:
        key, eq, val = item.partition("=")
        if not eq:
            raise ConfigError(f"intervention {text!r}: {item!r} is not key=value")
        key = key.strip()
        if key == "kind":
            raise ConfigError(f"intervention {text!r}: the kind comes before ':' ({kind}:...), not as a key; "
                              "a learned intervention's form is method=steer or method=subspace")
        d[key] = [v for v in val.split("/") if v] if key in _LISTS else val.strip()
    return d


def parse_spec(text: str, files: bool = True) -> InterventionSpec:
    """Parse one ``--intervention`` value (see the module docstring).

    Args:
        text: The spec, or ``@FILE`` naming a file that holds it.
        files: Whether ``@FILE`` may be read; False refuses it (for specs typed by someone who should not
            read the server's files).

    Raises:
        ConfigError: An invalid spec, or an unreadable, refused or invalid file. Errors about a file name
            the file only; they never quote what it holds.
    """
    text = text.strip()
    if not text.startswith("@"):
        return _parse_text(text, None)
    if not files:
        raise ConfigError("intervention files (@FILE) are not read here: type the spec itself")
    path = Path(text[1:]).expanduser()
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"cannot read intervention file {path.name}: {reason}") from None
    return _parse_text(content.strip(), path.name)


def _parse_text(text: str, file: str | None) -> InterventionSpec:
    """Parse a spec's text; ``file`` (the name of the file it came from) keeps its content out of errors."""
    raw: Any
    try:
        if text.startswith(("{", "[")):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                where = f"line {exc.lineno} column {exc.colno}"
                raise ConfigError(f"intervention JSON is invalid: {exc.msg} ({where})" if file else
                                  f"intervention JSON is invalid: {exc}") from None
            if isinstance(raw, list):
                raw = {"parts": raw}
            if not isinstance(raw, dict):
                raise ConfigError("intervention JSON must be an object or a list of parts")
            if "parts" not in raw:
                raw = {"parts": [raw], "name": raw.pop("name", None)}
            if not isinstance(raw["parts"], list) or not all(isinstance(p, dict) for p in raw["parts"]):
                raise ConfigError("intervention JSON: 'parts' must be a list of objects "
                                  '(e.g. [{"kind": "clamp", "layer": 9}])')
        else:
            name = None
            head, eq, tail = text.partition("=")
            if eq and ":" not in head and "," not in head:
                name, text = head.strip(), tail
                if not name:
                    raise ConfigError(f"intervention {text!r}: the name before '=' is empty (give NAME=SPEC or the "
                                      "spec alone)")
            raw = {"name": name, "parts": [_parse_part(p) for p in _PART_SPLIT.split(text)]}
        if not raw.get("name"):
            raw["name"] = "+".join(_default_name(p) if isinstance(p, dict) else "?" for p in raw["parts"])
    except ConfigError as exc:
        if file is None:
            raise
        raise ConfigError(f"intervention file {file} does not hold a valid spec (KIND:key=value or JSON): "
                          f"{str(exc) if str(exc).startswith('intervention JSON') else 'check its text'}") from None
    try:
        return InterventionSpec.model_validate(raw)
    except ValidationError as exc:
        if file is None:
            msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid intervention {text!r}: {msgs}") from exc
        msgs = "; ".join(e["msg"] for e in exc.errors())
        raise ConfigError(f"invalid intervention in file {file}: {msgs}") from None


def _default_name(p: dict[str, Any]) -> str:
    """A name from a part's fields; a malformed part gets its kind alone (validation then says what is wrong)."""
    try:
        return _name_from_fields(p)
    except (TypeError, ValueError, ConfigError):
        return str(p.get("kind", "?"))


def _name_from_fields(p: dict[str, Any]) -> str:
    k = p.get("kind", "?")
    if k == "leace":
        layers = p.get("layers", [])
        return "leace@" + (layers if isinstance(layers, str) else format_layers(int(x) for x in layers))
    if k == "clamp":
        return f"clamp@{p.get('layer', 'probe')}->{p.get('target', 'ambiguous')}" + (
            f"x{p['shift']}" if str(p.get("shift", "0")) not in ("0", "0.0") else "")
    if k == "sae":
        return f"sae-{p.get('mode', 'ablate')}-{p.get('remove', 'ambiguous')}"
    if k == "truncate":
        return f"truncate-k{p.get('k', '?')}"
    if k == "learned":
        layers = p.get("layers", [])
        layers = layers if isinstance(layers, str) else format_layers(int(x) for x in layers)
        rank = f"-r{p['rank']}" if p.get("method") == "subspace" and "rank" in p else ""
        return f"learned-{p.get('method', 'steer')}{rank}@{layers}-kl{p.get('budget', 0.05)}"
    return str(k)


# ---- building ---------------------------------------------------------------------------------------------
def default_fit_suites(suite: "Suite") -> list[str]:
    """The built-in suites of ``suite``'s constructions (NP/Z -> npz, NP/S -> nps, MV/RR -> mvrr, LEX -> lexcat)."""
    by_cons = {}
    for name in builtin_suites():
        b = load_suite(name)
        if b.ambiguity is not None:
            by_cons[b.ambiguity.construction] = name
    out = [by_cons[c] for c in suite.constructions if c in by_cons]
    if not out:
        raise ConfigError(f"no built-in suite covers the constructions of {suite.name!r} ({suite.constructions}); "
                          "give the fit suites with fit=")
    return out


def _fit_key(spec: FittedSpec, suite: "Suite") -> tuple:
    names = tuple(spec.fit) if spec.fit else tuple(default_fit_suites(suite))
    return names, spec.where, spec.n_words


def _fit_data(model: "Model", spec: FittedSpec, suite: "Suite", sites: Sequence[Any], backend: "Backend",
              cache: dict | None = None):
    """Labelled activations for ``spec`` at ``sites``; ``cache`` (a dict) reuses activations collected for
    other parts with the same fit suites and positions."""
    names, where, n_words = _fit_key(spec, suite)
    readings = names == (READINGS_SOURCE,)
    if READINGS_SOURCE in names and not readings:
        raise ConfigError(f"fit={'/'.join(names)}: '{READINGS_SOURCE}' cannot be combined with suites")
    fit_suites = [] if readings else [load_suite(n) for n in names]
    key = (names, where, n_words, backend, (suite.sha256, spec.n_fit) if readings else None)
    plain = [s.unpositioned for s in sites]
    have = cache.get(key) if cache is not None else None
    if have is not None and all(s in have.x for s in plain):
        data = Labelled({s: have.x[s] for s in plain}, have.labels, have.groups, dict(have.info))
    elif readings:
        data = reading_activations(model, suite, plain, n_per_class=spec.n_fit, backend=backend)
    else:
        data = suite_activations(model, fit_suites, plain, where, n_words, backend=backend)
        if cache is not None:
            merged = {**(have.x if have is not None else {}), **data.x}
            cache[key] = Labelled(merged, data.labels, data.groups, dict(data.info))
    fit_texts = {c.text for f in fit_suites for it in f.items for c in it.conditions}
    shared = sum(c.text in fit_texts for it in suite.items for c in it.conditions)
    data.info["in_sample"] = shared > 0  # the intervention was fit on (some of) the sentences it is tested on
    data.info["shared_sentences"] = shared
    return data


def build_part(model: "Model", spec: PartSpec, suite: "Suite", backend: "Backend" = "hf", cache: dict | None = None):
    """Fit one part on its labelled data and place it on ``suite``."""
    if isinstance(spec, TruncateSpec):
        return Truncation(spec.k)
    scope = TokenTable.from_suites(model, [suite], spec.where, spec.n_words, spec.conditions, unknown="all")
    if isinstance(spec, LeaceSpec):
        sites = [Site(L, spec.component) for L in spec.layer_numbers(model.n_layers)]
        return fit_erasure(_fit_data(model, spec, suite, sites, backend, cache), sites, scope, spec.method)
    if isinstance(spec, ClampSpec):
        if spec.probe:
            try:
                from mechinterp.probes import ProbeArtifact
            except ImportError as exc:
                raise ConfigError("clamp with probe= needs mechinterp.probes, which is not available") from exc
            probe = ProbeArtifact.load(spec.probe)
            trained_on = (probe.model or {}).get("weights_sha256")
            if trained_on and trained_on != model.weights_sha256:
                raise ConfigError(f"probe {spec.probe} was trained on {probe.model.get('name', 'another model')} "
                                  f"(weights {trained_on[:12]}), not on {model.name} ({model.weights_sha256[:12]})")
            if probe.d_model != model.d_model:
                raise ConfigError(f"probe {spec.probe} has {probe.d_model} dimensions, {model.name} has {model.d_model}")
            if not 0 <= probe.site.layer < model.n_layers:
                raise ConfigError(f"probe {spec.probe} reads layer {probe.site.layer}; {model.name} has layers "
                                  f"0-{model.n_layers - 1}")
            data = _fit_data(model, spec, suite, [probe.site.unpositioned], backend, cache)
            return clamp_from_probe(probe, data, spec.target, scope, spec.shift)
        if spec.layer is None:
            raise ConfigError("a clamp needs layer= (or probe=)")
        if not 0 <= spec.layer < model.n_layers:
            raise ConfigError(f"clamp layer {spec.layer} is out of range (model has layers 0-{model.n_layers - 1})")
        site = Site(spec.layer, spec.component)
        return fit_clamp(_fit_data(model, spec, suite, [site], backend, cache), site, spec.target, scope, spec.shift)
    if isinstance(spec, LearnedSpec):
        sites = [Site(L, spec.component) for L in spec.layer_numbers(model.n_layers)]
        if spec.load:
            saved = LearnedIntervention.load(spec.load, model)
            if saved.method != spec.method or [str(s) for s in saved.sites] != [str(s) for s in sites]:
                raise ConfigError(f"the learned intervention in {spec.load} is a {saved.method} edit at "
                                  f"{', '.join(map(str, saved.sites))}, not the spec's {spec.method} at "
                                  f"{', '.join(map(str, sites))}")
            return saved.placed(scope)
        return fit_learned(model, suite, spec.method, sites, spec.budget, spec.rank, spec.where, spec.n_words,
                           spec.conditions, spec.training())
    if isinstance(spec, SAESpec):
        sae = load_sae(spec.sae)
        sae.check_model(model)
        data = _fit_data(model, spec, suite, [sae.site], backend, cache)
        return fit_sae_edit(sae, data, spec.remove, scope, spec.mode, spec.n_features, spec.features)
    raise ConfigError(f"unknown intervention spec {spec!r}")


def build(model: "Model", spec: InterventionSpec | str, suite: "Suite", backend: "Backend" = "hf",
          cache: dict | None = None) -> Composite:
    """Fit every part of ``spec`` and compose them under the spec's name."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    return compose(*(build_part(model, p, suite, backend, cache) for p in spec.parts), name=spec.name)


def fit_intervention(model: "Model", spec: "InterventionSpec | str", suite: "Suite", backend: "Backend" = "hf") -> Composite:
    """Fit an intervention on labelled activations and place it on ``suite``'s sentences.

    Args:
        model: the model.
        spec: an :class:`InterventionSpec` or its text (module docstring), e.g. ``"clamp:layer=6,shift=1"``,
            ``"leace:layers=6+9"``, ``"sae:sae=out/sae-l6,remove=ambiguous"``.
        suite: the suite whose sentences it acts on (positions from ``where=``; other text: every position).
        backend: the backend that reads the fitting activations.

    Returns:
        A frozen :class:`~mechinterp.interventions.compose.Composite`; ``with intervention.apply(model): ...``
        applies it (hooks removed on exit, also on error).

    Example:
        >>> import mechinterp as mi
        >>> model, suite = mi.load_model("gemma3-270m"), mi.load_suite("npz").head(8)
        >>> clamp = mi.fit_intervention(model, "clamp:layer=6,shift=1", suite)
        >>> with clamp.apply(model):
        ...     words = mi.suite_surprisal(model, suite)
    """
    return build(model, spec, suite, backend)


def _sites_of(model: "Model", part: PartSpec) -> list[Any]:
    if isinstance(part, LeaceSpec):
        return [Site(L, part.component) for L in part.layer_numbers(model.n_layers)]
    if isinstance(part, ClampSpec) and part.layer is not None and not part.probe:
        return [Site(part.layer, part.component)]
    return []  # SAE and probe sites are known only once loaded; truncation has none


def build_all(model: "Model", specs: Sequence[InterventionSpec], suite: "Suite",
              backend: "Backend" = "hf") -> dict[str, Composite]:
    """Build several specs, collecting the labelled activations of parts that share fit data once."""
    cache: dict = {}
    wanted: dict[tuple, tuple[FittedSpec, list[Any]]] = {}
    for spec in specs:
        for part in spec.parts:
            if isinstance(part, FittedSpec):
                sites = [s for s in _sites_of(model, part) if 0 <= s.layer < model.n_layers]
                key = _fit_key(part, suite)
                prev = wanted.get(key, (part, []))[1]
                wanted[key] = (part, list(dict.fromkeys(prev + sites)))
    for part, sites in wanted.values():
        if sites:
            _fit_data(model, part, suite, sites, backend, cache)
    return {spec.name: build(model, spec, suite, backend, cache) for spec in specs}

"""Small computations the explorer runs on demand for ONE item (a suite item or a typed sentence), built only
from the workbench's public functions. Each returns a tidy table; the app caches models and fitted things.

* :func:`item_words`: per-word surprisal and entropy of the item's conditions (optionally under an
  intervention); :func:`item_effects`: its garden-path effect at ROIs 0-2.
* :func:`item_readings`: which reading the model holds at the end of the item's ambiguous region (the exact
  estimator), and :func:`reading_shift`: those probabilities before and after an intervention.
* :func:`probe_curve`: saved reading probes applied to the item's ambiguous region, layer by layer.
* :func:`item_patching`: an exact activation-patching sweep of the item (no heads, small by default).
* :func:`sae_item_activations`: an SAE's feature activations at every token of the item's conditions.
* :func:`human_effects`, :func:`item_predicted_ms`: the SAP Benchmark's human effects for a construction and
  the item's predicted effect in ms through a saved surprisal-to-ms link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch

from mechinterp.compare.humans import published_effects
from mechinterp.compare.likeness import item_design
from mechinterp.effects import garden_path_effects
from mechinterp.errors import ConfigError
from mechinterp.explore.inputs import one_item
from mechinterp.interventions.compose import suite_surprisal_under
from mechinterp.interventions.spec import build, parse_spec
from mechinterp.locate.activations import collect, collect_rows
from mechinterp.locate.patching import PatchConfig, parse_sweep, patch_suite
from mechinterp.locate.sites import Site
from mechinterp.readings.api import reading_probabilities
from mechinterp.stimuli.constructions import canonical_construction
from mechinterp.surprisal import suite_surprisal
from mechinterp.tokenization import tokenize_condition

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Item, Suite

ROIS = (0, 1, 2)
DEFAULT_PATCH_SWEEP = "resid_pre|attn_out|mlp_out@*:region=*/last"


def has_pair(suite: "Suite", item: "Item") -> bool:
    """Whether ``item`` has both the ambiguous and the unambiguous condition the suite's annotation names."""
    amb = suite.ambiguity
    if amb is None:
        return False
    names = {c.name for c in item.conditions}
    return amb.ambiguous_condition in names and amb.unambiguous_condition in names


# ---- behaviour ----------------------------------------------------------------------------------------------
def item_words(model: "Model", suite: "Suite", item: "Item", intervention: Any = None) -> pd.DataFrame:
    """One row per condition x word (columns of :func:`mechinterp.surprisal.suite_surprisal`)."""
    one = one_item(suite, item)
    if intervention is None:
        return suite_surprisal(model, one, show_progress=False)
    return suite_surprisal_under(model, one, intervention)


def item_effects(words: pd.DataFrame, suite: "Suite", item: "Item") -> pd.DataFrame | None:
    """The item's garden-path effect per ROI, or None when it lacks one of the two conditions."""
    if not has_pair(suite, item):
        return None
    return garden_path_effects(words, one_item(suite, item), ROIS)


def item_readings(model: "Model", suite: "Suite", item: "Item", intervention: Any = None) -> pd.DataFrame:
    """P(each reading) of the item's conditions at the end of the ambiguous region (exact estimator: the mass of
    the construction's diagnostic continuations), optionally under an intervention. ConfigError when the suite
    has no ambiguity annotation or no continuation set for the item's construction."""
    return reading_probabilities(model, one_item(suite, item), "exact", intervention)


def reading_shift(before: pd.DataFrame, after: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per condition: P(preferred) and P(dispreferred) under the original model and, with ``after``,
    under the intervention, and the factor by which P(dispreferred) changed."""
    def table(df: pd.DataFrame) -> pd.DataFrame:
        t = df.assign(which=np.where(df["preferred"], "preferred", "dispreferred"))
        return t.pivot_table(index=["condition", "ambiguous"], columns="which", values="probability").reset_index()

    out = table(before).rename(columns={"preferred": "P(preferred)", "dispreferred": "P(dispreferred)"})
    if after is not None:
        new = table(after).rename(columns={"preferred": "P(preferred) after", "dispreferred": "P(dispreferred) after"})
        out = out.merge(new, on=["condition", "ambiguous"])
        out["dispreferred factor"] = out["P(dispreferred) after"] / out["P(dispreferred)"].clip(lower=1e-12)
    return out


def region_table(suite: "Suite", item: "Item") -> pd.DataFrame:
    """Each condition's regions: number, name, text."""
    rows = []
    for c in item.conditions:
        for r in c.regions:
            rows.append({"condition": c.name, "region": r.number, "name": suite.region_meta.get(r.number, str(r.number)),
                         "text": r.content})
    return pd.DataFrame(rows)


# ---- probes ---------------------------------------------------------------------------------------------------
def probe_curve(model: "Model", probes: Sequence[Any], suite: "Suite", item: "Item") -> pd.DataFrame:
    """P(preferred reading) from each probe (a :class:`~mechinterp.probes.ProbeArtifact`) at its site in every
    condition of ``item``: one row per probe x condition (columns construction, layer, component, seed,
    condition, ambiguous, p_preferred, preferred_reading, other_reading)."""
    if not probes:
        raise ConfigError("no probes to apply")
    amb = suite.ambiguity
    if amb is None or amb.ambiguous_region is None:
        raise ConfigError("the probes read the ambiguous region, and this item does not mark one "
                          "(type the ambiguous words)")
    conds, seqs = [], []
    for c in item.conditions:
        tt = tokenize_condition(model, c)
        a, b = tt.region_spans.get(amb.ambiguous_region, (0, 0))
        if b > a:
            conds.append(c)
            seqs.append(tt)
    if not conds:
        raise ConfigError(f"the ambiguous region is empty in every condition of item {item.key}")
    sites = list(dict.fromkeys(p.site for p in probes))
    acts = collect(model, seqs, sites, suite=suite)
    rows = []
    for p in probes:
        prob = p.predict_proba(acts[p.site]).double().numpy()
        for c, v in zip(conds, prob):
            rows.append({"construction": p.construction, "layer": p.site.layer, "component": p.site.component,
                         "seed": (p.training or {}).get("seed"), "condition": c.name, "ambiguous": c.ambiguous,
                         "p_preferred": float(v), "preferred_reading": p.readings[0], "other_reading": p.readings[1]})
    return pd.DataFrame(rows)


def summarise_curve(curve: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max over seeds of :func:`probe_curve` per layer x component x condition."""
    keys = ["construction", "component", "layer", "condition"]
    return (curve.groupby(keys, sort=True)["p_preferred"].agg(p_preferred="mean", p_min="min", p_max="max",
                                                              n_seeds="size").reset_index())


# ---- patching ------------------------------------------------------------------------------------------------
def item_patching(model: "Model", suite: "Suite", item: "Item", spec: str | None = DEFAULT_PATCH_SWEEP,
                  metric: str = "surprisal", rows_per_pass: int = 64) -> pd.DataFrame:
    """Exact activation patching of one item in both directions (table of :func:`mechinterp.locate.patching.patch_suite`)."""
    if not has_pair(suite, item):
        raise ConfigError("patching needs both versions of the item: type a control (unambiguous) sentence too")
    one = one_item(suite, item)
    sites = parse_sweep(spec, model, one, heads=False)
    return patch_suite(model, one, sites, PatchConfig(metric=metric, rows_per_pass=rows_per_pass))  # pyright: ignore[reportArgumentType]  # metric is validated by PatchConfig


def patching_grid(df: pd.DataFrame, direction: str, component: str) -> pd.DataFrame:
    """Layer x position matrix of the normalised effect (mean over items) for one direction and component,
    with positions in sentence order."""
    d = df[(df["direction"] == direction) & (df["component"] == component) & (df["method"] == "exact")]
    if d.empty:
        return pd.DataFrame()
    order = d.sort_values("position_order")["position"].drop_duplicates().tolist()
    return d.pivot_table(index="layer", columns="position", values="normalised", aggfunc="mean").reindex(columns=order)


# ---- SAEs ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SaeItem:
    """Feature activations of one item: ``tokens`` one row per condition x token x shown feature, ``ranking``
    one row per shown feature with its activation at the ambiguous region's last token in each condition."""

    tokens: pd.DataFrame
    ranking: pd.DataFrame
    position: str


def sae_item_activations(model: "Model", sae: Any, suite: "Suite", item: "Item", n_features: int = 8) -> SaeItem:
    """Encode the item's activations at the SAE's site (BOS left out) and keep the ``n_features`` features
    that differ most between the conditions at the last token of the ambiguous region (or, with one
    condition or no ambiguous region, the most active ones there / anywhere)."""
    if n_features < 1:
        raise ConfigError(f"n_features must be >= 1, got {n_features}")
    sae.check_model(model)
    seqs = [tokenize_condition(model, c) for c in item.conditions]
    site = Site(sae.layer, sae.component)
    got = collect_rows(model, seqs, [site])
    x, rows = got.tensors[site], got.rows[site]
    keep = rows[:, 1] != 0
    x, rows = x[keep], rows[keep].numpy()
    with torch.no_grad():
        f = sae.encode(x.float()).numpy()
    amb = suite.ambiguity
    region = amb.ambiguous_region if amb is not None else None
    at: dict[str, int] = {}
    for ci, (c, tt) in enumerate(zip(item.conditions, seqs)):
        if region is not None and region in tt.region_spans:
            a, b = tt.region_spans[region]
            if b > a:
                at[c.name] = int(np.nonzero((rows[:, 0] == ci) & (rows[:, 1] == b - 1))[0][0])
    names = [c.name for c in item.conditions]
    if amb is not None and has_pair(suite, item) and {amb.ambiguous_condition, amb.unambiguous_condition} <= set(at):
        va, vu = f[at[amb.ambiguous_condition]], f[at[amb.unambiguous_condition]]
        score = np.abs(va - vu)
        position = "difference between the conditions at the last token of the ambiguous region"
    elif at:
        score = f[list(at.values())].max(0)
        position = "activation at the last token of the ambiguous region"
    else:
        score = f.max(0)
        position = "largest activation anywhere in the sentence"
    top = [int(i) for i in np.argsort(-score)[:n_features] if score[i] > 0]
    rank_rows = []
    for feat in top:
        r: dict[str, Any] = {"feature": feat, "score": float(score[feat])}
        for n in names:
            r[f"at_ambiguous_{n}"] = float(f[at[n], feat]) if n in at else np.nan
        r["max_anywhere"] = float(f[:, feat].max())
        rank_rows.append(r)
    tok_rows = []
    for j, (ci, pos) in enumerate(rows):
        tt = seqs[ci]
        word = next((w for w, (a, b) in enumerate(tt.word_spans) if a <= pos < b), -1)
        reg = next((n for n, (a, b) in tt.region_spans.items() if a <= pos < b), 0)
        for feat in top:
            tok_rows.append({"condition": names[ci], "position": int(pos),
                             "token": model.tokenizer.decode([tt.input_ids[pos]]), "word_index": word,
                             "region": int(reg), "feature": feat, "activation": float(f[j, feat])})
    return SaeItem(tokens=pd.DataFrame(tok_rows), ranking=pd.DataFrame(rank_rows), position=position)


# ---- interventions ---------------------------------------------------------------------------------------------
FIT_TARGETS = {"pairs": ("unambiguous", "ambiguous"), "readings": ("preferred", "dispreferred")}
"""Classes a clamp or SAE edit can aim at, by what it is fit on: the built-in minimal pairs (labelled by
condition) or the probes' generated sentences (labelled by reading; ``fit=readings``)."""


def intervention_spec(kind: str, layer: int | None = None, shift: float = 1.0, k: int = 3, target: str = "ambiguous",
                      sae: str | None = None, where: str = "pre_disambiguator", custom: str | None = None,
                      fit: str = "pairs") -> str:
    """An intervention spec string (see :mod:`mechinterp.interventions.spec`) from the explorer's controls."""
    if fit not in FIT_TARGETS:
        raise ConfigError(f"unknown fit {fit!r}: choose {' or '.join(FIT_TARGETS)}")
    if kind in ("clamp", "sae") and target not in FIT_TARGETS[fit]:
        raise ConfigError(f"target {target!r} does not exist when fitting on {fit}: choose "
                          f"{' or '.join(FIT_TARGETS[fit])}")
    fitted = ",fit=readings" if fit == "readings" else ""
    if kind == "clamp":
        return f"clamp:layer={layer},target={target},shift={shift},where={where}{fitted}"
    if kind == "leace":
        return f"leace:layers={layer},where={where}{fitted}"
    if kind == "truncate":
        return f"truncate:k={k}"
    if kind == "sae":
        if not sae:
            raise ConfigError("choose an SAE for the SAE intervention")
        return f"sae:sae={sae},remove={target},where={where}{fitted}"
    if kind == "custom":
        if not custom or not custom.strip():
            raise ConfigError("type an intervention spec, e.g. clamp:layer=6,shift=1")
        return custom.strip()
    raise ConfigError(f"unknown intervention kind {kind!r}")


def build_intervention(model: "Model", spec: Any, suite: "Suite") -> Any:
    """Parse (a string, without reading ``@file``) and fit an intervention for ``suite`` (its default fitting
    suites are the built-in suites of the suite's constructions, see
    :func:`mechinterp.interventions.spec.build`)."""
    return build(model, parse_spec(spec, files=False) if isinstance(spec, str) else spec, suite)


def compare_runs(original: pd.DataFrame, intervened: pd.DataFrame) -> pd.DataFrame:
    """Per condition x word: surprisal of the original model, under the intervention, and the change."""
    key = ["condition", "word_index", "word", "region", "region_name"]
    a = original[key + ["surprisal_bits"]].rename(columns={"surprisal_bits": "original_bits"})
    b = intervened[key + ["surprisal_bits"]].rename(columns={"surprisal_bits": "intervened_bits"})
    out = a.merge(b, on=key, how="inner")
    out["change_bits"] = out["intervened_bits"] - out["original_bits"]
    return out


# ---- humans -----------------------------------------------------------------------------------------------------
def human_effects(construction: str, subset: str = "ClassicGP") -> pd.DataFrame:
    """The SAP Benchmark's published effects (ms) for ``construction`` at ROIs 0-2: humans with 95% intervals
    and the paper's GPT-2 / LSTM / no-surprisal predictions; empty if the benchmark does not cover it."""
    df = published_effects(subset, None)
    return df[df["construction"] == canonical_construction(construction)].reset_index(drop=True)  # pyright: ignore[reportReturnType]  # pandas stubs type this frame expression as DataFrame | Series


def item_predicted_ms(words: pd.DataFrame, suite: "Suite", item: "Item", fit: Any) -> pd.DataFrame:
    """The item's garden-path effect per ROI in bits and as predicted milliseconds through ``fit`` (a
    :class:`mechinterp.compare.linking.LinkingFit`)."""
    if not has_pair(suite, item):
        raise ConfigError("a predicted effect needs both versions of the item")
    d = item_design(words, one_item(suite, item), fit, ROIS)
    return d[["construction", "item", "roi", "word", "effect_bits", "effect_ms"]]  # pyright: ignore[reportReturnType]  # pandas stubs type this frame expression as DataFrame | Series

"""Patching for notebooks: :func:`patch` (a suite sweep) and :func:`patch_pair` (two free sentences), on the
same plan and exact patcher as the pipeline (:mod:`.plan`, :mod:`.exact`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from mechinterp.errors import ConfigError, RegionError
from mechinterp.locate.patching.exact import exact_values
from mechinterp.locate.patching.metrics import metric_name, unpatched_metric
from mechinterp.locate.patching.plan import (
    DIRECTIONS,
    Direction,
    Pair,
    PairContext,
    PatchConfig,
    align_tokens,
    aligned_positions,
    pair_activations,
    plan_sites,
    roles,
    target_spec,
    token_label,
)
from mechinterp.locate.patching.sweep import parse_sweep, patch_suite
from mechinterp.locate.sites import Site
from mechinterp.tokenization import TokenizedText, tokenize_text

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Item, Suite

#: Columns of :func:`patch_pair`.
PAIR_COLUMNS = [
    "direction", "layer", "component", "head", "position", "base_token", "source_token", "metric", "raw",
    "normalised", "clean_value", "corrupt_value",
]


def patch(model: "Model", suite: "Suite", sites: "str | Sequence[Site] | None" = None, metric: Any = "surprisal",
          directions: Sequence[Direction] = DIRECTIONS, items: "Sequence[Item] | None" = None,
          attribution: bool = False, **config: Any) -> pd.DataFrame:
    """Exact activation patching of every item of ``suite`` between its unambiguous (clean) and ambiguous
    (corrupt) versions, scored on the disambiguating region.

    Args:
        model: the model (:func:`mechinterp.load_model`).
        suite: a suite with an ambiguity annotation (:func:`mechinterp.load_suite`).
        sites: :class:`~mechinterp.locate.sites.Site` s, or a site spec such as
            ``"resid_pre@*:region=ambiguous/last"`` (``region=*``: each region before the disambiguator but the
            cue); None: resid_pre, attn_out, mlp_out and every head at every layer.
        metric: ``"surprisal"``, ``"logprob_diff"`` or any callable ``metric(logprobs, spec) -> Tensor[batch]``
            (:mod:`mechinterp.locate.patching.metrics`, e.g. ``mi.metrics.logit_diff("ran", ",")``).
        directions: ``"clean_to_corrupt"`` (denoising) and/or ``"corrupt_to_clean"`` (noising).
        items: only these items (default: all; or use ``suite.head(n)``).
        attribution: also attribution patching (gradient x difference) rows.
        **config: further :class:`~mechinterp.locate.patching.plan.PatchConfig` fields (``rows_per_pass``,
            ``alternative``, ``target``).

    Returns:
        One row per item x site x direction (x method), columns
        :data:`~mechinterp.locate.patching.plan.COLUMNS`; ``normalised`` is 0 at the corrupt run's value and 1
        at the clean run's.

    Example:
        >>> import mechinterp as mi
        >>> model = mi.load_model("gemma3-270m")
        >>> table = mi.patch(model, mi.load_suite("npz").head(4), "resid_pre@*:region=ambiguous/last")
        >>> table.groupby(["direction", "layer"])["normalised"].mean()
    """
    if sites is None or isinstance(sites, str):
        sites = parse_sweep(sites, model, suite)
    cfg = PatchConfig(metric=metric, directions=tuple(directions), **config)
    return patch_suite(model, suite, list(sites), cfg, items=items, attribution=attribution)


def _target(tt: TokenizedText, n_words: int) -> tuple[int, ...]:
    if not 1 <= n_words < len(tt.word_spans):
        raise ConfigError(f"target_words must be between 1 and {len(tt.word_spans) - 1} for {tt.text!r}, got {n_words}")
    return tuple(range(tt.word_spans[-n_words][0], tt.word_spans[-1][1]))


def patch_pair(model: "Model", clean: str, corrupt: str, sites: Sequence[Site], metric: Any = "surprisal",
               target_words: int = 1, directions: Sequence[Direction] = DIRECTIONS, alternative: str | None = None,
               rows_per_pass: int = 64) -> pd.DataFrame:
    """Exact activation patching between two free sentences, scored on their last word(s).

    Tokens are paired up the way an item's two versions are (identical token blocks; ``docs/alignment.md``),
    so the sentences may differ in length; a site whose position has no counterpart raises RegionError.

    Args:
        model: the model.
        clean: the sentence whose activations are patched in (denoising), e.g. the unambiguous version, ending
            with the word(s) the metric scores.
        corrupt: the other sentence (e.g. the ambiguous version), ending the same way.
        sites: :class:`~mechinterp.locate.sites.Site` s with token positions (``TokenPos``; index into
            ``corrupt``, BOS = 0, negative from the end).
        metric: ``"surprisal"``, ``"logprob_diff"`` (needs ``alternative``) or any callable ``metric(logprobs,
            spec) -> Tensor[batch]`` (:mod:`mechinterp.locate.patching.metrics`).
        target_words: how many final words of each sentence the metric scores (1: the last word).
        directions: ``"clean_to_corrupt"`` and/or ``"corrupt_to_clean"``.
        alternative: the one-token alternative continuation for ``logprob_diff``.
        rows_per_pass: patches per forward pass.

    Returns:
        One row per site x direction (columns :data:`PAIR_COLUMNS`): the patched metric ``raw``, the unpatched
        ``clean_value`` and ``corrupt_value``, and ``normalised`` (0 = corrupt, 1 = clean).

    Example:
        >>> import mechinterp as mi
        >>> model = mi.load_model("gemma3-270m")
        >>> mi.patch_pair(model, "While the man hunted, the deer ran", "While the man hunted the deer ran",
        ...               [mi.Site(L, "resid_pre", mi.TokenPos(6)) for L in range(model.n_layers)])
    """
    cfg = PatchConfig(metric=metric, directions=tuple(directions), rows_per_pass=rows_per_pass,
                      alternative=alternative)
    tts = {w: tokenize_text(model.tokenizer, model.bos_token_id, t) for w, t in (("clean", clean), ("corrupt", corrupt))}
    pair = Pair(None, "", tts["clean"], tts["corrupt"], align_tokens(tts["corrupt"], tts["clean"]))  # type: ignore[arg-type]
    sites = list(sites)
    planned = plan_sites(pair, sites, None)  # type: ignore[arg-type]
    for s in set(sites) - {p.site for p in planned}:
        aligned_positions(pair, s.position, None)  # type: ignore[arg-type]  # raises the reason
    if not planned:
        raise RegionError("no site to patch")
    specs = {}
    for w, tt in tts.items():
        targets = _target(tt, target_words)
        specs[w] = target_spec(model, targets, tuple(tt.input_ids[t] for t in targets), cfg)
    values = {w: unpatched_metric(model, tts[w].input_ids, specs[w]) for w in tts}
    ctx = PairContext(pair, planned, specs, values, pair_activations(model, pair, [p.site for p in planned]))
    rows = []
    gap = values["clean"] - values["corrupt"]
    for p, direction, raw in exact_values(model, ctx, cfg):
        base, source = roles(direction)
        rows.append({
            "direction": direction, "layer": p.site.layer, "component": p.site.component,
            "head": -1 if p.site.head is None else p.site.head, "position": p.label,
            "base_token": token_label(model, tts[base].input_ids, ctx.positions(p, base)),
            "source_token": token_label(model, tts[source].input_ids, ctx.positions(p, source)),
            "metric": metric_name(cfg.metric), "raw": raw,
            "normalised": (raw - values["corrupt"]) / gap if abs(gap) > 1e-9 else float("nan"),
            "clean_value": values["clean"], "corrupt_value": values["corrupt"],
        })
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)

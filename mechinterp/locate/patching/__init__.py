"""Activation patching between the clean (unambiguous) and corrupt (ambiguous) version of each item.

* :mod:`.plan`: the two versions aligned, the paired positions of each site, the rows reported (shared).
* :mod:`.metrics`: what a patch is scored on (surprisal or log-probability difference, bits).
* :mod:`.exact`: exact patching, many patches per forward pass.
* :mod:`.attribution`: attribution patching (gradient x difference) over the same plan.
* :mod:`.sweep`: the sites of a sweep and :func:`patch_suite`, exact and/or attribution over a suite.
* :mod:`.pair`: :func:`patch` (a suite, for notebooks) and :func:`patch_pair` (two free sentences).
"""

from mechinterp.locate.patching.attribution import attribution_rows, correlation
from mechinterp.locate.patching.exact import Patch, exact_rows, patch_one, run_patches
from mechinterp.locate.patching.metrics import (
    DEFAULT_ALTERNATIVES,
    MetricSpec,
    lm_logits,
    metric_from_hidden,
    metric_from_logits,
    unpatched_metric,
)
from mechinterp.locate.patching.pair import patch, patch_pair
from mechinterp.locate.patching.plan import (
    COLUMNS,
    DIRECTIONS,
    Pair,
    PairActivations,
    PairContext,
    PatchConfig,
    Planned,
    align_tokens,
    aligned_positions,
    make_pair,
    metric_spec,
    pair_activations,
    pair_context,
    plan_sites,
    position_label,
    result_row,
    roles,
)
from mechinterp.locate.patching.sweep import default_regions, parse_sweep, patch_suite

__all__ = [
    "COLUMNS", "DEFAULT_ALTERNATIVES", "DIRECTIONS", "MetricSpec", "Pair", "PairActivations", "PairContext",
    "Patch", "PatchConfig", "Planned", "align_tokens", "aligned_positions", "attribution_rows", "correlation",
    "default_regions", "exact_rows", "lm_logits", "make_pair", "metric_from_hidden", "metric_from_logits",
    "metric_spec", "pair_activations", "pair_context", "parse_sweep", "patch",
    "patch_one", "patch_pair", "patch_suite", "plan_sites", "position_label", "result_row", "roles", "run_patches",
    "unpatched_metric",
]

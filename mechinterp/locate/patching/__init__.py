"""Activation patching between the clean (unambiguous) and corrupt (ambiguous) version of each item.

Exact patching (:mod:`.exact`) and attribution patching (:mod:`.attribution`, gradient x difference) run
over the same plan of sites and positions.
"""

from mechinterp.locate.patching.exact import (
    COLUMNS,
    DEFAULT_ALTERNATIVES,
    DIRECTIONS,
    MetricSpec,
    Pair,
    PairActivations,
    PairContext,
    Patch,
    PatchConfig,
    Planned,
    align_tokens,
    aligned_positions,
    default_regions,
    exact_rows,
    lm_logits,
    make_pair,
    metric_from_hidden,
    metric_from_logits,
    metric_spec,
    pair_activations,
    pair_context,
    parse_sweep,
    patch_one,
    patch_suite,
    plan_sites,
    position_label,
    run_patches,
)

__all__ = [
    "COLUMNS", "DEFAULT_ALTERNATIVES", "DIRECTIONS", "MetricSpec", "Pair", "PairActivations", "PairContext",
    "Patch", "PatchConfig", "Planned", "align_tokens", "aligned_positions", "default_regions", "exact_rows",
    "lm_logits", "make_pair", "metric_from_hidden", "metric_from_logits", "metric_spec", "pair_activations",
    "pair_context", "parse_sweep", "patch_one", "patch_suite", "plan_sites", "position_label", "run_patches",
]

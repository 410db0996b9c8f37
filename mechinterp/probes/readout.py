"""The readout: what a reading probe says about the ambiguous words before disambiguation, and the rule that
turns it into "holds both readings", "leans to one" or "commits".

For each construction and site the probe (trained on all the unambiguous generated sentences) gives, for the
last token of the suite's ambiguous region (the noun phrase for NP/Z and NP/S, the verb for MV/RR, the word
for LEX), P(preferred reading) in the ambiguous condition and in the unambiguous condition (whose cue fixes
the other reading). Its scale is set by two ANCHORS from the probe's own held-out predictions on the
unambiguous training sentences (grouped cross-validation): ``p_preferred_anchor`` = mean P on sentences with
the preferred reading, ``p_other_anchor`` = mean P on sentences with the other reading.

DECISION RULE (one site, one construction). Let ``z`` = (mean P on ambiguous items - p_other_anchor) /
(p_preferred_anchor - p_other_anchor), so 0 looks like unambiguous other-reading contexts and 1 like
unambiguous preferred-reading contexts, and [z_lo, z_hi] its 95% bootstrap interval over items.

1. ``no reliable probe`` unless the probe's grouped held-out accuracy has CI lower bound > ``min_accuracy``
   (default 0.6) and the anchors are at least 0.1 apart. Nothing is read from such a site.
2. ``commits to <preferred>`` if z_lo >= 0.75; ``commits to <other>`` if z_hi <= 0.25: the ambiguous words
   look like (at least three quarters of the way to) unambiguous contexts of one reading.
3. ``leans to <preferred>`` if z_lo > 0.5; ``leans to <other>`` if z_hi < 0.5 (and not rule 2).
4. ``holds both`` if 0.25 <= z_lo and z_hi <= 0.75: the ambiguous words sit between the two readings'
   unambiguous contexts with no reliable lean (both readings partly represented, neither committed).
5. ``undetermined`` otherwise (the interval is too wide to say).

Beside it: ``delta`` = P(ambiguous) - P(unambiguous), paired by item, with its interval; a positive delta means
that without the cue the probe reads the words as more like the preferred reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechinterp.probes.evaluate import Estimate, cluster_bootstrap


@dataclass(frozen=True)
class DecisionRule:
    commit: float = 0.75
    min_accuracy: float = 0.6
    min_anchor_gap: float = 0.1


def decide(
    z: Estimate, accuracy_ci_low: float, anchor_gap: float, preferred: str, other: str,
    rule: DecisionRule = DecisionRule(),
) -> str:
    if not (accuracy_ci_low > rule.min_accuracy and anchor_gap >= rule.min_anchor_gap) or np.isnan(z.value):
        return "no reliable probe"
    lo, hi = z.ci_low, z.ci_high
    if lo >= rule.commit:
        return f"commits to {preferred}"
    if hi <= 1 - rule.commit:
        return f"commits to {other}"
    if lo > 0.5:
        return f"leans to {preferred}"
    if hi < 0.5:
        return f"leans to {other}"
    if lo >= 1 - rule.commit and hi <= rule.commit:
        return "holds both"
    return "undetermined"


def verdict_row(
    p_amb: np.ndarray, p_unamb: np.ndarray, items_amb: np.ndarray, items_unamb: np.ndarray,
    anchor_pref: float, anchor_other: float, accuracy_ci_low: float, preferred: str, other: str,
    n_boot: int = 1000, seed: int = 0, rule: DecisionRule = DecisionRule(),
) -> dict[str, object]:
    """One row of the verdict table (see the module docstring for the rule)."""
    gap = anchor_pref - anchor_other
    amb = cluster_bootstrap(p_amb, items_amb, n_boot, seed)
    unamb = cluster_bootstrap(p_unamb, items_unamb, n_boot, seed)
    if gap > 0:
        z = cluster_bootstrap((np.asarray(p_amb) - anchor_other) / gap, items_amb, n_boot, seed)
    else:
        z = Estimate(float("nan"), float("nan"), float("nan"), len(p_amb))
    # paired by item
    common = sorted(set(items_amb) & set(items_unamb), key=str)
    pa = {k: v for k, v in zip(items_amb, p_amb)}
    pu = {k: v for k, v in zip(items_unamb, p_unamb)}
    delta = cluster_bootstrap([pa[k] - pu[k] for k in common], None, n_boot, seed) if common else Estimate(
        float("nan"), float("nan"), float("nan"), 0)
    return {
        "p_ambiguous": amb.value, "p_ambiguous_low": amb.ci_low, "p_ambiguous_high": amb.ci_high,
        "p_unambiguous": unamb.value, "p_unambiguous_low": unamb.ci_low, "p_unambiguous_high": unamb.ci_high,
        "p_preferred_anchor": anchor_pref, "p_other_anchor": anchor_other,
        "z": z.value, "z_low": z.ci_low, "z_high": z.ci_high,
        "delta": delta.value, "delta_low": delta.ci_low, "delta_high": delta.ci_high,
        "n_items": amb.n,
        "verdict": decide(z, accuracy_ci_low, gap, preferred, other, rule),
    }

"""The decision rule of the readout."""

from __future__ import annotations

import numpy as np

from mechinterp.probes.evaluate import Estimate
from mechinterp.probes.readout import DecisionRule, decide, verdict_row


def _z(lo, hi):
    return Estimate((lo + hi) / 2, lo, hi, 30)


def test_decision_rule_cases():
    d = lambda z, acc=0.9, gap=0.6: decide(z, acc, gap, "object", "subject")  # noqa: E731
    assert d(_z(0.8, 1.1)) == "commits to object"
    assert d(_z(-0.2, 0.2)) == "commits to subject"
    assert d(_z(0.55, 0.9)) == "leans to object"
    assert d(_z(0.1, 0.45)) == "leans to subject"
    assert d(_z(0.35, 0.65)) == "holds both"
    assert d(_z(0.1, 0.9)) == "undetermined"
    assert d(_z(0.8, 1.1), acc=0.55) == "no reliable probe"
    assert d(_z(0.8, 1.1), gap=0.05) == "no reliable probe"
    assert decide(_z(0.7, 0.9), 0.9, 0.6, "a", "b", DecisionRule(commit=0.65)) == "commits to a"


def test_verdict_row_scales_by_the_anchors():
    rng = np.random.default_rng(0)
    items = np.arange(30)
    # anchors 0.2 (other) and 0.8 (preferred); ambiguous items sit at 0.75 -> z ~ 0.92
    p_amb = 0.75 + 0.02 * rng.standard_normal(30)
    p_unamb = 0.25 + 0.02 * rng.standard_normal(30)
    row = verdict_row(p_amb, p_unamb, items, items, 0.8, 0.2, 0.85, "object", "subject", 500, 0)
    assert abs(row["z"] - (p_amb.mean() - 0.2) / 0.6) < 1e-9
    assert row["z_low"] <= row["z"] <= row["z_high"]
    assert row["verdict"] == "commits to object"
    assert abs(row["delta"] - (p_amb - p_unamb).mean()) < 1e-9 and row["delta_low"] > 0
    mid = verdict_row(np.full(30, 0.5) + 0.01 * rng.standard_normal(30), p_unamb, items, items, 0.8, 0.2, 0.85,
                      "object", "subject", 500, 0)
    assert mid["verdict"] == "holds both"

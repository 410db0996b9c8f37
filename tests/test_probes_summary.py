"""Summaries across seeds, the best site, and figures built from the tables."""

from __future__ import annotations

import pandas as pd

from mechinterp.probes.figures import accuracy_figure, readout_figure, transfer_figure
from mechinterp.probes.summary import best_sites, summarise_metrics, summarise_verdicts


def _metrics() -> pd.DataFrame:
    rows = []
    for seed, bump in ((0, 0.0), (1, 0.02)):
        for layer, acc in ((0, 0.55), (3, 0.9), (6, 0.8)):
            base = dict(model="m", suite="npz", construction="NP/Z", layer=layer, component="resid_post", seed=seed,
                        C=0.1, n_per_class=100, which="last", target_construction="NP/Z", transfer_kind="same", n=200)
            for measure, pos, v in (("accuracy", "target", acc + bump), ("selectivity", "target", 0.1 + bump),
                                    ("control_accuracy", "target", 0.8), ("accuracy", "pre", 0.95),
                                    ("accuracy", "start", 0.5)):
                rows.append({**base, "measure": measure, "position": pos, "value": v, "ci_low": v - 0.05,
                             "ci_high": v + 0.05})
            rows.append({**base, "measure": "transfer_accuracy", "position": "target", "value": 0.7,
                         "ci_low": 0.6, "ci_high": 0.8, "target_construction": "NP/S", "transfer_kind": "structural"})
    return pd.DataFrame(rows)


def _verdicts() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for layer, z in ((0, 0.5), (3, 0.95), (6, 0.6)):
            rows.append(dict(model="m", suite="npz", construction="NP/Z", layer=layer, component="resid_post",
                             seed=seed, C=0.1, n_per_class=100, which="last", preferred_reading="object",
                             other_reading="subject", accuracy=0.9, accuracy_low=0.55 if layer == 0 else 0.8,
                             accuracy_high=0.95, p_ambiguous=0.8, p_ambiguous_low=0.75, p_ambiguous_high=0.85,
                             p_unambiguous=0.1, p_unambiguous_low=0.05, p_unambiguous_high=0.15,
                             p_preferred_anchor=0.9, p_other_anchor=0.1, z=z, z_low=z - 0.1, z_high=z + 0.1,
                             delta=0.7, delta_low=0.6, delta_high=0.8, n_items=30, verdict="x"))
    return pd.DataFrame(rows)


def test_summaries_average_seeds_and_pick_the_best_site():
    ms = summarise_metrics(_metrics())
    acc3 = ms[(ms.layer == 3) & (ms.measure == "accuracy") & (ms.position == "target")].iloc[0]
    assert acc3.value == 0.91 and acc3.n_seeds == 2 and abs(acc3.ci_low - 0.86) < 1e-9
    vs = summarise_verdicts(_verdicts())
    assert dict(zip(vs.layer, vs.verdict)) == {0: "no reliable probe", 3: "commits to object", 6: "holds both"}
    best = best_sites(ms, vs)
    assert len(best) == 1
    b = best.iloc[0]
    assert b.layer == 3 and b.verdict == "commits to object"
    assert abs(b.selectivity - 0.11) < 1e-9 and b.baseline_pre_accuracy == 0.95 and b.transfer == "NP/S=0.70"


def test_figures_are_built_from_the_tables():
    ms, vs = summarise_metrics(_metrics()), summarise_verdicts(_verdicts())
    acc = accuracy_figure(ms)
    assert any(t.name == "probe at target (grouped held-out)" for t in acc.data)
    ro = readout_figure(vs)
    amb = next(t for t in ro.data if t.name == "ambiguous region (no cue)")
    assert list(amb.x) == [0, 3, 6] and list(amb.y) == [0.8, 0.8, 0.8]
    tr = transfer_figure(ms)
    assert tr.data[0].type == "heatmap"

"""Tables across seeds and the best site per construction.

Across seeds a measure's ``value`` is the mean over seeds, ``ci_low``/``ci_high`` the mean of the per-seed
95% cluster-bootstrap bounds, ``seed_sd`` the standard deviation over seeds. Verdicts are re-decided from the
seed-averaged z interval and accuracy bound with the same rule (:mod:`mechinterp.probes.readout`).
"""

from __future__ import annotations

import pandas as pd

from mechinterp.probes.evaluate import Estimate
from mechinterp.probes.readout import DecisionRule, decide

SETTING_COLUMNS = ["C", "n_per_class", "which"]
SITE_COLUMNS = ["model", "suite", "construction", "layer", "component"]


def summarise_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    if metrics.empty:
        return metrics
    keys = SITE_COLUMNS + ["position", "measure", "target_construction", "transfer_kind"] + SETTING_COLUMNS
    g = metrics.groupby(keys, dropna=False)
    out = g.agg(value=("value", "mean"), ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"),
                seed_sd=("value", "std"), n_seeds=("seed", "nunique"), n=("n", "mean")).reset_index()
    return out


def summarise_verdicts(verdicts: pd.DataFrame, rule: DecisionRule = DecisionRule()) -> pd.DataFrame:
    if verdicts.empty:
        return verdicts
    keys = SITE_COLUMNS + ["preferred_reading", "other_reading"] + SETTING_COLUMNS
    num = [c for c in verdicts.columns if c not in keys and c not in ("seed", "verdict", "job_id")
           and pd.api.types.is_numeric_dtype(verdicts[c])]
    g = verdicts.groupby(keys, dropna=False)
    out = g[num].mean().reset_index()
    out["n_seeds"] = g["seed"].nunique().values
    out["verdicts_per_seed"] = g["verdict"].agg(lambda s: "; ".join(f"{k} x{v}" for k, v in s.value_counts().items())).values
    out["verdict"] = [
        decide(Estimate(r.z, r.z_low, r.z_high, int(r.n_items)), r.accuracy_low,
               r.p_preferred_anchor - r.p_other_anchor, r.preferred_reading, r.other_reading, rule)
        for r in out.itertuples()
    ]
    return out


def best_sites(metric_summary: pd.DataFrame, verdict_summary: pd.DataFrame) -> pd.DataFrame:
    """Per model x suite x construction x settings: the site with the highest held-out (grouped) accuracy at
    the target, with its selectivity, controls, baselines, mean transfer and the readout verdict there."""
    if metric_summary.empty:
        return metric_summary
    ms = metric_summary
    acc = ms[(ms.measure == "accuracy") & (ms.position == "target")]
    rows = []
    for _, df in acc.groupby(["model", "suite", "construction"] + SETTING_COLUMNS, dropna=False):
        best = df.loc[df["value"].idxmax()]
        site = {k: best[k] for k in SITE_COLUMNS + SETTING_COLUMNS}
        at = ms
        for k, v in site.items():
            at = at[at[k] == v]

        def get(measure: str, position: str = "target", col: str = "value") -> float:
            # called only within this iteration, so the late binding of `at` is what is meant
            sel = at[(at.measure == measure) & (at.position == position)]  # noqa: B023
            return float(sel[col].mean()) if len(sel) else float("nan")

        tr = at[at.measure == "transfer_accuracy"]
        row = {
            **site,
            "accuracy": best["value"], "accuracy_low": best["ci_low"], "accuracy_high": best["ci_high"],
            "n_seeds": int(best["n_seeds"]),
            "selectivity": get("selectivity"), "selectivity_low": get("selectivity", col="ci_low"),
            "selectivity_high": get("selectivity", col="ci_high"),
            "accuracy_random_split": get("accuracy_random_split"), "control_accuracy": get("control_accuracy"),
            "random_direction_accuracy": get("random_direction_accuracy"),
            "baseline_pre_accuracy": get("accuracy", "pre"), "baseline_start_accuracy": get("accuracy", "start"),
            "margin_over_pre": get("margin_over_pre"), "margin_over_pre_low": get("margin_over_pre", col="ci_low"),
            "transfer": "; ".join(f"{r.target_construction}={r.value:.2f}" for r in tr.itertuples()),
        }
        vs = verdict_summary
        for k, v in site.items():
            if k in vs.columns:
                vs = vs[vs[k] == v]
        if len(vs):
            v = vs.iloc[0]
            row |= {"p_ambiguous": v.p_ambiguous, "p_ambiguous_low": v.p_ambiguous_low,
                    "p_ambiguous_high": v.p_ambiguous_high, "p_unambiguous": v.p_unambiguous,
                    "p_preferred_anchor": v.p_preferred_anchor, "p_other_anchor": v.p_other_anchor,
                    "z": v.z, "z_low": v.z_low, "z_high": v.z_high, "verdict": v.verdict}
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_counts(verdict_summary: pd.DataFrame) -> pd.DataFrame:
    """How many layers get each verdict, per model x construction."""
    if verdict_summary.empty:
        return verdict_summary
    return (verdict_summary.groupby(["model", "construction", "verdict"]).size().rename("n_sites").reset_index())

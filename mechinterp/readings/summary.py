"""Summaries of reading tables: per-construction bootstrap means, agreement of the two estimators, and the
efficacy of interventions (did they make the model commit?)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from mechinterp.effects import bootstrap_mean_ci

COLLAPSE_FACTOR = 2.0
EFFICACY_COLUMNS = [
    "intervention", "method", "construction", "condition", "n_items", "p_dispreferred_original", "p_dispreferred",
    "ratio", "ratio_low", "ratio_high", "log2_odds_original", "log2_odds", "factor", "collapsed",
]


def dispreferred(readings: pd.DataFrame) -> pd.DataFrame:
    """The rows of the dispreferred reading (the one people do not take first)."""
    return readings[~readings["preferred"].astype(bool)]  # pyright: ignore[reportReturnType]  # pandas stubs type this frame expression as DataFrame | Series


def summarise_readings(readings: pd.DataFrame, by: Sequence[str] = ("construction", "condition"),
                       n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean P(dispreferred reading) and log-odds per group, with percentile bootstrap intervals over items.

    Args:
        readings: a table from :func:`~mechinterp.readings.reading_probabilities`.
        by: grouping columns (e.g. add "intervention" or "method").
        n_boot: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        One row per group: n_items, p_dispreferred (+ _low/_high), log2_odds (+ _low/_high), and for sampled
        tables the share of unclassified samples.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for key, g in dispreferred(readings).groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        p, pl, ph = bootstrap_mean_ci(g["probability"].to_numpy(), n_boot, rng=rng)
        o = g["log2_odds"].replace([np.inf, -np.inf], np.nan).to_numpy()
        lo, ll, lh = bootstrap_mean_ci(o, n_boot, rng=rng)
        row = dict(zip(by, key))
        row.update(n_items=int(g["item"].nunique()), p_dispreferred=p, p_dispreferred_low=pl, p_dispreferred_high=ph,
                   log2_odds=lo, log2_odds_low=ll, log2_odds_high=lh)
        if g["n_samples"].notna().any():  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: a scalar cell or .all()/.any() typed as Series
            row["unclassified_share"] = float(g["n_unclassified"].sum() / g["n_samples"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def compare_estimators(exact: pd.DataFrame, sampled: pd.DataFrame, by: Sequence[str] = ("construction",)
                       ) -> pd.DataFrame:
    """Spearman rank correlation over items of P(dispreferred) from the two estimators.

    Each group is correlated over its items within each condition (``condition`` = the condition's name) and
    over items and conditions together (``condition`` = "all", where the difference between the ambiguous and
    the unambiguous prefix carries much of the correlation). An "all" group pools every group.

    Args:
        exact: rows from the exact estimator.
        sampled: rows from the sampled estimator for the same suite(s) (items with no classified sample are
            left out).
        by: grouping columns (e.g. add "suite" for tables of several suites).

    Returns:
        One row per group and condition: ``n`` (item x condition pairs), ``spearman_rho``, ``p_value`` (NaN
        with fewer than three pairs or a constant estimate).

    Example:
        >>> compare_estimators(reading_probabilities(m, s, "exact"), reading_probabilities(m, s, "sampled"))
    """
    key = [*dict.fromkeys([*by, "construction", "item", "condition"])]
    a = dispreferred(exact).set_index(key)["probability"].rename("exact")
    b = dispreferred(sampled).set_index(key)["probability"].rename("sampled")
    j = pd.concat([a, b], axis=1, join="inner").dropna().reset_index()
    rows = []
    groups = [(k, g) for k, g in j.groupby(list(by), sort=False)] + [(("all",) * len(by), j)]
    for k, g in groups:
        k = k if isinstance(k, tuple) else (k,)
        for cond, gc in [*g.groupby("condition", sort=False), ("all", g)]:
            ok = len(gc) > 2 and gc["exact"].nunique() > 1 and gc["sampled"].nunique() > 1
            rho, p = spearmanr(gc["exact"], gc["sampled"]) if ok else (np.nan, np.nan)
            rows.append({**dict(zip(by, k)), "condition": cond, "n": len(gc), "spearman_rho": float(rho),
                         "p_value": float(p)})
    return pd.DataFrame(rows)


def estimator_line(agreement: pd.DataFrame) -> str:
    """One sentence for a table from :func:`compare_estimators`: the pooled Spearman correlation and, per
    condition, the correlation over items."""
    first = agreement.columns[0]
    pooled = agreement[agreement[first] == "all"].set_index("condition")
    if pooled.empty:
        return "exact vs sampled: no items with both estimates"

    def fmt(cond: str) -> str:
        r = pooled.loc[cond]
        return f"{cond} rho={r['spearman_rho']:.2f} (n={int(r['n'])})"

    per_cond = [c for c in pooled.index if c != "all"]
    return ("exact vs sampled P(dispreferred), Spearman over items: " + fmt("all") + "; within conditions: "
            + ", ".join(fmt(c) for c in per_cond))


def efficacy(readings: pd.DataFrame, original: str = "original", factor: float = COLLAPSE_FACTOR,
             n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Did each intervention make the model commit? P(dispreferred) before and after, per estimator,
    construction and condition.

    An intervention *collapsed* the model on a construction and condition when the mean P(dispreferred)
    under it is at most ``1 / factor`` of the original's (the dispreferred reading lost at least
    ``factor``-fold). The interval of the ratio is a paired bootstrap over items.

    Args:
        readings: reading rows with an ``intervention`` column that includes ``original``.
        original: the name of the unmodified model's rows.
        factor: how many times P(dispreferred) must fall to count as a collapse (default 2).
        n_boot: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        One row per intervention, construction and condition (:data:`EFFICACY_COLUMNS`).
    """
    d = dispreferred(readings)
    key = ["method", "construction", "condition", "item"]
    base = d[d["intervention"] == original].set_index(key)
    rng = np.random.default_rng(seed)
    rows = []
    for (name, method, cons, cond), g in d.groupby(["intervention", "method", "construction", "condition"], sort=False):  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: groupby keys are Hashable, not tuples
        g = g.set_index(key)
        b = base.reindex(g.index)
        p, p0 = g["probability"].to_numpy(float), b["probability"].to_numpy(float)
        ok = ~(np.isnan(p) | np.isnan(p0))
        p, p0 = p[ok], p0[ok]
        ratio = p.mean() / p0.mean() if len(p) and p0.mean() > 0 else np.nan
        if len(p):
            idx = rng.integers(0, len(p), size=(n_boot, len(p)))
            boots = p[idx].mean(1) / np.maximum(p0[idx].mean(1), 1e-300)
            lo, hi = np.quantile(boots, [0.025, 0.975])
        else:
            lo = hi = np.nan
        rows.append({
            "intervention": name, "method": method, "construction": cons, "condition": cond, "n_items": int(ok.sum()),
            "p_dispreferred_original": float(p0.mean()) if len(p0) else np.nan,
            "p_dispreferred": float(p.mean()) if len(p) else np.nan, "ratio": float(ratio),
            "ratio_low": float(lo), "ratio_high": float(hi),
            "log2_odds_original": float(b["log2_odds"].mean()), "log2_odds": float(g["log2_odds"].mean()),
            "factor": factor, "collapsed": bool(ratio <= 1.0 / factor) if np.isfinite(ratio) else False,
        })
    return pd.DataFrame(rows, columns=EFFICACY_COLUMNS)

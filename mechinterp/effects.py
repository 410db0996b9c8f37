"""Garden-path effects: ambiguous minus unambiguous surprisal at the disambiguating word and after it.

ROI k (k = 0, 1, 2, as in the SAP Benchmark) is the k-th word from the first word of the suite's
disambiguating region, counted separately in each condition (so conditions of different lengths, such as
"that"-clauses, line up on the disambiguating word). The effect of an item at ROI k is
``surprisal(ambiguous, ROI k) - surprisal(unambiguous, ROI k)`` in bits; per construction we report the
mean over items with a percentile bootstrap interval over items.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mechinterp.errors import ConfigError, SuiteError
from mechinterp.formula import evaluate, parse_formula
from mechinterp.stimuli.types import Suite

ITEM_EFFECT_COLUMNS = [
    "suite", "construction", "item", "roi", "word", "word_unambiguous", "surprisal_ambiguous",
    "surprisal_unambiguous", "effect_bits", "n_tokens_ambiguous", "n_tokens_unambiguous", "multi_token",
]


def _contrast(suite: Suite) -> tuple[str, str, int]:
    amb = suite.ambiguity
    if amb is None:
        raise SuiteError(
            f"suite {suite.name!r} has no ambiguity annotation (which conditions are ambiguous/unambiguous and which "
            "region disambiguates), so garden-path effects are undefined for it"
        )
    return amb.ambiguous_condition, amb.unambiguous_condition, amb.disambiguating_region


def check_rois(suite: Suite, rois: Sequence[int]) -> None:
    """Refuse, before any forward pass, an ROI no item of ``suite`` has in both conditions (it would give an
    empty table). ConfigError naming the ROI and the range the items allow."""
    if not rois:
        raise ConfigError("--rois names no ROI: give comma-separated word offsets such as 0,1,2")
    amb_name, unamb_name, region = _contrast(suite)
    lo, hi = None, None
    for it in suite.items:
        spans = []
        for name in (amb_name, unamb_name):
            try:
                c = it.condition(name)
            except KeyError:
                break
            words = c.words
            start = [w.index for w in words if w.region == region]
            if not start:
                break
            spans.append((-start[0], len(words) - start[0] - 1))
        if len(spans) == 2:
            a, b = max(spans[0][0], spans[1][0]), min(spans[0][1], spans[1][1])
            lo, hi = (a if lo is None else min(lo, a)), (b if hi is None else max(hi, b))
    if lo is None or hi is None:
        raise SuiteError(f"suite {suite.name!r}: no item has its disambiguating region {region} in both conditions")
    bad = [k for k in rois if not lo <= k <= hi]
    if bad:
        raise ConfigError(f"--rois {','.join(map(str, bad))}: out of range for suite {suite.name!r} "
                          f"(its items have ROIs {lo} to {hi} words from the disambiguating word)")


def garden_path_effects(words: pd.DataFrame, suite: Suite, rois: Sequence[int] = (0, 1, 2)) -> pd.DataFrame:
    """Per item and ROI: the ambiguous-minus-unambiguous surprisal (bits).

    Args:
        words: the output of :func:`mechinterp.surprisal.suite_surprisal` for ``suite``.
        suite: the suite (its ambiguity annotation names the two conditions and the disambiguating region).
        rois: regions of interest, counted in words from the disambiguator (0 = the disambiguating word).

    Returns:
        One row per item and ROI with the effect in bits.

    Example:
        >>> import mechinterp as mi
        >>> model, suite = mi.load_model("gemma3-270m"), mi.load_suite("npz").head(8)
        >>> effects = mi.garden_path_effects(mi.suite_surprisal(model, suite), suite)
        >>> effects.groupby("roi")["effect_bits"].mean()
    """
    amb_name, unamb_name, region = _contrast(suite)
    rows = []
    by_key = {k: g for k, g in words.groupby(["construction", "item", "condition"], sort=False)}
    for it in suite.items:
        cons = suite.construction_of(it)
        try:
            a = by_key[(cons, it.number, amb_name)].sort_values("word_index")
            u = by_key[(cons, it.number, unamb_name)].sort_values("word_index")
        except KeyError:
            raise SuiteError(f"no surprisal rows for item {it.key} of suite {suite.name!r}") from None
        a_start = int(a.loc[a["region"] == region, "word_index"].min())
        u_start = int(u.loc[u["region"] == region, "word_index"].min())
        for k in rois:
            ra = a[a["word_index"] == a_start + k]
            ru = u[u["word_index"] == u_start + k]
            if ra.empty or ru.empty:
                continue  # the sentence ends before ROI k
            ra, ru = ra.iloc[0], ru.iloc[0]
            rows.append({
                "suite": suite.name, "construction": cons, "item": it.number, "roi": k,
                "word": ra["word"], "word_unambiguous": ru["word"],
                "surprisal_ambiguous": ra["surprisal_bits"], "surprisal_unambiguous": ru["surprisal_bits"],
                "effect_bits": ra["surprisal_bits"] - ru["surprisal_bits"],
                "n_tokens_ambiguous": int(ra["n_tokens"]), "n_tokens_unambiguous": int(ru["n_tokens"]),
                "multi_token": bool(ra["n_tokens"] > 1 or ru["n_tokens"] > 1),
            })
    return pd.DataFrame(rows, columns=ITEM_EFFECT_COLUMNS)


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = 2000, ci: float = 0.95, rng: np.random.Generator | None = None
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of the mean (resampling the values with replacement)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = rng or np.random.default_rng(0)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    alpha = (1 - ci) / 2
    return float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def summarise_effects(
    item_effects: pd.DataFrame,
    by: Sequence[str] = ("construction", "roi"),
    value: str = "effect_bits",
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean effect per group with a bootstrap interval over items: columns ``*by, effect_bits, ci_low,
    ci_high, n_items, n_positive, n_multi_token``."""
    rng = np.random.default_rng(seed)
    rows = []
    for key, g in item_effects.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, lo, hi = bootstrap_mean_ci(g[value].to_numpy(), n_boot=n_boot, ci=ci, rng=rng)
        row = dict(zip(by, key))
        row.update({value: mean, "ci_low": lo, "ci_high": hi, "n_items": int(g[value].notna().sum()),
                    "n_positive": int((g[value] > 0).sum())})
        if "multi_token" in g:
            row["n_multi_token"] = int(g["multi_token"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate_predictions(regions: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """Evaluate the suite's SyntaxGym prediction formulas per item. ``regions`` is the output of
    :func:`mechinterp.surprisal.region_surprisal` (empty regions count 0 bits, as in SyntaxGym)."""
    if not suite.predictions:
        raise SuiteError(f"suite {suite.name!r} has no predictions to evaluate")
    parsed = [(i, p.formula, parse_formula(p.formula, suite)) for i, p in enumerate(suite.predictions)]
    rows = []
    for (cons, item), g in regions.groupby(["construction", "item"], sort=False):  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: groupby keys are Hashable, not tuples
        values: dict[tuple[str, int | None], float] = {}
        for _, r in g.iterrows():
            values[(r["condition"], int(r["region"]))] = float(r["surprisal_bits"])
        for cond, gc in g.groupby("condition"):
            values[(cond, None)] = float(gc["surprisal_bits"].sum())
        it = next(i for i in suite.items if i.number == item and suite.construction_of(i) == cons)
        for c in it.conditions:  # regions with no words (e.g. an empty cue) have 0 surprisal
            for r in c.regions:
                values.setdefault((c.name, r.number), 0.0)
        for idx, formula, node in parsed:
            rows.append({"suite": suite.name, "construction": cons, "item": item, "prediction": idx,
                         "formula": formula, "passed": bool(evaluate(node, values))})
    return pd.DataFrame(rows)

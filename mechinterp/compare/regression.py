"""Cross-validated regressions of reading times on word-level predictors, with spillover.

The model of a set of predictors ``P`` (ordinary least squares)::

    RT(w_t) = fixed terms + sum_{p in P} sum_{k=0..K} b_{p,k} p(w_{t-k})      lags within the same sequence

Fixed terms are an intercept for per-word reading times, one intercept per ROI for garden-path effects. Lagged
columns are named ``<p>_lag<k>`` and are NaN before the start of their sequence; every set of a comparison is
fitted on the same complete rows (no NaN in any column of any set), so sets differ only in their predictors.

Cross-validation is by item (:func:`item_folds`): every row of a group (a story, or both versions of a SAP item)
lands in the same fold. In each fold the model is fitted on the other folds; the held-out log-likelihood of a row
is Gaussian with the fold's prediction as mean and the *training* residual variance (the maximum-likelihood
``rss / n_train``) as variance. Reported per fold and pooled over every held-out row:

    loglik_per_word   mean held-out log-likelihood (nats per row)
    r2                1 - SSE / SST on the held-out rows (SST around their own mean)

A set against a reference set: ``d_loglik`` (per row) and ``d_r2``, with 95% intervals from a bootstrap that
resamples groups (items, stories) of held-out rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

from mechinterp.errors import ConfigError

LOG_2PI = float(np.log(2 * np.pi))


def lag_name(predictor: str, lag: int) -> str:
    """The column of ``predictor`` ``lag`` words back: ``surprisal_bits_lag1``."""
    return f"{predictor}_lag{lag}"


def add_spillover(table: pd.DataFrame, predictors: Sequence[str], lags: int, sequence: Sequence[str]) -> pd.DataFrame:
    """Add ``<p>_lag0 .. <p>_lag<lags>`` for every predictor, shifted within each sequence (rows in text order).

    Args:
        table: one row per word, rows of a sequence in reading order.
        predictors: numeric columns of ``table``.
        lags: the deepest spillover lag (0: the word itself only).
        sequence: the columns naming a sequence (sentence, story); lags never cross sequences.

    Example:
        >>> t = pd.DataFrame({"s": [0, 0, 1], "x": [1.0, 2.0, 3.0]})
        >>> add_spillover(t, ["x"], 1, ["s"])["x_lag1"].tolist()
        [nan, 1.0, nan]
    """
    if lags < 0:
        raise ConfigError(f"spillover must be >= 0, got {lags}")
    missing = [c for c in (*predictors, *sequence) if c not in table.columns]
    if missing:
        raise ConfigError(f"the table has no column {missing[0]!r} (columns: {', '.join(map(str, table.columns))})")
    out = table.copy()
    g = out.groupby(list(sequence), sort=False)
    for p in predictors:
        for k in range(lags + 1):
            out[lag_name(p, k)] = g[p].shift(k).astype(float)
    return out


def item_folds(groups: Sequence[Hashable], n_folds: int, seed: int = 0) -> np.ndarray:
    """The fold (0 .. n_folds-1) of each row: groups are shuffled and dealt to folds in turn, so every row of a
    group shares its fold (GroupKFold by item, with balanced group counts).

    Args:
        groups: one group key per row (an item, a story).
        n_folds: number of folds (at least 2, at most the number of groups).
        seed: shuffling seed.

    Example:
        >>> item_folds(["a", "a", "b", "c"], 2).tolist()[0] == item_folds(["a", "a", "b", "c"], 2).tolist()[1]
        True
    """
    keys = pd.Series(list(groups), dtype=object)
    codes, uniques = pd.factorize(keys)
    if n_folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {n_folds}")
    if len(uniques) < n_folds:
        raise ConfigError(f"{n_folds} folds need at least {n_folds} items, the data has {len(uniques)}")
    order = np.random.default_rng(seed).permutation(len(uniques))
    fold_of = np.empty(len(uniques), dtype=int)
    fold_of[order] = np.arange(len(uniques)) % n_folds
    return fold_of[codes]


def ols(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares coefficients (minimum norm when columns are collinear) and the maximum-likelihood residual
    variance ``rss / n``.

    Example:
        >>> beta, s2 = ols(np.column_stack([np.ones(3), [0.0, 1.0, 2.0]]), np.array([1.0, 3.0, 5.0]))
        >>> np.round(beta, 6).tolist(), round(s2, 6)
        ([1.0, 2.0], 0.0)
    """
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    return beta, float(resid @ resid) / len(y)


def gaussian_loglik(y: np.ndarray, mean: np.ndarray, variance: float) -> np.ndarray:
    """Per-row log density (nats) of ``y`` under N(mean, variance).

    Example:
        >>> round(float(gaussian_loglik(np.array([0.0]), np.array([0.0]), 1.0)[0]), 4)
        -0.9189
    """
    variance = max(variance, 1e-300)
    return -0.5 * (LOG_2PI + np.log(variance) + (y - mean) ** 2 / variance)


@dataclass(frozen=True)
class CrossValidation:
    """Held-out predictions of every predictor set (``rows``: set, row, group, fold, y, predicted, loglik) and
    per-fold metrics (``folds``: set, fold, n, loglik_per_word, r2, sigma2_train)."""

    rows: pd.DataFrame
    folds: pd.DataFrame

    def pooled(self, set_name: str) -> dict[str, float]:
        """Pooled held-out metrics of one set: n, loglik_per_word, r2."""
        r = self.rows[self.rows["set"] == set_name]
        return {"n": int(len(r)), "loglik_per_word": float(r["loglik"].mean()), "r2": _r2(r["y"], r["predicted"])}

    def delta(self, set_name: str, reference: str, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
        """``d_loglik`` (per row) and ``d_r2`` of ``set_name`` over ``reference``, with bootstrap 95% intervals
        over groups (``*_low``, ``*_high``)."""
        a = self.rows[self.rows["set"] == set_name].set_index("row")
        b = self.rows[self.rows["set"] == reference].set_index("row").loc[a.index]
        per = pd.DataFrame({"group": a["group"], "dll": a["loglik"] - b["loglik"], "y": a["y"],
                            "ea": (a["y"] - a["predicted"]) ** 2, "eb": (b["y"] - b["predicted"]) ** 2})
        per["yy"] = per["y"] ** 2
        per["n"] = 1
        agg = np.asarray(per.groupby("group", sort=False)[["dll", "y", "yy", "ea", "eb", "n"]].sum(), dtype=float)

        def stats_of(s: np.ndarray) -> tuple[float, float]:
            dll, sy, syy, ea, eb, n = s
            sst = syy - sy ** 2 / n
            return dll / n, (eb - ea) / sst if sst > 0 else np.nan

        point = stats_of(agg.sum(axis=0))
        rng = np.random.default_rng(seed)
        w = rng.multinomial(len(agg), np.full(len(agg), 1 / len(agg)), size=n_boot) if n_boot else np.zeros((0, len(agg)))
        boots = np.array([stats_of(np.asarray(wi, dtype=float) @ agg) for wi in w]) if n_boot else np.full((1, 2), np.nan)
        lo, hi = np.nanquantile(boots, 0.025, axis=0), np.nanquantile(boots, 0.975, axis=0)
        return {"d_loglik": float(point[0]), "d_loglik_low": float(lo[0]), "d_loglik_high": float(hi[0]),
                "d_r2": float(point[1]), "d_r2_low": float(lo[1]), "d_r2_high": float(hi[1])}


def _r2(y: pd.Series | np.ndarray, pred: pd.Series | np.ndarray) -> float:
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    sst = float(((y - y.mean()) ** 2).sum())
    return 1 - float(((y - pred) ** 2).sum()) / sst if sst > 0 else float("nan")


def cross_validate(data: pd.DataFrame, y: str, sets: Mapping[str, Sequence[str]], group: str,
                   n_folds: int = 5, seed: int = 0, fixed: Sequence[str] = ()) -> CrossValidation:
    """Fit every predictor set by OLS in item-wise folds and score it on the held-out rows.

    Args:
        data: one row per observation; ``y``, ``group``, ``fixed`` and every set's columns.
        y: the response column (ms).
        sets: set name -> predictor columns (e.g. from :func:`add_spillover`).
        group: the column naming an item (all its rows share a fold).
        n_folds: number of folds.
        seed: fold assignment seed.
        fixed: columns in every set's design (e.g. ROI indicators); none: an intercept.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> d = pd.DataFrame({"x": rng.normal(size=60), "item": np.arange(60) // 2})
        >>> d["rt"] = 300 + 20 * d["x"] + rng.normal(size=60)
        >>> cv = cross_validate(d, "rt", {"null": [], "x": ["x"]}, "item", n_folds=3)
        >>> cv.pooled("x")["r2"] > cv.pooled("null")["r2"]
        True
    """
    columns = list(dict.fromkeys(c for cols in sets.values() for c in cols))
    missing = [c for c in (y, group, *fixed, *columns) if c not in data.columns]
    if missing:
        raise ConfigError(f"the regression table has no column {missing[0]!r}")
    d = data.dropna(subset=[y, *fixed, *columns]).reset_index(drop=True)
    if d.empty:
        raise ConfigError("no row has every predictor (all NaN after spillover lags?)")
    folds = item_folds(d[group].tolist(), n_folds, seed)
    yv = d[y].to_numpy(dtype=float)
    base = d[list(fixed)].to_numpy(dtype=float) if fixed else np.ones((len(d), 1))
    row_tabs, fold_rows = [], []
    for name, cols in sets.items():
        X = np.column_stack([base, d[list(cols)].to_numpy(dtype=float)]) if cols else base
        pred, ll = np.empty(len(d)), np.empty(len(d))
        for f in range(n_folds):
            test = folds == f
            if (~test).sum() <= X.shape[1]:
                raise ConfigError(f"set {name!r} has {X.shape[1]} coefficients but fold {f} trains on only "
                                  f"{int((~test).sum())} rows: use fewer predictors or lags, or more items")
            beta, s2 = ols(X[~test], yv[~test])
            pred[test] = X[test] @ beta
            ll[test] = gaussian_loglik(yv[test], pred[test], s2)
            fold_rows.append({"set": name, "fold": f, "n": int(test.sum()), "loglik_per_word": float(ll[test].mean()),
                              "r2": _r2(yv[test], pred[test]), "sigma2_train": s2})
        row_tabs.append(pd.DataFrame({"set": name, "row": np.arange(len(d)), "group": d[group].to_numpy(),
                                      "fold": folds, "y": yv, "predicted": pred, "loglik": ll}))
    return CrossValidation(rows=pd.concat(row_tabs, ignore_index=True), folds=pd.DataFrame(fold_rows))


def correlation(x: np.ndarray, y: np.ndarray, groups: Sequence[Hashable], n_boot: int = 1000,
                seed: int = 0) -> tuple[float, float, float]:
    """Pearson r of ``x`` and ``y`` with a 95% bootstrap interval resampling groups.

    Example:
        >>> r, lo, hi = correlation(np.arange(10.0), np.arange(10.0) ** 2, list(range(10)), n_boot=100)
        >>> round(r, 3)
        0.963
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    r = float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 0 and y.std() > 0 else float("nan")
    codes, uniques = pd.factorize(pd.Series(list(groups), dtype=object))
    members = [np.flatnonzero(codes == g) for g in range(len(uniques))]
    rng = np.random.default_rng(seed)
    rb = []
    for _ in range(n_boot):
        i = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        if x[i].std() > 0 and y[i].std() > 0:
            rb.append(np.corrcoef(x[i], y[i])[0, 1])
    return r, float(np.quantile(rb, 0.025)) if rb else float("nan"), float(np.quantile(rb, 0.975)) if rb else float("nan")

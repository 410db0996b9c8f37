"""Accuracies with confidence intervals, selectivity, margins and transfer.

Intervals are percentile intervals of a CLUSTER bootstrap: whole lexical groups (the cross-validation
groups, or items for stimuli) are resampled with replacement, because sentences that share words are not
independent. Differences (selectivity = task - control, margin = target - baseline) are bootstrapped paired,
on the per-sentence difference, so the interval is that of the difference itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from mechinterp.errors import ConfigError


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}


def cluster_bootstrap(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[Hashable] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """Mean of ``values`` with a percentile interval from resampling ``clusters`` (default: each value its
    own cluster). NaN values are ignored."""
    v = np.asarray(values, dtype=np.float64).ravel()
    c = np.arange(len(v)) if clusters is None else np.asarray(clusters).ravel()
    if len(c) != len(v):
        raise ConfigError(f"{len(v)} values but {len(c)} cluster labels")
    keep = ~np.isnan(v)
    v, c = v[keep], c[keep]
    if len(v) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    _, inv = np.unique(c, return_inverse=True)
    sums = np.bincount(inv, weights=v)
    counts = np.bincount(inv).astype(np.float64)
    g = len(sums)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g, size=(n_boot, g))
    boots = sums[idx].sum(1) / counts[idx].sum(1)
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    return Estimate(float(v.mean()), float(lo), float(hi), int(len(v)))


def correct(proba: np.ndarray, y: Sequence[int]) -> np.ndarray:
    """1.0 where the probe's decision (P >= 0.5 means class 1) matches ``y``, else 0.0 (any leading shape)."""
    return ((np.asarray(proba) >= 0.5).astype(int) == np.asarray(y)).astype(np.float64)


def accuracy(proba: np.ndarray, y: Sequence[int], clusters=None, n_boot: int = 1000, seed: int = 0) -> Estimate:
    c = correct(proba, y)
    if c.ndim == 2:  # several probes (e.g. random directions): average per sentence first
        c = c.mean(0)
    return cluster_bootstrap(c, clusters, n_boot, seed)


def paired_difference(
    proba_a: np.ndarray, y_a: Sequence[int], proba_b: np.ndarray, y_b: Sequence[int], clusters=None,
    n_boot: int = 1000, seed: int = 0,
) -> Estimate:
    """Accuracy of a minus accuracy of b on the same rows (e.g. selectivity: task minus control)."""
    ca, cb = correct(proba_a, y_a), correct(proba_b, y_b)
    if ca.shape != cb.shape:
        raise ConfigError(f"paired difference needs the same rows: {ca.shape} vs {cb.shape}")
    return cluster_bootstrap(ca - cb, clusters, n_boot, seed)


def selectivity(
    task_proba: np.ndarray, y: Sequence[int], control_proba: np.ndarray, control_y: Sequence[int],
    clusters=None, n_boot: int = 1000, seed: int = 0,
) -> Estimate:
    """Hewitt & Liang selectivity: task accuracy minus control-task accuracy, both on the same split."""
    return paired_difference(task_proba, y, control_proba, control_y, clusters, n_boot, seed)

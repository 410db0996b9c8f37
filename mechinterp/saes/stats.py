"""Paired statistics for many features at once: effect sizes, sign-flip permutation tests, Benjamini-Hochberg.

Each item contributes one paired difference per feature (its activation in the ambiguous condition minus
its activation in the unambiguous one, at the same position). Under the null hypothesis that the condition
does not matter, each difference is as likely to have either sign, so the null distribution of the mean
difference comes from flipping signs: the same test as scipy's one-sample ``permutation_test`` (the tests
check they agree), computed as one matrix product of random sign vectors with the differences, because
scipy materialises every resample (n_permutations x items x features floats: gigabytes for an SAE). The
p-value counts the observed statistic as one of the resamples (Phipson & Smyth 2010), so it is never 0.
p-values are two-sided; q-values control the false discovery rate (Benjamini-Hochberg, scipy's
``false_discovery_control``) over the features tested together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from mechinterp.errors import ConfigError


@dataclass(frozen=True)
class PairedResult:
    """Per-feature statistics of paired differences (arrays of length n_features)."""

    n: int
    mean_diff: np.ndarray
    sd_diff: np.ndarray
    cohen_dz: np.ndarray  # mean / sd of the differences; nan where sd is 0
    p: np.ndarray  # two-sided sign-flip permutation p-value; nan where not tested
    tested: np.ndarray  # bool


def paired_permutation(
    diffs: np.ndarray, n_permutations: int = 20_000, seed: int = 0, tested: np.ndarray | None = None
) -> PairedResult:
    """Sign-flip tests of mean difference 0 for each column of ``diffs`` (items x features)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    if diffs.ndim != 2:
        raise ConfigError(f"paired differences must be items x features, got shape {diffs.shape}")
    n, m = diffs.shape
    if n < 2:
        raise ConfigError(f"a paired test needs at least 2 items, got {n}")
    if n_permutations < 1:
        raise ConfigError(f"n_permutations must be positive, got {n_permutations}")
    mean = diffs.mean(0)
    sd = diffs.std(0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dz = np.where(sd > 0, mean / sd, np.nan)
    tested = np.ones(m, dtype=bool) if tested is None else np.asarray(tested, dtype=bool)
    tested = tested & np.any(diffs != 0, axis=0)
    p = np.full(m, np.nan)
    if tested.any():  # pyright: ignore[reportOptionalMemberAccess]  # numpy stubs: the & of bool arrays is typed Optional
        x = diffs[:, tested]
        obs = np.abs(x.mean(0))
        rng = np.random.default_rng(seed)
        exceed = np.zeros(x.shape[1])
        done = 0
        while done < n_permutations:  # chunks bound the memory to chunk x features
            b = min(4096, n_permutations - done)
            signs = rng.choice(np.array([-1.0, 1.0]), size=(b, n))
            null = np.abs(signs @ x) / n
            exceed += (null >= obs - 1e-12 * np.maximum(obs, 1.0)).sum(0)
            done += b
        p[tested] = (exceed + 1.0) / (n_permutations + 1.0)
    return PairedResult(n=n, mean_diff=mean, sd_diff=sd, cohen_dz=dz, p=p, tested=tested)


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) over the finite entries of ``p``; nan stays nan."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q

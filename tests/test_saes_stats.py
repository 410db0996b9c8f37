"""Paired sign-flip permutation tests and Benjamini-Hochberg q-values for SAE features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mechinterp.errors import ConfigError
from mechinterp.saes.stats import bh_qvalues, paired_permutation


def test_agrees_with_scipy_permutation_test():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(20, 6)) + np.array([0.0, 0.2, 0.5, 0.8, -0.6, 0.1])
    ours = paired_permutation(d, n_permutations=40_000, seed=1).p
    ref = stats.permutation_test((d,), lambda x, axis: x.mean(axis), permutation_type="samples",
                                 vectorized=True, n_resamples=40_000, axis=0, rng=np.random.default_rng(2)).pvalue
    np.testing.assert_allclose(ours, ref, atol=0.01)


def test_all_positive_small_sample_matches_exact_value():
    # 6 positive differences: exact two-sided sign-flip p = 2/64
    d = np.arange(1, 7, dtype=float)[:, None]
    p = paired_permutation(d, n_permutations=50_000, seed=0).p[0]
    assert p == pytest.approx(2 / 64, abs=0.004)


def test_effect_sizes_and_untested_columns():
    d = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [2.0, 0.0, 2.0]])
    r = paired_permutation(d, n_permutations=100, tested=np.array([True, True, False]))
    assert r.mean_diff.tolist() == [2.0, 0.0, 2.0]
    assert r.cohen_dz[0] == pytest.approx(2.0 / 1.0)
    assert np.isnan(r.cohen_dz[1])  # no variance
    assert np.isnan(r.p[1]) and np.isnan(r.p[2])  # all zero; not asked for
    assert r.tested.tolist() == [True, False, False]


def test_null_pvalues_are_not_anticonservative():
    rng = np.random.default_rng(3)
    p = paired_permutation(rng.normal(size=(15, 2000)), n_permutations=2000, seed=4).p
    assert 0.03 < (p < 0.05).mean() < 0.07


def test_bh_matches_scipy_and_keeps_nan():
    p = np.array([0.001, np.nan, 0.02, 0.04, 0.5])
    q = bh_qvalues(p)
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2, 3, 4]], stats.false_discovery_control(p[[0, 2, 3, 4]]))


def test_bad_input():
    with pytest.raises(ConfigError, match="at least 2"):
        paired_permutation(np.ones((1, 3)))
    with pytest.raises(ConfigError, match="items x features"):
        paired_permutation(np.ones(3))

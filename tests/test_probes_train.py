"""Probe math on synthetic tensors: grouped CV has no leakage, control tasks and selectivity, baselines,
bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from mechinterp.errors import ConfigError
from mechinterp.probes.evaluate import accuracy, cluster_bootstrap, correct, selectivity
from mechinterp.probes.templates import generate
from mechinterp.probes.train import (
    check_disjoint,
    control_labels,
    cross_val_proba,
    fit_full,
    grouped_folds,
    lexical_groups,
    random_direction_proba,
    random_folds,
)


def test_lexical_groups_are_connected_components():
    g = lexical_groups([("a", "x"), ("b",), ("x", "y"), ("y", "c"), ("d",), ("b", "e")])
    assert g[0] == g[2] == g[3]
    assert g[1] == g[5]
    assert len({g[0], g[1], g[4]}) == 3


@pytest.mark.parametrize("construction", ["NP/Z", "NP/S", "MV/RR", "LEX"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_cv_never_puts_an_item_or_verb_on_both_sides(construction, seed):
    ts = generate(construction, 100, seed=0)
    lexical = [s.lexical for s in ts.sentences]
    folds = grouped_folds(lexical_groups(lexical), 5, seed)
    covered = np.concatenate([te for _, te in folds])
    assert sorted(covered) == list(range(len(ts)))
    for tr, te in folds:
        train_items = {w for i in tr for w in lexical[i]}
        test_items = {w for i in te for w in lexical[i]}
        assert not train_items & test_items
        # the probed word and every bucket verb in particular
        assert not {ts.sentences[i].target for i in tr} & {ts.sentences[i].target for i in te}
    check_disjoint(folds, lexical)


def test_check_disjoint_catches_a_leaky_split():
    ts = generate("NP/Z", 60, seed=0)
    lexical = [s.lexical for s in ts.sentences]
    with pytest.raises(ConfigError, match="both sides"):
        check_disjoint(random_folds(ts.labels, 5, 0), lexical)


def _synthetic(n=240, d=32, signal=3.0, seed=0, n_types=24):
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    types = np.repeat(np.arange(n_types), n // n_types)
    groups = types % 8
    X = rng.standard_normal((n, d))
    X[:, 0] += signal * (2 * y - 1)
    X[:, 1] *= 1000.0  # a massive dimension (like Gemma's): standardisation must cope
    return X, y, groups, types


def test_probe_finds_a_signal_and_not_noise():
    X, y, groups, _ = _synthetic()
    folds = grouped_folds(groups, 4, 0)
    acc = accuracy(cross_val_proba(X, y, folds, C=0.1), y, groups)
    assert acc.value > 0.9 and acc.ci_low > 0.8
    Xn, *_ = _synthetic(signal=0.0)
    noise = accuracy(cross_val_proba(Xn, y, folds, C=0.1), y, groups)
    assert noise.ci_low < 0.5 < noise.ci_high + 0.05
    assert abs(noise.value - 0.5) < 0.12


def test_control_labels_are_one_random_label_per_type():
    types = ["a", "b", "c", "a", "b", "c", "d", "d"] * 10
    y = np.tile([0, 1], 40)
    c = control_labels(types, y, seed=0)
    for t in set(types):
        assert len({c[i] for i in range(len(types)) if types[i] == t}) == 1
    assert set(c) == {0, 1}
    assert not np.array_equal(control_labels(types * 5, np.tile(y, 5), 1), control_labels(types * 5, np.tile(y, 5), 2))


def test_selectivity_is_task_minus_control_on_the_same_rows():
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    task = np.array([0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.4, 0.6])  # 6/8 right
    cy = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    ctrl = np.array([0.9, 0.2, 0.1, 0.3, 0.6, 0.4, 0.2, 0.7])  # right: 1,0,1,1,1,0,1,0 = 5/8
    s = selectivity(task, y, ctrl, cy, n_boot=500)
    assert s.value == pytest.approx(6 / 8 - 5 / 8)
    assert s.ci_low <= s.value <= s.ci_high
    assert correct(task, y).sum() == 6 and correct(ctrl, cy).sum() == 5


def test_selectivity_separates_memorising_types_from_reading_the_task():
    rng = np.random.default_rng(0)
    n, d, n_types = 400, 64, 20
    types = rng.integers(0, n_types, n)
    y = rng.integers(0, 2, n)
    type_vecs = rng.standard_normal((n_types, d)) * 3
    X_types = type_vecs[types] + 0.3 * rng.standard_normal((n, d))  # only word identity
    task_dir = rng.standard_normal(d)
    X_task = np.outer(2 * y - 1, task_dir) + rng.standard_normal((n, d))  # only the task
    cy = control_labels(types, y, 0)
    folds = random_folds(y, 5, 0)
    cfolds = folds
    for X, expect in ((X_types, "low"), (X_task, "high")):
        p_t = cross_val_proba(X, y, folds, C=1.0)
        p_c = cross_val_proba(X, cy, cfolds, C=1.0)
        s = selectivity(p_t, y, p_c, cy)
        if expect == "low":  # control learnt by memorising types, task at chance
            assert accuracy(p_c, cy).value > 0.9 and s.value < -0.25
        else:  # task learnt, control at chance
            assert accuracy(p_t, y).value > 0.9 and s.value > 0.3


def test_random_directions_are_near_chance_when_the_signal_is_one_direction():
    X, y, groups, _ = _synthetic(d=200, signal=2.0)
    folds = grouped_folds(groups, 4, 0)
    P = random_direction_proba(X, y, folds, 5, seed=0)
    assert P.shape == (5, len(y))
    assert accuracy(P, y, groups).value < 0.7


def test_fit_full_matches_original_space_map():
    X, y, *_ = _synthetic()
    f = fit_full(X, y, C=0.1)
    z = (X - f.mean) / f.scale @ f.coef + f.intercept
    w = f.coef / f.scale
    assert np.allclose(z, X @ w + (f.intercept - w @ f.mean))


def test_cluster_bootstrap_is_wider_for_clustered_data():
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(10), 20)
    v = np.repeat(rng.random(10) > 0.5, 20).astype(float)  # all variation is between clusters
    iid = cluster_bootstrap(v, None, 1000, 0)
    clu = cluster_bootstrap(v, clusters, 1000, 0)
    assert iid.value == clu.value
    assert (clu.ci_high - clu.ci_low) > 2 * (iid.ci_high - iid.ci_low)


def test_bad_probe_input_is_named():
    with pytest.raises(ConfigError, match="both 0 and 1"):
        cross_val_proba(np.zeros((4, 2)), [1, 1, 1, 1], [(np.arange(2), np.arange(2, 4))], 1.0)
    with pytest.raises(ConfigError, match="NaN"):
        fit_full(np.full((4, 2), np.nan), [0, 1, 0, 1], 1.0)
    with pytest.raises(ConfigError, match="at least 2 lexical groups"):
        grouped_folds([1, 1, 1], 3, 0)

"""Features of each reading from generated unambiguous sentences, read on the stimuli."""

from __future__ import annotations

import numpy as np
import pytest

from mechinterp.errors import ConfigError
from mechinterp.probes.activations import collect_stimuli, collect_training
from mechinterp.probes.lexical import suite_content_words
from mechinterp.probes.templates import generate
from mechinterp.saes.load import load_sae
from mechinterp.saes.readings import ReadingFeatureConfig, _bucket_differences, reading_features, stratified_permutation
from mechinterp.stimuli import load_suite
from test_saes_load import perfect_sae


def test_bucket_differences_pair_readings_within_buckets():
    f = np.array([[1.0], [3.0], [0.0], [10.0], [7.0]])
    labels = np.array([1, 0, 1, 0, 1])
    groups = np.array([0, 0, 1, 1, 2])  # bucket 2 has one reading only: left out
    d, kept = _bucket_differences(f, labels, groups)
    assert kept == [0, 1] and d[:, 0].tolist() == [-2.0, -10.0]


def test_stratified_permutation_tests_the_reading_within_buckets():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 10)
    labels = np.tile(np.r_[np.ones(5), np.zeros(5)], 6).astype(int)
    noise = rng.normal(size=(60, 1))
    bucket_only = groups[:, None] * 10.0  # differs between buckets, never between readings within one
    planted = noise + 1.5 * labels[:, None]
    f = np.concatenate([noise, bucket_only, planted], 1)
    stat, p, buckets = stratified_permutation(f, labels, groups, n_permutations=2000, seed=1)
    d, _ = _bucket_differences(f, labels, groups)
    np.testing.assert_allclose(stat, d.mean(0))
    assert buckets == list(range(6))
    assert p[0] > 0.05 and p[1] == 1.0 and p[2] < 0.001


@pytest.fixture(scope="module")
def npz5():
    s = load_suite("npz")
    return s.head(5)


def test_reading_features_with_a_perfect_sae(tiny_model, npz5, tmp_path):
    """Perfect SAE: feature j = relu(x_j), feature d+j = relu(-x_j), so every number can be recomputed."""
    sae = load_sae(perfect_sae(tmp_path / "p", tiny_model.d_model, layer=1))
    cfg = ReadingFeatureConfig(n_per_class=40, n_permutations=500, top=3, alpha=0.5)
    res = reading_features(tiny_model, sae, npz5, cfg)
    st = res.stats
    assert set(st["construction"]) == {"NP/Z"} and set(st["reading"]) <= {"object", "subject"}
    assert (st["reading"] == "object").eq(st["preferred"]).all()
    assert ((st["p"] > 0) & (st["p"] <= 1) & (st["q"] >= st["p"] - 1e-12)).all()

    ts = generate("NP/Z", 40, 0).without_words(suite_content_words(npz5), min_per_class=10)
    x = collect_training(tiny_model, ts, [1], ["resid_post"], positions=("target",))[(1, "resid_post", "target")]
    f = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], 1)
    lab = np.asarray(ts.labels)
    row = st.iloc[0]
    j = int(row["feature"])
    assert row["mean_preferred"] == pytest.approx(f[lab == 1, j].mean(), rel=1e-4, abs=1e-5)
    assert row["mean_dispreferred"] == pytest.approx(f[lab == 0, j].mean(), rel=1e-4, abs=1e-5)
    assert (row["bucket_diff"] > 0) == (row["reading"] == "object")

    on = res.on_stimuli
    assert len(on) == 4 and set(on["condition"]) == {"ambiguous", "unambiguous"} and (on["n_items"] == 5).all()
    meta, acts = collect_stimuli(tiny_model, npz5, "NP/Z", [1], ["resid_post"])
    a = acts[(1, "resid_post")]
    fs = np.concatenate([np.maximum(a, 0), np.maximum(-a, 0)], 1)
    for _, r in on[on["n_features"] > 0].iterrows():
        feats = [int(v) for v in r["features"].split(",")]
        m = np.array([mm["ambiguous"] == (r["condition"] == "ambiguous") for mm in meta])
        assert r["mean_activation"] == pytest.approx(fs[m][:, feats].mean(), rel=1e-4, abs=1e-5)
        top = st[(st["reading"] == r["reading"]) & st["significant"]]
        assert set(feats) <= set(top["feature"]) and len(feats) <= 3


def test_reading_features_need_a_supported_construction(tiny_model, tmp_path):
    sae = load_sae(perfect_sae(tmp_path / "p", tiny_model.d_model, layer=1))
    suite = load_suite("npz")
    suite = suite.model_copy(update={"ambiguity": suite.ambiguity.model_copy(update={"construction": "XYZ"}),
                                     "items": suite.items[:2]})
    with pytest.raises(ConfigError, match="probes need one of"):
        reading_features(tiny_model, sae, suite, ReadingFeatureConfig(n_per_class=20, n_permutations=100))

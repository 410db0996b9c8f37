"""The surprisal-to-ms link: features, OLS fit with intervals, Natural Stories scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import NATURAL_STORIES
from mechinterp.compare.linking import (
    FEATURE_SETS,
    LinkingFit,
    add_features,
    fit_linking,
    fit_natural_stories,
    frequency_available,
    natural_stories_surprisal,
    predict_rt,
)
from mechinterp.errors import ConfigError


def synthetic(n_seq=60, n_words=12, seed=0, coefs=None):
    """Word tables with RT generated from a known linear relation plus noise."""
    rng = np.random.default_rng(seed)
    vocab = ["the", "a", "dog", "barked", "loudly", "at", "strangers", "in", "night", "quietly", "ran", "home"]
    rows = []
    for s in range(n_seq):
        for w in range(n_words):
            rows.append({"story": s, "zone": w, "word": rng.choice(vocab), "surprisal_bits": rng.gamma(2.0, 3.0)})
    df = add_features(pd.DataFrame(rows), group=["story"], order="zone")
    coefs = coefs or {"intercept": 300.0, "surprisal": 4.0, "surprisal_prev1": 2.0, "surprisal_prev2": 1.0,
                      "length": 3.0, "length_prev1": 1.0, "log_freq": -5.0, "log_freq_prev1": -2.0, "position": 0.5}
    feats = FEATURE_SETS["length_frequency" if frequency_available() else "length_position"]
    y = coefs["intercept"] + sum(coefs[f] * df[f].fillna(0) for f in feats)
    df["rt_mean"] = y + rng.normal(0, 5.0, len(df))
    return df, coefs, feats


def test_features_lags_and_positions():
    df = pd.DataFrame({"sentence": [0] * 4 + [1] * 3, "word_index": [0, 1, 2, 3, 0, 1, 2],
                       "word": ["The", "dog.", "It", "ran,", "A", "cat's", "ear"],
                       "surprisal_bits": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]})
    f = add_features(df, group=["sentence"])
    assert np.isnan(f["surprisal_prev1"].iloc[0]) and f["surprisal_prev1"].tolist()[1:4] == [1.0, 2.0, 3.0]
    assert f["surprisal_prev2"].iloc[3] == 2.0 and np.isnan(f["surprisal_prev2"].iloc[5])
    assert f["length"].tolist() == [3, 3, 2, 3, 1, 4, 3]  # punctuation does not count, the apostrophe either
    assert f["position"].tolist() == [0, 1, 0, 1, 0, 1, 2]  # a new sentence after "dog."
    if frequency_available():
        assert f["log_freq"].iloc[0] > f["log_freq"].iloc[1] > 0  # "the" is more frequent than "dog"


def test_fit_recovers_a_known_relation():
    df, coefs, feats = synthetic()
    fit = fit_linking(df, features="auto")
    co = fit.coefficients().set_index("term")
    for t in ("intercept", *feats):
        assert co.loc[t, "ci_low"] <= coefs[t] <= co.loc[t, "ci_high"], t
        assert co.loc[t, "estimate"] == pytest.approx(coefs[t], abs=4 * co.loc[t, "std_error"] + 1e-9)
    assert fit.r2 > 0.9 and fit.r2_without_surprisal < fit.r2
    assert fit.ms_per_bit() == pytest.approx(7.0, abs=0.3)
    assert fit.n == int(df.dropna(subset=list(feats)).shape[0])
    pred = fit.predict(df.dropna(subset=list(feats)))
    assert np.corrcoef(pred, df.dropna(subset=list(feats))["rt_mean"])[0, 1] > 0.95


def test_length_position_fallback(monkeypatch):
    import mechinterp.compare.linking as linking

    df, _, _ = synthetic(coefs={"intercept": 250.0, "surprisal": 5.0, "surprisal_prev1": 0.0, "surprisal_prev2": 0.0,
                                "length": 2.0, "length_prev1": 0.0, "log_freq": 0.0, "log_freq_prev1": 0.0,
                                "position": 1.0})
    monkeypatch.setattr(linking, "frequency_available", lambda: False)
    fit = fit_linking(df, features="auto")
    assert fit.feature_set == "length_position" and "position" in fit.features
    assert fit.coefficient("surprisal") == pytest.approx(5.0, abs=0.3)
    with pytest.raises(ConfigError, match="wordfreq"):
        fit_linking(df, features="length_frequency")


def test_save_load_and_errors(tmp_path):
    df, _, _ = synthetic(n_seq=10)
    fit = fit_linking(df)
    path = fit.save(tmp_path / "link.json")
    back = LinkingFit.load(path)
    assert back == fit
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a saved linking fit"):
        LinkingFit.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="lacks"):
        fit_linking(df.drop(columns=["surprisal"]))
    const = df.assign(surprisal=1.0)
    with pytest.raises(ConfigError, match="collinear"):
        fit_linking(const)
    with pytest.raises(ConfigError, match="unknown linking feature set"):
        fit_linking(df, features="magic")  # type: ignore[arg-type]


def test_predict_rt_on_suite_words():
    words = pd.DataFrame({"construction": "X", "item": 1, "condition": "a", "word_index": range(4),
                          "word": ["The", "horse", "raced", "fell"], "surprisal_bits": [5.0, 9.0, 8.0, 12.0]})
    df, _, _ = synthetic(n_seq=20)
    fit = fit_linking(df)
    out = predict_rt(fit, words)
    assert out["predicted_ms"].isna().tolist() == [True, True, False, False]
    manual = fit.predict(out.iloc[[3]])
    assert out["predicted_ms"].iloc[3] == pytest.approx(float(manual[0]))


def test_natural_stories_windows_match_whole_text(tiny_model):
    from mechinterp.compare.humans import load_natural_stories
    from mechinterp.surprisal import sentence_surprisal

    ns = load_natural_stories(NATURAL_STORIES).subset([1], words_per_story=40)
    whole = sentence_surprisal(tiny_model, [" ".join(ns.words["word"])])
    win = natural_stories_surprisal(tiny_model, ns, window_words=15, context_words=40)
    np.testing.assert_allclose(win["surprisal_bits"], whole["surprisal_bits"], atol=2e-3)
    short = natural_stories_surprisal(tiny_model, ns, window_words=15, context_words=2)
    assert (short["surprisal_bits"] - whole["surprisal_bits"]).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="window_words"):
        natural_stories_surprisal(tiny_model, ns, window_words=0)


@pytest.mark.slow
def test_natural_stories_fit_smollm2(smollm2):
    """Real model on two stories: surprisal slows reading (positive coefficient, excluding 0) and adds R^2."""
    from mechinterp.compare.humans import load_natural_stories

    ns = load_natural_stories(NATURAL_STORIES).subset([1, 2])
    fit, table = fit_natural_stories(smollm2, ns)
    co = fit.coefficients().set_index("term")
    assert co.loc["surprisal", "ci_low"] > 0
    assert fit.r2 > fit.r2_without_surprisal
    assert fit.model["name"] == "smollm2-135m" and fit.n > 1900
    assert table["surprisal_bits"].notna().all()

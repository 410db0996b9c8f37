"""Cross-validated reading-time regressions (mechinterp.compare.regression, mechinterp.compare.fit_sets) and
`mechinterp fit`: OLS and held-out log-likelihood equal a direct numpy computation, a predictor that generates
the RTs gains log-likelihood and a noise column does not, folds never split an item, and the command runs on
the tiny model with every option and records its provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import refused
from mechinterp.cli import main
from mechinterp.compare.fit_sets import (
    context_windows,
    fit_sap_sets,
    natural_stories_predictors,
    predictor_sets,
    sap_design,
)
from mechinterp.compare.humans import load_natural_stories, load_sap_effects
from mechinterp.compare.predictors import word_predictors
from mechinterp.compare.regression import add_spillover, cross_validate, item_folds
from mechinterp.errors import ConfigError
from mechinterp.explore.demo import first_items
from mechinterp.provenance import read_provenance
from mechinterp.stimuli import load_suite, write_syntaxgym

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _synthetic(n_items: int = 60, seed: int = 0) -> pd.DataFrame:
    """Items of two versions (ambiguous, unambiguous) of 6 words; RT = 250 + 20 x (+ 8 x one word back) + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(n_items):
        for cond in ("ambiguous", "unambiguous"):
            x = rng.normal(size=6)
            for w in range(6):
                rows.append({"item": item, "condition": cond, "word_index": w, "x": x[w],
                             "noise": rng.normal(), "x_prev": x[w - 1] if w else 0.0})
    d = pd.DataFrame(rows)
    d["rt"] = 250 + 20 * d["x"] + 8 * d["x_prev"] + rng.normal(0, 5, len(d))
    return d


def test_ols_and_heldout_loglik_equal_numpy():
    d = add_spillover(_synthetic(), ["x"], 1, ["item", "condition"])
    cv = cross_validate(d, "rt", {"x": ["x_lag0", "x_lag1"]}, "item", n_folds=4, seed=1)
    c = d.dropna(subset=["x_lag1"]).reset_index(drop=True)
    folds = item_folds(c["item"].tolist(), 4, seed=1)
    X = np.column_stack([np.ones(len(c)), c["x_lag0"], c["x_lag1"]])
    y = c["rt"].to_numpy()
    ll = np.empty(len(c))
    for f in range(4):
        tr, te = folds != f, folds == f
        beta = np.linalg.solve(X[tr].T @ X[tr], X[tr].T @ y[tr])
        s2 = np.mean((y[tr] - X[tr] @ beta) ** 2)
        mu = X[te] @ beta
        ll[te] = -0.5 * np.log(2 * np.pi * s2) - (y[te] - mu) ** 2 / (2 * s2)
        row = cv.folds[cv.folds["fold"] == f].iloc[0]
        assert row["sigma2_train"] == pytest.approx(s2, rel=1e-9)
        assert row["loglik_per_word"] == pytest.approx(ll[te].mean(), rel=1e-9)
        assert row["r2"] == pytest.approx(1 - np.sum((y[te] - mu) ** 2) / np.sum((y[te] - y[te].mean()) ** 2), rel=1e-9)
    np.testing.assert_allclose(cv.rows["loglik"], ll, rtol=1e-9)
    assert cv.pooled("x")["loglik_per_word"] == pytest.approx(ll.mean(), rel=1e-9)
    assert cv.rows["y"].tolist() == y.tolist()  # coefficients: ~(250, 20, 8)
    beta_all = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(beta_all, [250, 20, 8], atol=1.5)


def test_true_predictor_gains_loglik_and_noise_does_not():
    d = add_spillover(_synthetic(), ["x", "noise"], 1, ["item", "condition"])
    sets = {"baseline": [], "x": ["x_lag0", "x_lag1"], "x+noise": ["x_lag0", "x_lag1", "noise_lag0", "noise_lag1"]}
    cv = cross_validate(d, "rt", sets, "item", n_folds=5)
    gain = cv.delta("x", "baseline", n_boot=200)
    assert gain["d_loglik"] > 0.5 and gain["d_loglik_low"] > 0 and gain["d_r2_low"] > 0.5
    noise = cv.delta("x+noise", "x", n_boot=200)
    assert abs(noise["d_loglik"]) < 0.02 and abs(noise["d_r2"]) < 0.01
    assert noise["d_loglik_low"] <= noise["d_loglik"] <= noise["d_loglik_high"]


def test_cv_never_splits_an_item():
    d = _synthetic(n_items=23)
    d["key"] = d["item"].astype(str)
    folds = item_folds(d["key"].tolist(), 5, seed=3)
    per_item = pd.DataFrame({"item": d["item"], "condition": d["condition"], "fold": folds})
    assert bool((per_item.groupby("item")["fold"].nunique() == 1).all())  # both versions, every word: one fold
    assert sorted(per_item.drop_duplicates("item")["fold"].value_counts()) == [4, 4, 5, 5, 5]
    cv = cross_validate(d, "rt", {"x": ["x"]}, "key", n_folds=5, seed=3)
    assert bool((cv.rows.groupby("group")["fold"].nunique() == 1).all())
    few = d[d["item"] < 3]  # 3 items x 12 rows: a fold trains on 24 rows or fewer
    msg = str(pytest.raises(ConfigError, cross_validate, few, "rt", {"x": ["x"] * 30}, "key", 3).value)
    assert "coefficients but fold" in msg
    assert "at least 5 items" in str(pytest.raises(ConfigError, item_folds, ["a", "b"], 5).value)


def test_predictor_sets_and_sap_design_pairs_versions(tiny_model):
    assert predictor_sets(["surprisal", "entropy_change", "reading_tv"]) == {
        "baseline": ["length", "log_freq"], "surprisal": ["length", "log_freq", "surprisal_bits"],
        "surprisal+entropy_change_bits": ["length", "log_freq", "surprisal_bits", "entropy_change_bits"],
        "surprisal+reading_tv": ["length", "log_freq", "surprisal_bits", "reading_tv"],
        "surprisal+all": ["length", "log_freq", "surprisal_bits", "entropy_change_bits", "reading_tv"]}
    import mechinterp as mi

    suite = first_items(load_suite("sap:ClassicGP"), 1, per_construction=True)
    words = mi.suite_surprisal(tiny_model, suite, show_progress=False)
    d = sap_design(words, suite, load_sap_effects(None, "ClassicGP", "item"), ["surprisal_bits"], 1)
    eff = mi.garden_path_effects(words, suite)
    m = d.merge(eff, on=["construction", "item", "roi"])
    np.testing.assert_allclose(m["d_surprisal_bits_lag0"], m["effect_bits"], rtol=1e-9)
    assert len(d) == len(d.drop_duplicates(["item_key", "roi"]))  # one row per item and ROI: versions paired
    # a distance between the versions (the same number on both rows) is the ambiguous version's: not differenced away
    paired = words.assign(repr_cos_L1=0.25)
    d = sap_design(paired, suite, load_sap_effects(None, "ClassicGP", "item"), ["surprisal_bits", "repr_cos_L1"], 1)
    np.testing.assert_allclose(d["d_repr_cos_L1_lag0"], 0.25)
    np.testing.assert_allclose(d["d_repr_cos_L1_lag1"], 0.25)
    np.testing.assert_allclose(d["d_surprisal_bits_lag0"], m["effect_bits"], rtol=1e-9)


def test_sap_sets_share_their_rows_and_leave_out_a_predictor_with_holes(tiny_model):
    import mechinterp as mi

    suite = first_items(load_suite("sap:ClassicGP"), 4, per_construction=True)
    words = mi.suite_surprisal(tiny_model, suite, show_progress=False)
    rng = np.random.default_rng(0)
    words["entropy_change_bits"] = rng.normal(size=len(words))
    words["reading_tv"] = rng.normal(size=len(words))
    holes = (words["construction"] == "NP/S") & (words["word_index"] % 2 == 0)  # undefined on some ROI words
    words["repr_cos_L1"] = rng.normal(size=len(words)).astype(float)
    words.loc[holes, "repr_cos_L1"] = np.nan
    summary, _, items = fit_sap_sets(words, suite, load_sap_effects(None, "ClassicGP", "item"), None,
                                     ["surprisal", "entropy_change", "reading_tv", "repr_cos_L1"], 0, 3, n_boot=20)
    assert list(summary["set"]) == ["baseline", "surprisal", "surprisal+entropy_change_bits",
                                    "surprisal+reading_tv", "surprisal+all"]  # repr_cos_L1 left out, "all" without it
    assert bool((summary["n"] == 36).all())  # 12 items x ROI 0-2 in every set: no row lost to the holes
    assert items.groupby("set").size().nunique() == 1
    # item_r correlates the items' differences within construction x ROI; pooled_r every row as it is
    it = items[items["set"] == "surprisal"]
    cell = it["construction"] + "/" + it["roi"].astype(str)
    dev = [v - v.groupby(cell).transform("mean") for v in (it["predicted_ms"], it["human_ms"])]
    row = summary.set_index("set").loc["surprisal"]
    assert row["item_r"] == pytest.approx(np.corrcoef(dev[0], dev[1])[0, 1])
    assert row["pooled_r"] == pytest.approx(np.corrcoef(it["predicted_ms"], it["human_ms"])[0, 1])
    assert row["item_r_low"] <= row["item_r"] <= row["item_r_high"]
    # one hole in 36 rows keeps the set; every set then loses that row
    one = words.assign(repr_cos_L1=1.0)
    roi0 = one.index[(one["construction"] == "NP/S") & (one["region"] == suite.ambiguity.disambiguating_region)][0]
    one.loc[roi0, "repr_cos_L1"] = np.nan
    summary, _, _ = fit_sap_sets(one, suite, load_sap_effects(None, "ClassicGP", "item"), None,
                                 ["surprisal", "entropy_change", "repr_cos_L1"], 0, 3, n_boot=20)
    assert "surprisal+repr_cos_L1" in set(summary["set"]) and bool((summary["n"] == 35).all())


def test_fit_command(tiny_dirs, tmp_path, capsys):
    suite = write_syntaxgym(first_items(load_suite("sap:ClassicGP"), 4, per_construction=True), tmp_path / "c12.json")
    out = tmp_path / "fit.csv"
    argv = ["fit", "--model", str(tiny_dirs["llama"]), "--suite", str(suite), "--out", str(out),
            "--predictors", "surprisal,entropy_change_bits,reading_tv", "--spillover", "1", "--folds", "2", "--n-boot", "50",
            "--naturalstories", "shipped", "--ns-words", "25", "--batch-size", "8", "--seed", "1",
            "--device", "cpu", "--dtype", "float32"]
    assert main(argv) == 0
    t = pd.read_csv(out)
    assert set(t["dataset"]) == {"naturalstories", "sap:" + load_suite(str(suite)).name}
    assert set(t[t["dataset"] != "naturalstories"]["set"]) == {"baseline", "surprisal", "surprisal+entropy_change_bits",
                                                            "surprisal+reading_tv", "surprisal+all"}
    assert "surprisal+reading_tv" not in set(t[t["dataset"] == "naturalstories"]["set"])  # NaN on plain texts
    assert {"d_loglik_vs_baseline", "d_loglik_vs_baseline_low", "d_r2_vs_surprisal_high", "item_r", "item_r_low",
            "noise_ceiling"} <= set(t.columns)
    sap = t[t["dataset"] != "naturalstories"]
    assert bool(pd.Series(sap["noise_ceiling"]).between(0, 1).all())
    assert bool((sap["n_items"] == 12).all()) and bool((sap["n"] == 36).all())  # 12 items x ROI 0-2, none lost
    folds = pd.read_csv(tmp_path / "fit.folds.csv")
    assert set(folds["fold"]) == {0, 1}
    items = pd.read_csv(tmp_path / "fit.items.csv")
    assert bool((items.groupby(["set", "construction", "item"])["fold"].nunique() == 1).all())
    prov = read_provenance(out)
    assert prov["command"] == "fit" and prov["model"] is not None
    assert prov["config"]["spillover"] == 1 and prov["config"]["folds"] == 2 and prov["config"]["ns_words"] == 25
    base = argv[:7] + ["--naturalstories", "none"]
    assert "--folds" in refused(base + ["--folds", "1"], capsys)
    assert "reading_kl" in refused(base + ["--predictors", "surprisal,reading_kl"], capsys)
    assert "--spillover" in refused(base + ["--spillover", "-1"], capsys)


def test_context_windows_keep_every_word_once_with_its_context():
    assert context_windows(10, 6, 2) == [(0, 0, 6), (4, 6, 10)]
    assert context_windows(5, 300, 100) == [(0, 0, 5)]  # a story shorter than the window: scored whole
    for n, window, context in ((1, 1, 0), (997, 300, 100), (1000, 50, 49), (40, 7, 0)):
        wins = context_windows(n, window, context)
        kept = [w for _, keep, end in wins for w in range(keep, end)]
        assert kept == list(range(n))
        assert all(end - first <= window for first, _, end in wins)
        assert all(keep - first == context for first, keep, _ in wins[1:])
    for bad in ((10, 5, 5), (10, 0, 0), (10, 5, -1)):
        with pytest.raises(ConfigError, match="context < window"):
            context_windows(*bad)


def test_windowed_natural_stories_equal_unwindowed_where_the_context_fits(tiny_model):
    """Words of a story's first window have their whole left context, so their predictors equal those of the
    story scored as one sequence; a window as long as the story gives the unwindowed numbers everywhere; later
    windows' words differ (less context) but every word is scored."""
    corpus = load_natural_stories().subset(stories=[1, 2], words_per_story=40)
    whole = natural_stories_predictors(tiny_model, corpus, window_words=40, context_words=0)
    direct = word_predictors(tiny_model, [" ".join(corpus.story_words(s)["word"]) for s in corpus.stories], layers=(),
                             readings=False)
    np.testing.assert_allclose(whole["surprisal_bits"], direct["surprisal_bits"], rtol=1e-5)
    np.testing.assert_allclose(whole["entropy_bits"], direct["entropy_bits"], rtol=1e-5)
    windowed = natural_stories_predictors(tiny_model, corpus, window_words=16, context_words=6)
    assert bool(windowed["surprisal_bits"].notna().all())
    first = (corpus.words.groupby("story").cumcount() < 16).to_numpy()
    for col in ("surprisal_bits", "entropy_bits", "entropy_change_bits"):
        np.testing.assert_allclose(windowed.loc[first, col], whole.loc[first, col], rtol=1e-5)
    assert not np.allclose(windowed.loc[~first, "surprisal_bits"], whole.loc[~first, "surprisal_bits"])
    # entropy change is defined at a window's first kept word: its previous word is in the window's context
    assert int(windowed["entropy_change_bits"].isna().sum()) == len(corpus.stories)

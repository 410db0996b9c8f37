"""Garden-path effects, bootstrap intervals and SyntaxGym prediction evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mechinterp.effects import bootstrap_mean_ci, evaluate_predictions, garden_path_effects, summarise_effects
from mechinterp.errors import SuiteError
from mechinterp.stimuli import load_suite, suite_from_dict
from mechinterp.surprisal import region_surprisal, suite_surprisal


def _words_for(suite, surprisal_of):
    """A word table with made-up surprisals: surprisal_of(condition, word_index, word) -> bits."""
    rows = []
    for it in suite.items:
        for c in it.conditions:
            for w in c.words:
                rows.append({"suite": suite.name, "construction": suite.construction_of(it), "item": it.number,
                             "condition": c.name, "ambiguous": c.ambiguous, "region": w.region,
                             "region_name": suite.region_meta.get(w.region), "word_index": w.index, "word": w.text,
                             "n_tokens": 1, "surprisal_bits": surprisal_of(c.name, w.index, w.text)})
    return pd.DataFrame(rows)


def test_effects_align_on_the_disambiguating_word():
    suite = load_suite("nps")  # the unambiguous version has one more word ("that") before the NP
    amb = suite.ambiguity
    disamb = {(it.number, c.name): c.region_words(amb.disambiguating_region)[0].index
              for it in suite.items for c in it.conditions}
    it0 = suite.items[0]
    assert disamb[(it0.number, "unambiguous")] == disamb[(it0.number, "ambiguous")] + 1

    def surprisal_of(cond, idx, word):
        return 10.0 if cond == "ambiguous" and word == suite.items[0].condition("ambiguous").region_words(amb.disambiguating_region)[0].text else 1.0

    words = _words_for(suite.head(1), surprisal_of)
    eff = garden_path_effects(words, suite.head(1))
    assert eff.loc[eff["roi"] == 0, "effect_bits"].item() == 9.0
    assert (eff.loc[eff["roi"] > 0, "effect_bits"] == 0).all()
    assert (eff["word"] == eff["word_unambiguous"]).all()


def test_bootstrap_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.0, size=200)
    mean, lo, hi = bootstrap_mean_ci(x, n_boot=4000, rng=np.random.default_rng(0))
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert mean == pytest.approx(x.mean())
    assert lo == pytest.approx(mean - 1.96 * se, abs=0.05) and hi == pytest.approx(mean + 1.96 * se, abs=0.05)
    assert np.isnan(bootstrap_mean_ci(np.array([]))[0])


def test_summary_columns():
    df = pd.DataFrame({"construction": ["A"] * 4 + ["B"] * 4, "roi": [0] * 8,
                       "effect_bits": [1, 2, 3, 4, -1, -2, 1, 0], "multi_token": [False] * 7 + [True]})
    s = summarise_effects(df, n_boot=500)
    assert list(s.columns) == ["construction", "roi", "effect_bits", "ci_low", "ci_high", "n_items", "n_positive", "n_multi_token"]
    a = s[s["construction"] == "A"].iloc[0]
    assert a["effect_bits"] == 2.5 and a["n_items"] == 4 and a["n_positive"] == 4
    assert a["ci_low"] <= 2.5 <= a["ci_high"]
    assert s[s["construction"] == "B"].iloc[0]["n_multi_token"] == 1


def test_no_ambiguity_annotation_is_an_error(tmp_path):
    d = {"meta": {"name": "plain"}, "items": [{"item_number": 1, "conditions": [
        {"condition_name": "a", "regions": [{"region_number": 1, "content": "Hello there."}]}]}]}
    suite = suite_from_dict(d)
    with pytest.raises(SuiteError, match="no ambiguity annotation"):
        garden_path_effects(pd.DataFrame(), suite)


def test_evaluate_predictions_counts_empty_regions_as_zero():
    suite = load_suite("npz")
    small = suite.head(2)
    words = _words_for(small, lambda cond, idx, word: 5.0 if cond == "ambiguous" else 1.0)
    res = evaluate_predictions(region_surprisal(words), small)
    assert res["passed"].all() and len(res) == 2 * len(small.predictions)
    words = _words_for(small, lambda cond, idx, word: 1.0)
    assert not evaluate_predictions(region_surprisal(words), small)["passed"].any()


@pytest.mark.slow
def test_sap_classic_effects_positive_on_default_model(gemma, sap_classic):
    """Done-when of the foundation issue: effect at ROI 0 positive for MV/RR, NP/S and NP/Z on SAP items."""
    words = suite_surprisal(gemma, sap_classic, show_progress=False)
    summary = summarise_effects(garden_path_effects(words, sap_classic), n_boot=1000)
    roi0 = summary[summary["roi"] == 0].set_index("construction")
    for cons in ("MV/RR", "NP/S", "NP/Z"):
        assert roi0.loc[cons, "ci_low"] > 0, roi0
        assert roi0.loc[cons, "n_items"] == 24

"""Human reading data: the built-in SAP effects, the SAP effect/trial loaders, and Natural Stories."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import NATURAL_STORIES, SAP_DIR
from mechinterp.compare.humans import (
    CITATION,
    human_subset,
    load_natural_stories,
    load_sap_effects,
    load_sap_trials,
    noise_ceiling,
    published_effects,
    read_effect_table,
    trial_effects,
)
from mechinterp.errors import ConfigError


def test_builtin_published_effects():
    h = published_effects()
    assert len(h) == 9 and set(h["construction"]) == {"MV/RR", "NP/S", "NP/Z"} and set(h["roi"]) == {0, 1, 2}
    row = h[(h["construction"] == "MV/RR") & (h["roi"] == 1)].iloc[0]
    assert row["effect"] == pytest.approx(202.05, abs=0.01)
    assert row["ci_low"] < row["effect"] < row["ci_high"]
    assert (h["ci_low"] < h["effect"]).all() and (h["effect"] < h["ci_high"]).all()
    gpt2 = published_effects(source="gpt2")
    assert gpt2["effect"].between(0, 10).all() and gpt2["ci_low"].isna().all()
    assert len(published_effects(subset=None, source=None)) == 7 * 3 * 4
    assert "Huang" in CITATION and "Journal of Memory and Language" in CITATION
    with pytest.raises(ConfigError, match="no subset"):
        published_effects("Garden")


def test_human_subset_is_named_by_the_suite_and_checked():
    from mechinterp.stimuli import load_suite

    assert human_subset(load_suite("sap:ClassicGP")) == "ClassicGP" == human_subset(load_suite("mvrr"))
    with pytest.raises(ConfigError, match=r"subset RelativeClause\) have no effects for its constructions \['NP/Z'\]"):
        human_subset(load_suite("npz"), "RelativeClause")


def test_builtin_matches_upstream_table():
    up = pd.read_csv(SAP_DIR / "effects" / "summary_by_construction_ms.csv")
    h = published_effects(subset=None)
    merged = h.merge(up, left_on=["subset", "coef", "roi"], right_on=["subset", "coef", "ROI"])
    assert len(merged) == len(up)
    assert (merged["effect"] - merged["human_empirical"]).abs().max() < 1e-3
    assert (merged["ci_high"] - merged["human_upper95"]).abs().max() < 1e-3
    # the construction-level posterior table says the same
    bc = load_sap_effects(SAP_DIR, "ClassicGP", level="construction")
    m2 = bc.merge(published_effects(), on=["construction", "roi"])
    assert (m2["effect_x"] - m2["effect_y"]).abs().max() < 1e-3


def test_by_item_effects_and_noise_ceiling():
    items = load_sap_effects(SAP_DIR)
    assert len(items) == 216 and items["item"].between(1, 24).all()
    assert set(items["construction"]) == {"MV/RR", "NP/S", "NP/Z"} and (items["source"] == "human").all()
    assert items.groupby(["construction", "roi"]).size().eq(24).all()
    gpt2 = load_sap_effects(SAP_DIR, level="item", source="gpt2")
    assert gpt2["effect"].abs().max() < 50
    logrt = load_sap_effects(SAP_DIR, level="item", measure="logrt")
    assert (logrt["measure"] == "logrt").all() and len(logrt) == 216
    unamb = read_effect_table(SAP_DIR / "effects" / "spr" / "ClassicGP" / "by_item_unamb.csv")
    assert set(unamb["construction"]) == {"MV/RR", "NP/S", "NP/Z"} and unamb["effect"].gt(200).all()
    ceil = noise_ceiling(SAP_DIR)
    builtin = noise_ceiling()
    pd.testing.assert_frame_equal(ceil.reset_index(drop=True), builtin.reset_index(drop=True), atol=1e-4, check_dtype=False)
    npz1 = builtin[(builtin["construction"] == "NP/Z") & (builtin["roi"] == 1)]["split_half_r"].iloc[0]
    assert npz1 == pytest.approx(0.8166, abs=1e-4)
    with pytest.raises(ConfigError, match="no subset"):
        load_sap_effects(SAP_DIR, "Nonexistent")
    with pytest.raises(ConfigError, match="unknown SAP source"):
        load_sap_effects(SAP_DIR, source="bert")
    with pytest.raises(ConfigError, match="not a SAP Benchmark directory"):
        load_sap_effects(SAP_DIR / "stimuli")


def test_effect_table_errors(tmp_path):
    bad = tmp_path / "by_item.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="not a SAP effect table"):
        read_effect_table(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        read_effect_table(tmp_path / "missing.csv")


def test_trials_loader_and_empirical_effects():
    t = load_sap_trials(SAP_DIR)
    assert {"participant", "construction", "item", "roi", "rt", "ambiguous"} <= set(t.columns)
    assert set(t["construction"]) == {"NP/Z", "Agr"} and set(t["roi"]) == {0, 1, 2}
    assert t["participant"].nunique() == 2000
    eff = trial_effects(t[t["construction"] == "NP/Z"], n_boot=200)
    roi1 = eff[eff["roi"] == 1].iloc[0]
    assert 60 < roi1["effect_ms"] < 250 and roi1["ci_low"] < roi1["effect_ms"] < roi1["ci_high"]
    assert eff["effect_ms"].gt(0).all()


def test_trials_errors(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("participant,Type,item\n1,NPZ,1\n")
    with pytest.raises(ConfigError, match="missing columns"):
        load_sap_trials(p)


def test_natural_stories():
    ns = load_natural_stories(NATURAL_STORIES)
    assert len(ns.words) == 10256 and ns.stories == list(range(1, 11))
    first = ns.story_words(1)
    assert first["word"].iloc[:3].tolist() == ["If", "you", "were"]
    assert first["zone"].is_monotonic_increasing and ns.words["rt_mean"].between(200, 1500).all()
    sub = ns.subset([2, 3], words_per_story=10)
    assert len(sub.words) == 20 and sub.stories == [2, 3]
    with pytest.raises(ConfigError, match="no stories"):
        ns.subset([11])
    with pytest.raises(ConfigError, match="not a Natural Stories directory"):
        load_natural_stories(SAP_DIR)

"""Human reading data: the built-in SAP effects, the SAP effect/trial loaders, and Natural Stories."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import NATURAL_STORIES, SAP_DIR
from mechinterp.compare.humans import (
    CITATION,
    SAP_CONTRASTS,
    construction_of_coef,
    human_subset,
    load_natural_stories,
    load_sap_effects,
    load_sap_trials,
    noise_ceiling,
    published_effects,
    read_effect_table,
    sap_contrast_suite,
    trial_effects,
)
from mechinterp.errors import ConfigError, SuiteError
from mechinterp.stimuli import load_suite


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


@pytest.mark.parametrize("subset", ["ClassicGP", "RelativeClause", "AttachmentAmbiguity", "Agreement"])
def test_every_sap_subset_maps_its_item_file_to_its_effect_rows(subset):
    """On the shipped files: every construction and condition of the item file is named by SAP_CONTRASTS, every
    contrast's coefficient has published and by-item effects, and every item has its by-item effects (ROI 0-2)."""
    raw = load_suite(f"sap:{subset}")
    contrasts = [c for c in SAP_CONTRASTS if c.subset == subset]
    assert set(raw.constructions) == {c.construction for c in contrasts}
    conditions = {x.name for it in raw.items for x in it.conditions}
    if subset != "ClassicGP":  # the long layout: every condition takes part in a contrast
        assert conditions == {n for c in contrasts for n in (c.harder, c.baseline)}
    suite = sap_contrast_suite(raw)
    assert human_subset(suite) == subset
    assert set(suite.constructions) == {construction_of_coef(c.coef) for c in contrasts}
    assert set(suite.constructions) == set(published_effects(subset)["construction"])
    per_item = load_sap_effects(None, subset, "item")
    assert set(per_item["coef"]) == {c.coef for c in contrasts}
    have = {(c, int(i), int(r)) for c, i, r in zip(per_item["construction"], per_item["item"], per_item["roi"])}
    keys = {(it.construction, it.number) for it in suite.items}
    assert len(keys) == len(raw.items) * len(contrasts) // len({c.construction for c in contrasts})
    assert all((c, n, r) in have for c, n in keys for r in (0, 1, 2))
    assert {(c, i) for c, i, _ in have} == keys  # and no effect row without an item
    for it in suite.items:
        amb, unamb = suite.pair(it)
        assert amb.region_words(2) and unamb.region_words(2)  # ROI 0 is the critical word in both versions
        c = next(c for c in contrasts if construction_of_coef(c.coef) == it.construction)
        orig = next(x for x in raw.items if (x.number, x.construction) == (it.number, c.construction))
        assert (amb.text, unamb.text) == (orig.condition(c.harder).text, orig.condition(c.baseline).text)
    if subset == "ClassicGP":
        assert suite is raw


def test_agreement_contrast_is_the_trials_ambiguous_minus_unambiguous():
    """The evidence SAP_CONTRASTS cites for Agr: in the trial-level file every UNAGREE sentence is AMBIG=Amb and
    every AGREE sentence Unamb, and the trials' Amb - Unamb effect has the published sign at every ROI."""
    trials = load_sap_trials(SAP_DIR)
    agr = trials[trials["construction"] == "Agr"][["item", "ambiguous", "sentence"]].drop_duplicates()
    items = load_suite("sap:Agreement")
    c = next(c for c in SAP_CONTRASTS if c.coef == "Agr")
    text = {(it.number, x.name): x.text for it in items.items for x in it.conditions}
    for _, r in agr.iterrows():
        want = c.harder if r["ambiguous"] else c.baseline
        assert " ".join(str(r["sentence"]).split()) == " ".join(text[(int(r["item"]), want)].replace("\\'", "'").split())
    eff = trial_effects(trials[trials["construction"] == "Agr"], n_boot=10)
    pub = published_effects("Agreement").set_index("roi")["effect"]
    assert all((row["effect_ms"] > 0) == (pub[row["roi"]] > 0) for _, row in eff.iterrows() if row["roi"] in pub)


def test_sap_contrast_suite_refuses_an_item_without_its_conditions():
    raw = load_suite("sap:RelativeClause")
    it = raw.items[0]
    broken = raw.model_copy(update={"items": (it.model_copy(update={"conditions": it.conditions[:1]}),)})
    with pytest.raises(SuiteError, match="RC_Obj and RC_Subj"):
        sap_contrast_suite(broken)
    assert sap_contrast_suite(load_suite("npz")) == load_suite("npz")  # already paired: unchanged

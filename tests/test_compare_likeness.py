"""The human-likeness test, its report, and the collapse / compare commands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import NATURAL_STORIES, SAP_DIR
from mechinterp.compare.humans import load_sap_effects, noise_ceiling, published_effects
from mechinterp.compare.likeness import compare, item_design
from mechinterp.compare.linking import FEATURE_SETS, LinkingFit
from mechinterp.effects import garden_path_effects
from mechinterp.surprisal import suite_surprisal


def toy_link(ms_per_bit=10.0, lag1=0.0, cov_scale=0.0, other=(2.0, 1.0, 0.5)) -> LinkingFit:
    feats = FEATURE_SETS["length_position"]
    coef = [300.0, ms_per_bit, lag1, 0.0, *other]
    p = len(coef)
    return LinkingFit(feature_set="length_position", features=feats, coef=tuple(coef),
                      cov=tuple(tuple(cov_scale if i == j else 0.0 for j in range(p)) for i in range(p)),
                      df_resid=1000, r2=0.2, r2_adj=0.2, r2_without_surprisal=0.1, n=1007, rmse=30.0)


@pytest.fixture(scope="module")
def sap4(sap_classic):
    return sap_classic.model_copy(update={"items": tuple(it for it in sap_classic.items if it.number <= 4)})


@pytest.fixture(scope="module")
def words(tiny_model, sap4):
    w = suite_surprisal(tiny_model, sap4, show_progress=False)
    louder = w.copy()
    louder.loc[louder["condition"] == "ambiguous", "surprisal_bits"] *= 3.0
    return pd.concat([w.assign(intervention="original"), louder.assign(intervention="louder")], ignore_index=True)


def test_predicted_ms_is_the_link_applied_to_both_versions(words, sap4):
    fit = toy_link(10.0, lag1=4.0)
    w = words[words["intervention"] == "original"].drop(columns="intervention")
    d = item_design(w, sap4, fit)
    bits = garden_path_effects(w, sap4)
    m = d.merge(bits, on=["construction", "item", "roi"], suffixes=("", "_e"))
    np.testing.assert_allclose(m["effect_bits"], m["effect_bits_e"])
    np.testing.assert_allclose(m["d_surprisal"], m["effect_bits"])
    # ROI 1's lag-1 predictor is ROI 0's surprisal difference
    r0 = m[m["roi"] == 0].set_index(["construction", "item"])["d_surprisal"]
    r1 = m[m["roi"] == 1].set_index(["construction", "item"])["d_surprisal_prev1"]
    np.testing.assert_allclose(r1.loc[r0.index], r0)
    expected = 10.0 * m["d_surprisal"] + 4.0 * m["d_surprisal_prev1"] + 2.0 * m["d_length"] + m["d_length_prev1"] + 0.5 * m["d_position"]
    np.testing.assert_allclose(m["effect_ms"], expected, atol=1e-9)


def test_compare_tables(words, sap4):
    fit = toy_link(10.0)
    human = published_effects()
    items = load_sap_effects(SAP_DIR)
    side = pd.DataFrame({"intervention": ["original", "louder"], "ns_perplexity_ratio": [1.0, 1.2],
                         "flag_perplexity": [False, True], "unamb_roi_delta_bits": [0.0, 0.0]})
    cmp = compare(words, sap4, fit, human, items, noise_ceiling(), side, n_boot=300)
    c = cmp.constructions
    assert len(c) == 2 * 3 * 3 and set(c["intervention"]) == {"original", "louder"}
    # no coefficient uncertainty: the interval is the item bootstrap of the point prediction
    for _, r in c.iterrows():
        assert r["predicted_low"] <= r["predicted_ms"] + 1e-9 <= r["predicted_high"] + 2e-9
        assert r["ratio"] == pytest.approx(r["predicted_ms"] / r["human_ms"])
        assert r["inside_human_interval"] == (r["human_low"] <= r["predicted_ms"] <= r["human_high"])
    assert c.loc[c["intervention"] == "louder", "flag_perplexity"].all()
    t = cmp.table()
    assert "ns_perplexity_ratio" in t and t["flag_perplexity"].notna().all()
    o = cmp.order
    assert set(o["human_order"][o["roi"] == 1]) == {"MV/RR > NP/Z > NP/S"}
    assert o["bootstrap_share_matching"].between(0, 1).all() and o["primary"].sum() == 2
    if items is not None:
        cor = cmp.correlations
        r = cor[(cor["intervention"] == "original") & (cor["construction"] == "NP/Z") & (cor["roi"] == 0)].iloc[0]
        it = cmp.items
        g = it[(it["intervention"] == "original") & (it["construction"] == "NP/Z") & (it["roi"] == 0)]
        assert r["r"] == pytest.approx(np.corrcoef(g["effect_ms"], g["human_ms"])[0, 1])
        assert r["noise_ceiling"] == pytest.approx(0.7179, abs=1e-4)
        assert r["n_items"] == 4


def test_order_detects_a_planted_ranking(sap4, words):
    """Planted effects in the human order give a match with bootstrap share near 1."""
    w = words[words["intervention"] == "original"].copy()
    plant = {"MV/RR": 9.0, "NP/Z": 5.0, "NP/S": 1.0}
    amb = w["condition"] == "ambiguous"
    for cons, bump in plant.items():
        w.loc[(w["construction"] == cons) & amb, "surprisal_bits"] = bump
        w.loc[(w["construction"] == cons) & ~amb, "surprisal_bits"] = 0.0
    cmp = compare(w, sap4, toy_link(10.0, other=(0.0, 0.0, 0.0)), published_effects(), n_boot=200)
    row = cmp.order[cmp.order["roi"] == 1].iloc[0]
    assert row["matches"] and row["bootstrap_share_matching"] > 0.95
    c = cmp.constructions.set_index(["construction", "roi"])
    assert c.loc[("MV/RR", 0), "predicted_ms"] == pytest.approx(90.0)
    assert not c.loc[("MV/RR", 0), "inside_human_interval"]  # 90 ms > the human 39.6-78.3
    assert c.loc[("NP/Z", 2), "inside_human_interval"]  # 50 ms inside the human 39.5-89.9
    assert c.loc[("NP/Z", 2), "ratio"] == pytest.approx(50.0 / 65.0269, rel=1e-4)


def test_coefficient_uncertainty_widens_intervals(words, sap4):
    w = words[words["intervention"] == "original"]
    a = compare(w, sap4, toy_link(10.0, cov_scale=0.0), published_effects(), n_boot=400).constructions
    b = compare(w, sap4, toy_link(10.0, cov_scale=25.0), published_effects(), n_boot=400).constructions
    assert ((b["predicted_high"] - b["predicted_low"]) >= (a["predicted_high"] - a["predicted_low"]) - 1e-9).mean() > 0.7


def test_report(words, sap4, tmp_path):
    from mechinterp.compare.figures import headline_table, write_compare_report

    side = pd.DataFrame({"intervention": ["original", "louder"], "ns_perplexity_ratio": [1.0, 1.2],
                         "flag_perplexity": [False, True], "unamb_roi_delta_bits": [0.0, 0.1]})
    cmp = compare(words, sap4, toy_link(), published_effects(), None, None, side, n_boot=100)
    t = headline_table(cmp)
    assert (t["row"] == "human (SAP)").sum() == 9
    assert t["row"].str.contains("louder ⚠").sum() == 9  # flagged in every row that shows it
    path = write_compare_report(cmp, tmp_path / "r.html", provenance={"x": 1})
    text = path.read_text()
    assert "plotly" in text and "Raises Natural Stories perplexity by more than 5%" in text and "louder" in text


def _small_sap_csv(tmp_path):
    df = pd.read_csv(SAP_DIR / "stimuli" / "items_ClassicGP.csv")
    path = tmp_path / "items_small.csv"
    df[df["item"] <= 3].to_csv(path, index=False)
    return path


def test_collapse_and_compare_cli(tiny_dirs, tmp_path):
    from mechinterp.cli import main
    from mechinterp.provenance import read_provenance
    from mechinterp.tables import read_table

    suite = _small_sap_csv(tmp_path)
    model = str(tiny_dirs["llama"])
    out = tmp_path / "words.parquet"
    rc = main(["collapse", "--model", model, "--suite", str(suite), "--out", str(out),
               "--intervention", "leace:layers=1", "--intervention", "k3=truncate:k=3",
               "--naturalstories", str(NATURAL_STORIES), "--ns-words", "20"])
    assert rc == 0
    words = read_table(out)
    assert set(words["intervention"]) == {"original", "leace@1", "k3"}
    side = read_table(tmp_path / "words.side_effects.parquet")
    assert side["ns_perplexity_ratio"].notna().all() and side.loc[side["intervention"] == "original", "ns_perplexity_ratio"].iloc[0] == 1.0
    eff = read_table(tmp_path / "words.effects.parquet")
    assert set(eff["roi"]) == {0, 1, 2}
    prov = read_provenance(out)
    assert prov["extra"]["interventions"]["leace@1"]["parts"][0]["kind"] == "leace"
    table = tmp_path / "cmp.csv"
    report = tmp_path / "cmp.html"
    rc = main(["compare", "--model", model, "--suite", str(suite), "--out", str(table), "--collapsed", str(out),
               "--human", str(SAP_DIR), "--naturalstories", str(NATURAL_STORIES), "--report", str(report),
               "--n-boot", "100", "--save-linking", str(tmp_path / "link.json"), "--link-stories", "1"])
    assert rc == 0
    t = read_table(table)
    assert set(t["intervention"]) == {"original", "leace@1", "k3"} and len(t) == 27
    assert report.exists() and (tmp_path / "cmp.correlations.csv").exists()
    fit = LinkingFit.load(tmp_path / "link.json")
    assert 900 < fit.n < 1100 and fit.data["stories"] == [1]
    # reuse the link; bad arguments are reported as errors
    rc = main(["compare", "--model", model, "--suite", str(suite), "--out", str(table), "--collapsed", str(out),
               "--linking", str(tmp_path / "link.json"), "--n-boot", "50"])
    assert rc == 0
    assert main(["compare", "--model", model, "--suite", str(suite), "--out", str(table),
                 "--naturalstories", "none"]) == 2  # neither a corpus to fit the link on nor a saved link
    assert main(["collapse", "--model", model, "--suite", str(suite), "--out", str(out),
                 "--intervention", "erase:layers=1"]) == 2


@pytest.mark.slow
def test_compare_smollm2_end_to_end(smollm2, sap_classic, tmp_path):
    """Real model, bounded: 2 items per construction, one erasure, link fitted on two stories."""
    from mechinterp.compare.humans import load_natural_stories
    from mechinterp.compare.linking import fit_natural_stories
    from mechinterp.interventions.collapse import run_collapse
    from mechinterp.interventions.spec import build

    sub = sap_classic.model_copy(update={"items": tuple(it for it in sap_classic.items if it.number <= 2)})
    ns = load_natural_stories(NATURAL_STORIES)
    iv = build(smollm2, "leace:layers=10+15", sub)
    res = run_collapse(smollm2, sub, {"leace": iv}, corpus=ns.subset([1, 2, 3]), ns_words_per_story=30)
    fit, _ = fit_natural_stories(smollm2, ns.subset([1]))
    cmp = compare(res.words, sub, fit, published_effects(), load_sap_effects(SAP_DIR), noise_ceiling(),
                  res.side_effects, n_boot=200)
    orig = cmp.constructions[cmp.constructions["intervention"] == "original"]
    assert (orig[orig["roi"] == 0]["effect_bits"] > 1.0).all()  # garden-path effects at the disambiguating word
    assert orig["predicted_ms"].max() < orig["human_ms"].max()  # and far smaller than people's (SAP's finding)
    se = res.side_effects.set_index("intervention")
    assert se.loc["original", "ns_perplexity_ratio"] == 1.0 and np.isfinite(se.loc["leace", "ns_perplexity"])

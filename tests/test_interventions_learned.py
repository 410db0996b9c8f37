"""The learned intervention (mechinterp/interventions/learned.py) and its dose-response (dose.py): it lowers
P(dispreferred) on held-out items, respects its KL budget on held-out text (measured here independently), is
seeded, saves and loads, leaves no hook behind, and works as a spec kind and through `mechinterp dose`."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import NATURAL_STORIES, SAP_DIR, assert_no_hooks
from mechinterp.compare.humans import load_natural_stories
from mechinterp.errors import ConfigError
from mechinterp.interventions.learned import (
    LearnedIntervention,
    LearnedTraining,
    ReadingPrompts,
    fit_learned,
    reading_logits,
    reading_prompts,
)
from mechinterp.interventions.spec import build, parse_spec
from mechinterp.locate.sites import Site
from mechinterp.readings.continuations import load_continuations, token_sets
from mechinterp.readings.exact import exact_readings
from mechinterp.readings.targets import reading_targets
from mechinterp.stimuli import load_suite

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = LearnedTraining(steps=20, lr=0.5, prefixes=8, windows=1, window=16, n_fit=16, train_stories=(1,),
                        heldout_stories=(10,), train_words=40, heldout_words=30, bisect=3, max_scale=2.0)
BUDGET = 0.3


@pytest.fixture(scope="module")
def suite():
    return load_suite("npz").head(6)


@pytest.fixture(scope="module")
def corpus():
    return load_natural_stories(NATURAL_STORIES)


@pytest.fixture(scope="module")
def fits(tiny_model, suite, corpus):
    sites = [Site(0, "resid_post"), Site(1, "resid_post")]
    return {m: fit_learned(tiny_model, suite, m, sites, BUDGET, rank=2, training=SMALL, corpus=corpus)
            for m in ("steer", "subspace")}


def p_dispreferred(model, suite, iv=None) -> float:
    r = exact_readings(model, suite, iv)
    return float(r[~r["preferred"] & r["ambiguous"]]["probability"].mean())


def independent_kl(model, iv, text: str) -> float:
    """Mean KL(original || edited) over every position but BOS, computed here from plain HF logits."""
    ids = torch.tensor([[model.bos_token_id, *model.tokenizer(text, add_special_tokens=False)["input_ids"]]])
    with torch.no_grad():
        p = torch.log_softmax(model.hf(input_ids=ids).logits.float(), -1)[0, 1:]
        with iv.apply(model):
            q = torch.log_softmax(model.hf(input_ids=ids).logits.float(), -1)[0, 1:]
    return float((p.exp() * (p - q)).sum(-1).mean())


@pytest.mark.parametrize("method", ["steer", "subspace"])
def test_learned_lowers_p_dispreferred_on_heldout_items(tiny_model, suite, fits, method):
    iv = fits[method]
    before, after = p_dispreferred(tiny_model, suite), p_dispreferred(tiny_model, suite, iv)
    assert after < before - 0.02, (before, after)
    # the items it is evaluated on were never trained on: no training sentence is a suite sentence
    prompts = reading_prompts(tiny_model, suite, SMALL.n_fit, SMALL.seed)
    assert not set(prompts.texts) & {c.text for it in suite.items for c in it.conditions}
    assert iv.info["training_sha256"] == prompts.info["training_sha256"]
    assert_no_hooks(tiny_model)


@pytest.mark.parametrize("method", ["steer", "subspace"])
def test_learned_respects_the_budget_on_heldout_text(tiny_model, corpus, fits, method):
    iv = fits[method]
    text = " ".join(corpus.story_words(10)["word"].head(SMALL.heldout_words))
    kl = independent_kl(tiny_model, iv, text)
    assert 0 < kl <= BUDGET
    assert kl == pytest.approx(iv.info["heldout_kl"], rel=1e-3, abs=1e-6)
    assert iv.info["heldout"]["stories"] == [10] and 10 not in iv.info["train_windows"]["stories"]


def test_the_subspace_map_starts_as_no_edit_and_reads_old_fits_as_interchange(tiny_model, suite, corpus):
    # no optimisation step: W = I and t = 0 leave the model exactly as it was
    tr = SMALL.model_copy(update={"steps": 0, "bisect": 0})
    iv = fit_learned(tiny_model, suite, "subspace", [Site(1, "resid_post")], BUDGET, rank=2, training=tr, corpus=corpus)
    assert torch.equal(iv.tensors[0]["map"], torch.eye(2)) and not iv.tensors[0]["target"].any()
    assert iv.info["heldout_kl"] < 1e-9
    assert p_dispreferred(tiny_model, suite, iv) == pytest.approx(p_dispreferred(tiny_model, suite), abs=1e-7)
    # the coordinates z = R h become W z + t; the rest of h is kept
    g = torch.Generator().manual_seed(0)
    R = torch.linalg.qr(torch.randn(16, 2, generator=g))[0].T
    W, t, x = torch.randn(2, 2, generator=g), torch.randn(2, generator=g), torch.randn(5, 16, generator=g)
    mapped = dataclasses.replace(iv, tensors=({"basis": R, "map": W, "target": t},), scale=1.0).edit_fn(0)(x)
    torch.testing.assert_close(mapped @ R.T, x @ R.T @ W.T + t)
    torch.testing.assert_close(mapped - mapped @ R.T @ R, x - x @ R.T @ R)
    # a fit saved before the map existed (basis and target only) sets the subspace to its target
    old = dataclasses.replace(iv, tensors=({"basis": R, "target": t},), scale=1.0).edit_fn(0)(x)
    torch.testing.assert_close(old @ R.T, t.expand(5, 2))


def test_a_tight_budget_is_met_by_rescaling(tiny_model, suite, corpus):
    budget = 1e-4
    tr = SMALL.model_copy(update={"steps": 3, "bisect": 6})
    iv = fit_learned(tiny_model, suite, "steer", [Site(1, "resid_post")], budget, training=tr, corpus=corpus)
    tried = iv.info["rescale_tried"]
    assert any(k > budget for _, k in tried), "the trained edit should overshoot this budget before rescaling"
    assert iv.scale < 1.0 and iv.info["heldout_kl"] <= budget
    text = " ".join(corpus.story_words(10)["word"].head(SMALL.heldout_words))
    assert independent_kl(tiny_model, iv, text) <= budget


def test_fitting_is_seeded_and_reproducible(tiny_model, suite, corpus):
    tr = SMALL.model_copy(update={"steps": 3, "bisect": 1})
    sites = [Site(1, "resid_post")]
    a, b = (fit_learned(tiny_model, suite, "subspace", sites, BUDGET, rank=2, training=tr, corpus=corpus)
            for _ in range(2))
    c = fit_learned(tiny_model, suite, "subspace", sites, BUDGET, rank=2, corpus=corpus,
                    training=tr.model_copy(update={"seed": 1}))
    for k in ("basis", "target"):
        assert torch.allclose(a.tensors[0][k], b.tensors[0][k], atol=1e-6)
    assert a.scale == b.scale and a.info["heldout_kl"] == pytest.approx(b.info["heldout_kl"], rel=1e-6)
    assert not torch.allclose(a.tensors[0]["basis"], c.tensors[0]["basis"], atol=1e-3)
    assert a.info["training_sha256"] != c.info["training_sha256"]  # another seed, other generated sentences


def test_save_load_round_trip(tiny_model, tiny_gpt2, suite, fits, tmp_path):
    iv = fits["subspace"]
    d = iv.save(tmp_path / "fit")
    meta = json.loads((d / "learned.json").read_text())
    assert meta["info"]["budget"] == BUDGET and meta["info"]["model"]["weights_sha256"] == tiny_model.weights_sha256
    assert {"seed", "training_sha256", "heldout_kl"} <= set(meta["info"])
    back = LearnedIntervention.load(d, tiny_model).placed(iv.scope)
    assert back.method == iv.method and back.scale == iv.scale and back.sites == iv.sites
    for t, u in zip(iv.tensors, back.tensors):
        assert all(torch.equal(t[k].float(), u[k]) for k in t)
    assert p_dispreferred(tiny_model, suite, back) == pytest.approx(p_dispreferred(tiny_model, suite, iv), abs=1e-6)
    spec = f"learned:method=subspace,layers=0+1,rank=2,load={d}"
    via_spec = build(tiny_model, spec, suite)
    assert p_dispreferred(tiny_model, suite, via_spec) == pytest.approx(p_dispreferred(tiny_model, suite, iv), abs=1e-6)
    with pytest.raises(ConfigError, match="not the spec's steer"):
        build(tiny_model, f"learned:method=steer,layers=0+1,load={d}", suite)
    with pytest.raises(ConfigError, match="was fit on"):
        LearnedIntervention.load(d, tiny_gpt2)
    assert_no_hooks(tiny_model)


def test_hooks_removed_and_weights_left_alone(tiny_model, suite, fits):
    before = [p.requires_grad for p in tiny_model.hf.parameters()]
    iv = fits["steer"]
    with pytest.raises(RuntimeError, match="boom"):
        with iv.apply(tiny_model):
            tiny_model.hf(input_ids=torch.tensor([[tiny_model.bos_token_id, 100, 200]]))
            raise RuntimeError("boom")
    assert_no_hooks(tiny_model)
    assert [p.requires_grad for p in tiny_model.hf.parameters()] == before
    assert all(p.grad is None for p in tiny_model.hf.parameters())


def test_objective_is_the_exact_estimators_quantity(tiny_model, suite):
    """The training objective's masses, computed left-padded in one batch, equal the exact estimator's."""
    targets = list(reading_targets(tiny_model, suite))
    sets_all = load_continuations()
    pref, disp = [], []
    for t in targets:
        s = token_sets(tiny_model.tokenizer, sets_all[t.construction], exclude=t.disambiguator)
        pref.append(tuple(ids for _, ids in s[t.preferred]))
        disp.append(tuple(ids for _, ids in s[t.dispreferred]))
    two = ((5, 9),)  # a two-token continuation, scored by the chain rule
    prompts = ReadingPrompts(tuple(t.prefix_ids for t in targets), tuple(frozenset() for _ in targets),
                             tuple(p + two for p in pref), tuple(disp), tuple(t.construction for t in targets),
                             tuple(t.prefix for t in targets), tuple("?" for _ in targets))
    with torch.no_grad():
        m_p, m_d = reading_logits(tiny_model, prompts, range(len(targets)))
    r = exact_readings(tiny_model, suite)
    want = r[~r["preferred"]]["log2_mass"].to_numpy() * math.log(2)
    assert np.allclose(m_d.numpy(), want, atol=1e-4)
    # the preferred mass includes the extra continuation: log P(5) + log P(9 | 5), checked directly
    t = targets[0]
    with torch.no_grad():
        lp = torch.log_softmax(tiny_model.hf(input_ids=torch.tensor([[*t.prefix_ids, 5]])).logits[0].float(), -1)
    base = r[r["preferred"]]["log2_mass"].to_numpy()[0] * math.log(2)
    assert float(m_p[0]) == pytest.approx(float(np.logaddexp(base, float(lp[-2, 5] + lp[-1, 9]))), abs=1e-4)


def test_learned_specs_parse_and_refuse(tiny_model):
    spec = parse_spec("learned:method=subspace,layers=0+1,rank=2,budget=0.1,steps=3,heldout_stories=9/10")
    part = spec.parts[0]
    assert spec.name == "learned-subspace-r2@0+1-kl0.1" and part.training().heldout_stories == (9, 10)
    assert part.training(steps=7, lr=0.2).steps == 3 and part.training(lr=0.2).lr == 0.2  # the spec's own keys win
    for bad, message in [("learned:kind=steer,layers=1", "method=steer"), ("learned:layers=1,budget=0", "budget"),
                         ("learned:layers=1,method=rotate", "method"), ("learned:layers=0/1", "not ',' or '/'"),
                         ("learned:layers=1,rank=0", "rank"), ("learned:layers=1,rank=2", "method=subspace")]:
        with pytest.raises(ConfigError, match=message):
            parse_spec(bad)
    with pytest.raises(ConfigError, match="MV/RR"):
        build(tiny_model, "learned:layers=1,steps=1", load_suite("mvrr").head(2))
    with pytest.raises(ConfigError, match="held-out"):
        build(tiny_model, "learned:layers=1,steps=1,train_stories=1/2,heldout_stories=2/3", load_suite("npz").head(2))
    with pytest.raises(ConfigError, match="out of range"):
        build(tiny_model, "learned:layers=5,steps=1", load_suite("npz").head(2))


def test_learned_through_collapse_cli(tiny_dirs, tmp_path):
    """A learned spec runs through `mechinterp collapse` unchanged, with its efficacy table."""
    from mechinterp.cli import main
    from mechinterp.tables import read_table

    out = tmp_path / "c.csv"
    spec = ("learned:method=steer,layers=1,budget=0.3,steps=3,lr=0.5,prefixes=4,windows=1,window=12,n_fit=12,"
            "train_stories=1,heldout_stories=10,train_words=20,heldout_words=20,bisect=1,max_scale=1")
    assert main(["collapse", "--model", str(tiny_dirs["llama"]), "--suite", "npz", "--out", str(out),
                 "--intervention", spec, "--naturalstories", str(NATURAL_STORIES), "--ns-words", "15"]) == 0
    eff = read_table(tmp_path / "c.efficacy.csv")
    assert "learned-steer@1-kl0.3" in set(eff["intervention"])


def test_dose_cli(tiny_dirs, tiny_model, tmp_path):
    """`mechinterp dose`: a fit per form and budget, the dose table per construction with human comparisons, the
    figure, saved fits, provenance; then again with a saved linking fit."""
    from mechinterp.cli import main
    from mechinterp.compare.linking import fit_natural_stories
    from mechinterp.provenance import read_provenance
    from mechinterp.tables import read_table

    items = pd.read_csv(SAP_DIR / "stimuli" / "items_ClassicGP.csv")
    sap = tmp_path / "items_ClassicGP.csv"  # the SAP items' file name: by-item human effects apply
    items[items["item"].isin([1, 2, 3, 25, 26, 27])].to_csv(sap, index=False)
    model = str(tiny_dirs["llama"])
    out = tmp_path / "dose.csv"
    train = ["--steps", "3", "--lr", "0.5", "--prefixes", "4", "--windows", "1", "--window", "12", "--n-fit", "20",
             "--train-words", "20", "--heldout-words", "20", "--bisect", "1", "--max-scale", "2"]
    rc = main(["dose", "--model", model, "--suite", str(sap), "--out", str(out), "--out-dir", str(tmp_path / "fits"),
               "--intervention", "learned:method=steer,layers=1,heldout_stories=10,train_stories=1",
               "--intervention", "learned:method=subspace,layers=1,rank=2,heldout_stories=10,train_stories=1",
               "--budgets", "0.3,0.05", "--naturalstories", str(NATURAL_STORIES), "--ns-words", "15",
               "--batch-size", "8", "--link-stories", "1", "--n-boot", "50", "--seed", "1", *train])
    assert rc == 0
    t = read_table(out)
    assert set(t["form"]) == {"original", "steer@1", "subspace-r2@1"}
    assert set(t["budget"]) == {0.0, 0.05, 0.3} and set(t["roi"]) == {0, 1, 2}
    assert set(t["construction"]) >= {"NP/Z", "MV/RR"}
    learned = t[t["form"] != "original"]
    assert bool((learned["heldout_kl"] <= learned["budget"] + 1e-12).all())
    assert bool(learned[["p_dispreferred", "p_dispreferred_low", "p_dispreferred_high", "effect_bits", "predicted_ms",
                         "ns_perplexity", "item_r"]].notna().all().all())
    assert bool(t["order_matches"].notna().all())
    fits = read_table(tmp_path / "dose.fits.csv")
    assert len(fits) == 4 and bool((fits["seed"] == 1).all()) and fits["warm_start"].fillna(0).tolist() == [0, 0.05, 0, 0.05]
    assert (tmp_path / "dose.html").exists() and "plotly" in (tmp_path / "dose.html").read_text()[:5000]
    assert read_provenance(tmp_path / "dose.html")["command"] == "dose"
    assert read_provenance(out)["extra"]["fits"]["steer@1 kl<=0.05"]["fit"]["budget"] == 0.05
    saved = sorted(p.name for p in (tmp_path / "fits").iterdir())
    assert saved == ["steer-L1-kl0.05", "steer-L1-kl0.3", "subspace-r2-L1-kl0.05", "subspace-r2-L1-kl0.3"]
    LearnedIntervention.load(tmp_path / "fits" / saved[0], tiny_model)
    # a saved link; a bad budget list and a missing corpus are refused before any work
    ns = load_natural_stories(NATURAL_STORIES)
    fit_natural_stories(tiny_model, ns.subset([1]))[0].save(tmp_path / "link.json")
    rc = main(["dose", "--model", model, "--suite", "npz", "--out", str(tmp_path / "d2.csv"), "--budgets", "0.2",
               "--intervention", "learned:method=steer,layers=0,heldout_stories=10,train_stories=1",
               "--linking", str(tmp_path / "link.json"), "--ns-words", "10", "--n-boot", "20", *train])
    assert rc == 0 and set(read_table(tmp_path / "d2.csv")["construction"]) == {"NP/Z"}
    with pytest.raises(SystemExit):
        main(["dose", "--model", model, "--suite", "npz", "--out", str(out), "--budgets", "0.1,-1"])
    assert main(["dose", "--model", model, "--suite", "npz", "--out", str(out), "--naturalstories", "none"]) == 2
    assert main(["dose", "--model", model, "--suite", "npz", "--out", str(out),
                 "--intervention", "leace:layers=1"]) == 2


@pytest.mark.slow
def test_learned_on_gemma_lowers_p_dispreferred_within_budget(gemma, sap_classic, tmp_path):
    """Real model, few steps: a steering vector fit on generated sentences lowers P(dispreferred) on held-out SAP
    ClassicGP NP/Z items and stays within its KL budget on held-out Natural Stories text."""
    items = sap_classic.select(constructions=["NP/Z"])
    held = items.model_copy(update={"items": items.items[:3]})
    tr = LearnedTraining(steps=6, prefixes=8, windows=1, window=24, n_fit=24, heldout_stories=(10,), heldout_words=40,
                         bisect=2)
    budget = 0.05
    iv = fit_learned(gemma, held, "steer", [Site(6, "resid_post")], budget, training=tr)
    assert p_dispreferred(gemma, held, iv) < p_dispreferred(gemma, held)
    ns = load_natural_stories(NATURAL_STORIES)
    assert independent_kl(gemma, iv, " ".join(ns.story_words(10)["word"].head(40))) <= budget
    assert_no_hooks(gemma)


def test_dose_figure_draws_every_form_and_construction():
    from mechinterp.interventions.dose import DOSE_COLUMNS, dose_figure

    rows = []
    for form, budget in [("original", 0.0), ("steer@1", 0.01), ("steer@1", 0.1), ("subspace-r2@1", 0.01),
                         ("subspace-r2@1", 0.1)]:
        for cons in ("NP/Z", "NP/S"):
            for roi in (0, 1, 2):
                rows.append({"form": form, "budget": budget, "heldout_kl": budget / 2, "construction": cons,
                             "roi": roi, "p_dispreferred": 0.1 - budget / 2, "p_dispreferred_low": 0.05,
                             "p_dispreferred_high": 0.15, "effect_bits": 3.0, "predicted_ms": 10.0, "human_ms": 100.0,
                             "ns_perplexity_ratio": 1 + budget, "item_r": 0.2})
    fig = dose_figure(pd.DataFrame(rows).reindex(columns=DOSE_COLUMNS))
    names = [t.name for t in fig.data]
    learned_lines = {n for n in names if n and "·" in n and not n.startswith(("original", "people"))}
    assert learned_lines == {f"{f} · {c}" for f in ("steer@1", "subspace-r2@1") for c in ("NP/Z", "NP/S")}
    assert names.count("people · NP/Z") == 1  # the human effect, on the predicted-ms panel only
    assert sum(n == "original · NP/S" for n in names) == 6  # the original on every panel (held-out KL 0 too)
    assert fig.layout.xaxis.type == "log"

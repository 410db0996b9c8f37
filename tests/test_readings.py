"""Reading probabilities from behaviour: the exact estimator, efficacy under interventions, and (slow) the
expected preferences of Gemma on NP/Z."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import hand_logprob
from mechinterp.readings import exact_readings, load_continuations, reading_probabilities
from mechinterp.readings.continuations import ReadingSet, token_sets
from mechinterp.readings.summary import efficacy, summarise_readings
from mechinterp.readings.targets import reading_targets
from mechinterp.stimuli import load_suite


@pytest.fixture(scope="module")
def npz3():
    s = load_suite("npz")
    return s.model_copy(update={"items": s.items[:3]})


def test_shipped_sets_cover_every_builtin_construction():
    sets = load_continuations()
    for name in ("npz", "nps", "mvrr", "lexcat"):
        s = load_suite(name)
        assert set(sets[s.ambiguity.construction]) == set(s.ambiguity.readings)
    assert all(rs.why for cons in sets.values() for rs in cons.values())


def test_targets_end_before_the_disambiguator(tiny_model, npz3):
    t = list(reading_targets(tiny_model, npz3))
    assert [x.condition for x in t[:2]] == ["ambiguous", "unambiguous"]
    assert t[0].prefix == "While the man hunted the deer" and t[0].disambiguator == "ran"
    assert t[1].prefix == "While the man hunted, the deer" and t[0].unambiguous_prefix == t[1].prefix
    assert (t[0].preferred, t[0].dispreferred) == ("object", "subject")
    assert t[0].full_ids[: len(t[0].prefix_ids)] == t[0].prefix_ids


def test_disambiguator_excluded_and_prefix_duplicates_dropped(tiny_model):
    sets = {"a": ReadingSet("a", (" ran", " was", " ran away")), "b": ReadingSet("b", (",",))}
    ts = token_sets(tiny_model.tokenizer, sets, exclude="ran")
    assert [c for c, _ in ts["a"]] == [" was"]
    ts = token_sets(tiny_model.tokenizer, sets)
    assert [c for c, _ in ts["a"]] == [" ran", " was"]  # " ran away" starts with " ran": already counted


def test_exact_equals_hand_computation(tiny_model, npz3):
    sets = {"NP/Z": {"subject": ReadingSet("subject", (" was", " ran", " galloped away")),
                     "object": ReadingSet("object", (",", " for ever"))}}
    df = exact_readings(tiny_model, npz3, continuations=sets, batch_size=2)
    assert len(df) == 3 * 2 * 2
    tok = tiny_model.tokenizer
    assert len(tok(" galloped away", add_special_tokens=False)["input_ids"]) > 1  # a multi-token continuation
    for t in reading_targets(tiny_model, npz3):
        ts = token_sets(tok, sets["NP/Z"], exclude=t.disambiguator)
        expected = [" was", " galloped away"] if t.disambiguator == "ran" else [" was", " ran", " galloped away"]
        assert [c for c, _ in ts["subject"]] == expected  # "ran" is item 1's disambiguator
        m = {r: np.logaddexp.reduce([hand_logprob(tiny_model, t.prefix_ids, ids) for _, ids in toks])
             for r, toks in ts.items()}
        rows = df[(df["item"] == t.item) & (df["condition"] == t.condition)].set_index("reading")
        p_subj = math.exp(m["subject"]) / (math.exp(m["subject"]) + math.exp(m["object"]))
        assert rows.loc["subject", "probability"] == pytest.approx(p_subj, rel=1e-4, abs=1e-7)
        assert rows.loc["subject", "log2_mass"] == pytest.approx(m["subject"] / math.log(2), abs=1e-4)
        assert rows.loc["object", "log2_odds"] == pytest.approx((m["object"] - m["subject"]) / math.log(2), abs=1e-4)
        assert rows["probability"].sum() == pytest.approx(1.0)


def test_reading_probabilities_dispatch_and_summary(tiny_model, npz3):
    df = reading_probabilities(tiny_model, npz3, method="exact")
    s = summarise_readings(df, n_boot=100)
    assert set(s["condition"]) == {"ambiguous", "unambiguous"} and (s["n_items"] == 3).all()
    assert (s["p_dispreferred_low"] <= s["p_dispreferred"]).all() and (s["p_dispreferred"] <= s["p_dispreferred_high"]).all()


def test_efficacy_flags_a_collapse():
    rows = []
    for name, p in (("original", 0.4), ("halved", 0.1), ("same", 0.38)):
        for item in range(4):
            for reading, pref in (("object", True), ("subject", False)):
                q = p if not pref else 1 - p
                rows.append({"intervention": name, "method": "exact", "construction": "NP/Z", "condition": "ambiguous",
                             "item": item, "reading": reading, "preferred": pref, "probability": q,
                             "log2_odds": math.log2(q / (1 - q))})
    e = efficacy(pd.DataFrame(rows), n_boot=50).set_index("intervention")
    assert bool(e.loc["halved", "collapsed"]) and not bool(e.loc["same", "collapsed"])
    assert e.loc["halved", "ratio"] == pytest.approx(0.25) and e.loc["original", "ratio"] == pytest.approx(1.0)


def test_collapse_reports_efficacy(tiny_model, npz3):
    from mechinterp.interventions.collapse import run_collapse
    from mechinterp.interventions.spec import build_all, parse_spec

    specs = [parse_spec("leace:layers=0+1,fit=npz")]
    built = build_all(tiny_model, specs, npz3)
    res = run_collapse(tiny_model, npz3, built)
    e = res.efficacy
    assert {"p_dispreferred_original", "p_dispreferred", "ratio", "collapsed", "factor"} <= set(e.columns)
    assert set(e["intervention"]) == {"original", "leace@0+1"} and set(e["condition"]) == {"ambiguous", "unambiguous"}
    assert set(res.readings["intervention"]) == {"original", "leace@0+1"}
    # the erasure acts on the prefix exactly as on the full sentence: P(next word) at the prefix's end
    # equals what the full sentence's forward pass under the same intervention gives
    orig = res.readings[res.readings["intervention"] == "original"]
    assert not np.allclose(orig["probability"].to_numpy(),
                           res.readings[res.readings["intervention"] == "leace@0+1"]["probability"].to_numpy())


@pytest.mark.slow
def test_gemma_npz_readings_and_leace(gemma):
    """Gemma prefers the object reading when the NP/Z prefix is ambiguous and the subject reading after the
    comma; erasing the reading at every layer makes the dispreferred reading more probable. Bounded: 8 items."""
    from mechinterp.interventions.spec import build_all, parse_spec

    s = load_suite("npz")
    sub = s.model_copy(update={"items": s.items[:8]})
    df = exact_readings(gemma, sub)
    d = df[~df["preferred"]].groupby("condition")["probability"].mean()
    assert d["ambiguous"] < 0.2 and d["unambiguous"] > 0.5
    layers = f"1-{gemma.n_layers - 1}"
    iv = build_all(gemma, [parse_spec(f"leace:layers={layers},fit=readings")], sub)
    after = exact_readings(gemma, sub, next(iter(iv.values())))
    a = after[~after["preferred"] & (after["condition"] == "ambiguous")]["probability"].mean()
    assert a > d["ambiguous"]


LABELLED = Path(__file__).parent / "data"


def _labelled(name: str) -> pd.DataFrame:
    """A hand-labelled file with the classifier's verdict beside each gold label ('unclear' for None)."""
    from mechinterp.readings.classify import classify
    from mechinterp.stimuli.constructions import CONSTRUCTIONS

    df = pd.read_csv(LABELLED / name, keep_default_na=False)
    got = []
    for r in df.itertuples():
        info = CONSTRUCTIONS[r.construction]
        other = next(x for x in info.readings if x != info.preferred_reading)
        got.append(classify(r.prefix, r.unambiguous_prefix, r.continuation, r.construction, info.preferred_reading,
                            other, ambiguous_prefix=r.ambiguous_prefix) or "unclear")
    return df.assign(got=got)


def test_classifier_reaches_target_accuracy_on_hand_labelled_continuations():
    """Gemma samples (seed 7, items 9-16 of each built-in suite, 32 per construction), labelled by hand,
    unclassifiable ones as 'unclear'. Target: >= 90% of the verdicts equal the gold label, abstentions
    included (an abstention is right only where the label is 'unclear')."""
    df = _labelled("readings_labelled.csv")
    assert len(df) >= 100
    assert (df["got"] == df["gold"]).mean() >= 0.90
    classified = df[df["got"] != "unclear"]
    assert (classified["got"] == classified["gold"]).mean() >= 0.93
    assert (df["got"] == "unclear").mean() <= 0.25


def test_classifier_on_garden_path_continuations_of_classic_nps_items():
    """SAP ClassicGP NP/S items 1-12, sampled from both models (seed 13; 4 continuations of each ambiguous
    prefix, one of each unambiguous prefix), labelled by hand: the set holds what the first one lacks,
    continuations of the *ambiguous* prefix that complete the dispreferred reading ("The corrupt politician
    mentioned the bill| was a burden ..."). Every one of those must be found."""
    df = _labelled("readings_labelled_sap_nps.csv")
    assert len(df) >= 40 and set(df["model"]) == {"gemma3-270m", "smollm2-135m"}
    assert (df["got"] == df["gold"]).mean() >= 0.85
    garden = df[(df["condition"] == "ambiguous") & (df["gold"] == "complement_subject")]
    assert len(garden) >= 8 and (garden["got"] == "complement_subject").all()
    classified = df[df["got"] != "unclear"]
    assert (classified["got"] == classified["gold"]).mean() >= 0.90


@pytest.mark.parametrize("construction, prefix, unambiguous, readings, cases", [
    ("NP/Z", "While the man hunted the deer", "While the man hunted, the deer", ("object", "subject"), {
        " ran away.": "subject", ", the dog barked.": "object", " in the woods, he sang.": "object",
        " that was hiding ran off.": "subject", ", which was tired, ran away.": "subject", " for hours.": "object"}),
    ("MV/RR", "The horse raced past the barn", "The horse that was raced past the barn",
     ("main_verb", "reduced_relative"), {" fell.": "reduced_relative", ".": "main_verb", " and fell.": "main_verb",
                                         " quickly fell down.": "reduced_relative"}),
    ("LEX", "The old man", "The old sailors man", ("noun", "verb"), {
        " the boats.": "verb", " was tired.": "noun", " who lived here died.": "noun", " them well.": "verb"}),
])
def test_classifier_on_textbook_continuations(construction, prefix, unambiguous, readings, cases):
    from mechinterp.readings.classify import classify

    for cont, want in cases.items():
        assert classify(prefix, unambiguous, cont, construction, *readings) == want, cont
    # after the unambiguous prefix of a clausal construction the preferred reading is ruled out
    if construction != "LEX":
        assert classify(unambiguous, unambiguous, ".", construction, *readings, ambiguous_prefix=prefix) is None


def test_sampled_estimator_is_seeded(tiny_model, npz3):
    from mechinterp.readings.sampled import sample_continuations, sampled_readings

    sub = npz3.model_copy(update={"items": npz3.items[:1]})
    t = next(iter(reading_targets(tiny_model, sub)))
    a = sample_continuations(tiny_model, t, 3, seed=1, max_new_tokens=4)
    assert a == sample_continuations(tiny_model, t, 3, seed=1, max_new_tokens=4)
    assert a != sample_continuations(tiny_model, t, 3, seed=2, max_new_tokens=4)
    df1 = sampled_readings(tiny_model, sub, n_samples=3, seed=1, max_new_tokens=4)
    df2 = sampled_readings(tiny_model, sub, n_samples=3, seed=1, max_new_tokens=4)
    pd.testing.assert_frame_equal(df1, df2)
    assert (df1["n_samples"] == 3).all() and set(df1["method"]) == {"sampled"}


def test_cached_sampler_equals_the_full_rerun(tiny_model, npz3):
    """The original model samples from its key-value cache; an intervention that changes nothing reruns the
    whole sequence at every step. Same seed, same samples."""
    from mechinterp.interventions.base import AllPositions, Intervention, SiteEdit
    from mechinterp.locate.sites import Site
    from mechinterp.readings.sampled import sample_continuations

    class Identity(Intervention):
        scope = AllPositions(tiny_model.bos_token_id)

        def edits(self):
            return [SiteEdit(Site(0, "resid_post"), lambda x: x)]

        def describe(self):
            return {"kind": "identity"}

    t = next(iter(reading_targets(tiny_model, npz3)))
    cached = sample_continuations(tiny_model, t, 3, seed=5, max_new_tokens=5)
    assert cached == sample_continuations(tiny_model, t, 3, seed=5, max_new_tokens=5, intervention=Identity())


def test_batched_sampling_equals_one_item_at_a_time(tiny_model, npz3):
    """Items of different prefix lengths sampled together (left-padded, one cache) draw what each draws alone."""
    from mechinterp.readings.sampled import sample_continuations, sampled_readings

    got: list = []
    sampled_readings(tiny_model, npz3, n_samples=2, seed=4, max_new_tokens=4, samples_out=got, batch_size=4)
    targets = list(reading_targets(tiny_model, npz3))
    assert len({len(t.prefix_ids) for t in targets}) > 1  # the batch is padded
    alone = [c for t in targets for c in sample_continuations(tiny_model, t, 2, seed=4, max_new_tokens=4)]
    assert [g["continuation"] for g in got] == alone


def test_compare_estimators_per_construction_and_condition():
    from mechinterp.readings.summary import compare_estimators, estimator_line

    rows = []
    for method in ("exact", "sampled"):
        for cons, sign in (("NP/Z", 1), ("NP/S", -1)):
            for item in range(6):
                for cond, base in (("ambiguous", 0.0), ("unambiguous", 0.5)):
                    p = base + 0.05 * item if method == "exact" or sign > 0 else base + 0.3 - 0.05 * item
                    rows.append({"method": method, "construction": cons, "item": item, "condition": cond,
                                 "reading": "r", "preferred": False, "probability": p})
    df = pd.DataFrame(rows)
    est = compare_estimators(df[df.method == "exact"], df[df.method == "sampled"]).set_index(["construction", "condition"])
    assert est.loc[("NP/Z", "ambiguous"), "spearman_rho"] == pytest.approx(1.0)
    assert est.loc[("NP/S", "ambiguous"), "spearman_rho"] == pytest.approx(-1.0)  # reversed within a condition
    assert est.loc[("NP/S", "all"), "spearman_rho"] > 0  # ... but the conditions' difference agrees
    assert est.loc[("NP/Z", "all"), "n"] == 12 and est.loc[("all", "all"), "n"] == 24
    line = estimator_line(compare_estimators(df[df.method == "exact"], df[df.method == "sampled"]))
    assert line.startswith("exact vs sampled") and "ambiguous rho=0.00 (n=12)" in line


def test_readings_command(tiny_dirs, tmp_path):
    """`mechinterp readings` on the tiny model: exact and sampled, with a user's continuation file, a batch size,
    a sample count, a bootstrap count, a backend and a seed, all reflected in the outputs and provenance."""
    from mechinterp.cli import main
    from mechinterp.provenance import read_provenance
    from mechinterp.tables import read_table

    shipped = Path(__file__).resolve().parents[1] / "mechinterp" / "readings" / "data" / "continuations.toml"
    sets = tmp_path / "sets.toml"
    sets.write_text(shipped.read_text())
    from mechinterp.stimuli import write_syntaxgym

    suite = tmp_path / "npz2.json"
    npz = load_suite("npz")
    write_syntaxgym(npz.model_copy(update={"items": npz.items[:2]}), suite)
    out = tmp_path / "r.csv"
    argv = ["readings", "--model", str(tiny_dirs["llama"]), "--suite", str(suite), "--out", str(out),
            "--method", "both", "--samples", "2", "--continuations", str(sets), "--batch-size", "3",
            "--n-boot", "20", "--backend", "nnsight", "--seed", "3"]
    assert main(argv) == 0
    table = read_table(out)
    assert set(table["method"]) == {"exact", "sampled"}
    samples = read_table(tmp_path / "r.samples.csv")
    assert len(samples) == 2 * 2 * 2  # 2 samples x 2 conditions x 2 items
    est = read_table(tmp_path / "r.estimators.csv")
    assert {"construction", "condition", "n", "spearman_rho"} <= set(est.columns)
    assert set(est["condition"]) == {"ambiguous", "unambiguous", "all"} and set(est["construction"]) == {"NP/Z", "all"}
    assert (tmp_path / "r.summary.csv").exists()
    prov = read_provenance(out)
    assert prov["config"]["backend"] == "nnsight" and prov["config"]["seed"] == 3
    assert prov["extra"]["continuations"] == str(sets)
    assert main(["readings", "--model", str(tiny_dirs["llama"]), "--suite", "npz", "--out", str(tmp_path / "x.txt")]) == 2

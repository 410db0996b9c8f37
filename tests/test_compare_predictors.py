"""Word-level predictors (mechinterp.compare.predictors): every column equals a direct computation on the tiny
model, batching changes nothing, NaN sits exactly where the docstring says, and no hook is left behind; (slow)
on Gemma-3-270M the two versions of an NP/Z item drift apart at the disambiguating word."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import mechinterp as mi
from conftest import hand_logprob
from mechinterp.compare.belief import belief_sets, belief_update, prefix_beliefs
from mechinterp.compare.predictors import word_predictors
from mechinterp.compare.reanalysis import aligned_words, shared_stretch
from mechinterp.compare.word_pass import context_rows
from mechinterp.errors import ConfigError
from mechinterp.explore.demo import first_items
from mechinterp.locate.activations import collect_rows
from mechinterp.locate.sites import Site
from mechinterp.probes.artifact import ProbeArtifact
from mechinterp.readings import exact_readings
from mechinterp.readings.continuations import ReadingSet, token_sets
from mechinterp.stimuli import load_suite
from mechinterp.tokenization import tokenize_condition
from tests.conftest import TINY_ARCHS, assert_no_hooks, tiny_model_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Small continuation sets (one multi-token continuation) so that the hand computation stays fast.
SETS = {"NP/Z": {"subject": ReadingSet("subject", (" was", " ran", " galloped away")),
                 "object": ReadingSet("object", (",", " for ever"))}}
HEADS = ["L1H0", (0, 3)]


@pytest.fixture(scope="module")
def npz2():
    return load_suite("npz").head(2)


@pytest.fixture(scope="module")
def table(tiny_model, npz2):
    return word_predictors(tiny_model, npz2, heads=HEADS, layers=[0, 1], continuations=SETS, batch_size=16)


def _rows(df, item, condition):
    return df[(df["item"] == item) & (df["condition"] == condition)].sort_values("word_index")


def test_surprisal_entropy_and_entropy_change_equal_suite_surprisal(tiny_model, npz2, table):
    ref = mi.suite_surprisal(tiny_model, npz2, show_progress=False)
    for col in ("surprisal_bits", "entropy_bits"):
        np.testing.assert_allclose(table[col], ref[col], rtol=1e-6)
    pd.testing.assert_frame_equal(table[ref.columns.drop(["surprisal_bits", "entropy_bits"])],
                                  ref.drop(columns=["surprisal_bits", "entropy_bits"]))
    change = ref.groupby(["item", "condition"], sort=False)["entropy_bits"].diff()
    np.testing.assert_allclose(table["entropy_change_bits"], change, rtol=1e-6, atol=1e-9)
    assert table["entropy_change_bits"].isna().tolist() == (table["word_index"] == 0).tolist()


def _word_last_states(model, cond, layer):
    tt = tokenize_condition(model, cond)
    site = Site(layer, "resid_post")
    got = collect_rows(model, [tt], [site])
    x, rows = got.tensors[site].double().numpy(), got.rows[site]
    tok = rows[:, 1].tolist()
    return np.stack([x[tok.index(e - 1)] for _, e in tt.word_spans])


@pytest.mark.parametrize("layer", [0, 1])
def test_representational_distance_equals_collected_states(tiny_model, npz2, table, layer):
    for it in npz2.items:
        amb, unamb = npz2.pair(it)
        xa, xb = _word_last_states(tiny_model, amb, layer), _word_last_states(tiny_model, unamb, layer)
        ra, rb = _rows(table, it.number, "ambiguous"), _rows(table, it.number, "unambiguous")
        paired = aligned_words(amb, unamb)
        assert paired, "the versions share words"
        for wa, wb in paired:
            a, b = xa[wa], xb[wb]
            cos = 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            l2 = np.linalg.norm(a - b) / ((np.linalg.norm(a) + np.linalg.norm(b)) / 2)
            for r, w in ((ra, wa), (rb, wb)):
                assert r[f"repr_cos_L{layer}"].iloc[w] == pytest.approx(cos, abs=1e-5)
                assert r[f"repr_l2_L{layer}"].iloc[w] == pytest.approx(l2, rel=1e-4, abs=1e-6)
        # NaN exactly on the words that are not shared: "hunted" / "hunted," (NP/Z's comma cue)
        unpaired = sorted(set(range(len(amb.words))) - {a for a, _ in paired})
        assert [amb.words[w].text for w in unpaired] == [amb.region_words(2)[-1].text]
        assert ra[f"repr_cos_L{layer}"].isna().to_numpy().nonzero()[0].tolist() == unpaired
        # before the cue both versions are the same tokens: distance 0
        assert ra[f"repr_cos_L{layer}"].iloc[0] == pytest.approx(0, abs=1e-6)
    assert table[f"repr_cos_L{layer}"].iloc[:3].max() < 1e-6


def test_alignment_keeps_cue_words_unpaired():
    suite = load_suite("mvrr")
    amb, unamb = suite.pair(suite.items[0])
    paired = aligned_words(amb, unamb)
    unpaired_b = [unamb.words[w].text for w in sorted(set(range(len(unamb.words))) - {b for _, b in paired})]
    assert unpaired_b == ["that", "was"]
    assert all(amb.words[a].text == unamb.words[b].text for a, b in paired)
    assert len(paired) == len(amb.words)


def test_routing_equals_attention_of_a_plain_forward(tiny_model, npz2, table):
    amb_region = npz2.ambiguity.ambiguous_region
    for it in npz2.items:
        for c in it.conditions:
            tt = tokenize_condition(tiny_model, c)
            with torch.no_grad():
                att = tiny_model.hf(input_ids=torch.tensor([tt.input_ids]), output_attentions=True).attentions
            keys = list(range(*tt.region_spans[amb_region]))
            rows = _rows(table, it.number, c.name)
            for label, (L, H) in (("L1H0", (1, 0)), ("L0H3", (0, 3))):
                want = [float(att[L][0, H, s, keys].sum()) for s, _ in tt.word_spans]
                np.testing.assert_allclose(rows[f"attn_amb_{label}"], want, rtol=1e-5, atol=1e-7)
                before = rows["region"] < amb_region
                assert (rows.loc[before, f"attn_amb_{label}"] == 0).all()
                assert (rows.loc[~before, f"attn_amb_{label}"] > 0).all()


def test_shared_stretch_is_the_material_after_the_cue():
    suite = load_suite("sap:ClassicGP")
    seen = {}
    for it in suite.items:
        amb, unamb = suite.pair(it)
        stretch = shared_stretch(amb, unamb, suite.ambiguity.disambiguating_region)
        assert stretch, it.key
        assert [amb.words[i].text for i, _ in stretch] == [unamb.words[j].text for _, j in stretch]
        first = stretch[0][0]  # the word before the stretch differs between the versions (the cue is there)
        assert first > 0 and stretch[0][1] > 0
        assert amb.words[first - 1].text != unamb.words[stretch[0][1] - 1].text
        seen.setdefault(it.construction, " ".join(amb.words[i].text for i, _ in stretch))
    assert seen == {"NP/S": "the file", "NP/Z": "the file", "MV/RR": "sent the file"}  # item 1 of each
    # identical up to the region: no stretch to name
    amb, _ = suite.pair(suite.items[0])
    assert shared_stretch(amb, amb, 2) == []
    assert shared_stretch(amb, amb, 99) == []


def test_routing_on_a_pair_without_an_ambiguous_region_reads_the_shared_stretch(tiny_model):
    suite = first_items(load_suite("sap:ClassicGP"), 1, per_construction=True)
    assert suite.ambiguity is not None and suite.ambiguity.ambiguous_region is None
    got = word_predictors(tiny_model, suite, heads=["L1H0"], layers=(), readings=False)
    for it in suite.items:
        amb, unamb = suite.pair(it)
        stretch = shared_stretch(amb, unamb, suite.ambiguity.disambiguating_region)
        for c, words in ((amb, [i for i, _ in stretch]), (unamb, [j for _, j in stretch])):
            tt = tokenize_condition(tiny_model, c)
            with torch.no_grad():
                att = tiny_model.hf(input_ids=torch.tensor([tt.input_ids]), output_attentions=True).attentions
            keys = list(range(tt.word_spans[words[0]][0], tt.word_spans[words[-1]][1]))
            rows = got[(got["construction"] == it.construction) & (got["item"] == it.number)
                       & (got["condition"] == c.name)].sort_values("word_index")
            want = [float(att[1][0, 0, s, keys].sum()) for s, _ in tt.word_spans]
            np.testing.assert_allclose(rows["attn_amb_L1H0"], want, rtol=1e-5, atol=1e-7)
            assert (rows["attn_amb_L1H0"].iloc[words[0]:] > 0).all()


def test_belief_update_equals_hand_computation(tiny_model, npz2, table):
    it = npz2.items[0]
    cond = it.condition("ambiguous")
    tt = tokenize_condition(tiny_model, cond)
    dis = cond.region_words(npz2.ambiguity.disambiguating_region)[0].text
    sets = token_sets(tiny_model.tokenizer, SETS["NP/Z"], exclude=dis)
    assert any(len(ids) > 1 for toks in sets.values() for _, ids in toks)  # a multi-token continuation
    p = []
    for _, end in tt.word_spans:
        m = {r: np.logaddexp.reduce([hand_logprob(tiny_model, tt.input_ids[:end], ids) for _, ids in toks])
             for r, toks in sets.items()}
        p.append(1 / (1 + math.exp(m["subject"] - m["object"])))  # "object" is the preferred reading
    rows = _rows(table, it.number, "ambiguous")
    np.testing.assert_allclose(rows["reading_p_preferred"], p, rtol=1e-4)
    p = np.asarray(p)
    tv = np.abs(np.diff(p))
    kl = (p[1:] * np.log2(p[1:] / p[:-1]) + (1 - p[1:]) * np.log2((1 - p[1:]) / (1 - p[:-1])))
    np.testing.assert_allclose(rows["reading_tv"].iloc[1:], tv, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(rows["reading_kl_bits"].iloc[1:], kl, rtol=1e-3, atol=1e-8)
    assert rows["reading_tv"].iloc[0] != rows["reading_tv"].iloc[0]  # NaN at the first word
    # at the word before the disambiguating region it is exactly the exact estimator's probability
    ex = exact_readings(tiny_model, npz2, continuations=SETS)
    want = ex[(ex["item"] == it.number) & (ex["condition"] == "ambiguous") & ex["preferred"]]["probability"].item()
    before = rows[rows["region"] == npz2.ambiguity.disambiguating_region]["word_index"].min() - 1
    assert rows["reading_p_preferred"].iloc[before] == pytest.approx(want, rel=1e-5)


def test_belief_update_formula():
    tv, kl = belief_update([0.9, 0.5, 0.5, np.nan, 0.2])
    assert np.isnan(tv[0]) and np.isnan(kl[0]) and np.isnan(tv[3]) and np.isnan(tv[4])
    assert tv[1] == pytest.approx(0.4) and tv[2] == 0 and kl[2] == 0
    assert kl[1] == pytest.approx(0.5 * math.log2(0.5 / 0.9) + 0.5 * math.log2(0.5 / 0.1))


def test_probe_columns_equal_predict_proba_on_collected_states(tiny_model, npz2):
    g = torch.Generator().manual_seed(0)
    d = tiny_model.d_model
    probe = ProbeArtifact(coef=torch.randn(d, generator=g), intercept=0.3, mean=torch.randn(d, generator=g) * 0.1,
                          scale=torch.rand(d, generator=g) + 0.5, site=Site(1, "resid_post"), construction="NP/Z",
                          readings=("object", "subject"))
    df = word_predictors(tiny_model, npz2.head(1), probes=[probe], layers=(), continuations=SETS)
    assert not any(c.startswith("repr_") for c in df.columns)
    for c in npz2.items[0].conditions:
        q = probe.predict_proba(torch.from_numpy(_word_last_states(tiny_model, c, 1))).double().numpy()
        rows = _rows(df, 1, c.name)
        np.testing.assert_allclose(rows["probe_p_NPZ_resid_post_L1"], q, rtol=1e-4, atol=1e-6)
        tv, kl = belief_update(q)
        np.testing.assert_allclose(rows["probe_tv_NPZ_resid_post_L1"], tv, rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(rows["probe_kl_bits_NPZ_resid_post_L1"], kl, rtol=1e-2, atol=1e-6)
    with pytest.raises(ConfigError, match="mapping"):
        word_predictors(tiny_model, npz2.head(1), probes=[probe, probe], layers=())
    named = word_predictors(tiny_model, npz2.head(1), probes={"mine": probe}, layers=(), continuations=SETS)
    np.testing.assert_allclose(named["probe_p_mine"], df["probe_p_NPZ_resid_post_L1"])


def test_batched_equals_one_at_a_time(tiny_model, npz2, table):
    alone = word_predictors(tiny_model, npz2, heads=HEADS, layers=[0, 1], continuations=SETS, batch_size=1)
    assert list(alone.columns) == list(table.columns)
    pd.testing.assert_frame_equal(alone, table, rtol=1e-4, atol=1e-6)


def test_nan_where_not_annotated(tiny_model, sap_classic):
    npz = next(it.key for it in sap_classic.items if it.construction == "NP/Z")
    sap = sap_classic.select(items=[npz, sap_classic.items[-1].key])  # NP/Z (has SETS) and MV/RR (has none)
    df = word_predictors(tiny_model, sap, heads=["L1H0"], layers=[1], continuations=SETS)
    assert bool(df["attn_amb_L1H0"].notna().all())  # no ambiguous region in SAP files: the shared stretch stands in
    for _, g in df.groupby(["construction", "item", "condition"]):
        construction, p, tv = g["construction"].iloc[0], g["reading_p_preferred"], g["reading_tv"]
        if construction in SETS:
            assert bool(p.notna().all()) and tv.isna().tolist() == [True] + [False] * (len(g) - 1)
        else:
            assert bool(p.isna().all()), construction
    assert set(df["construction"]) == {"NP/Z", "MV/RR"}
    assert bool(df["repr_cos_L1"].notna().any()) and bool(df["repr_cos_L1"].isna().any())
    texts = word_predictors(tiny_model, ["While the man hunted the deer ran.", "It rained."], heads=["L1H0"], layers=[1])
    assert texts["sentence"].tolist() == [0] * 7 + [1] * 2
    for col in ("reading_p_preferred", "reading_tv", "reading_kl_bits", "repr_cos_L1", "repr_l2_L1", "attn_amb_L1H0"):
        assert bool(texts[col].isna().all()), col
    assert bool(texts["surprisal_bits"].notna().all())
    off = word_predictors(tiny_model, sap.head(1), layers=(), readings=False)
    assert bool(off["reading_p_preferred"].isna().all()) and bool(off["surprisal_bits"].notna().all())


def test_no_hook_survives_also_when_the_pass_fails(tiny_model, npz2, table):
    assert_no_hooks(tiny_model)
    impl = tiny_model.hf.config._attn_implementation
    tiny_model.hf.set_attn_implementation("sdpa")
    try:
        with pytest.raises(ConfigError, match="attention weights"):
            word_predictors(tiny_model, npz2.head(1), heads=["L1H0"], layers=[1], continuations=SETS)
    finally:
        tiny_model.hf.set_attn_implementation(impl)
    assert_no_hooks(tiny_model)
    with pytest.raises(ConfigError, match="out of range"):
        word_predictors(tiny_model, npz2.head(1), heads=["L7H0"])
    assert_no_hooks(tiny_model)


@pytest.mark.slow
def test_gemma_npz_versions_drift_apart_at_the_disambiguating_word_in_middle_layers(gemma):
    """Gemma-3-270M on the 34 NP/Z items: at the disambiguating word ("ran"), where only the ambiguous version
    has to be reanalysed, the two versions' states are further apart (cosine distance) than at the word before
    (the NP head) in layers 5-7 for most items (measured: 85%, 91%, 91% of items), while in the last layers
    they come closer instead (measured 12-21% of items further apart in layers 14-17)."""
    suite = load_suite("npz")
    middle, late = [5, 6, 7], [14, 15, 16, 17]
    df = word_predictors(gemma, suite, layers=middle + late, readings=False)
    amb = df[df["condition"] == "ambiguous"]
    assert suite.ambiguity is not None
    dis = suite.ambiguity.disambiguating_region
    first = amb[amb["region"] == dis].groupby("item")["word_index"].min()
    at = amb.set_index(["item", "word_index"])
    for L in middle + late:
        col = f"repr_cos_L{L}"
        now = np.array([at.loc[(i, w), col] for i, w in first.items()])
        before = np.array([at.loc[(i, w - 1), col] for i, w in first.items()])
        assert not np.isnan(now).any() and not np.isnan(before).any()
        share = float((now > before).mean())
        assert share >= 0.75 if L in middle else share <= 0.35, (L, share)
    assert_no_hooks(gemma)


#: Continuations whose contexts overlap across readings (" for ever" inside " for ever more"), so that the
#: one-pass scoring shares rows between them.
NESTED = {"NP/Z": {"subject": ReadingSet("subject", (" was", " galloped away", " for ever more", " ran off home")),
                   "object": ReadingSet("object", (",", " for ever", " for", " galloped"))}}


@pytest.fixture(scope="module", params=TINY_ARCHS)
def arch_model(request, tiny_dirs, tmp_path_factory):
    """Each tiny architecture; Gemma-3's sliding window (8 tokens) is shorter than the sentences."""
    arch = request.param
    path = tiny_dirs[arch] if arch in tiny_dirs else tiny_model_dir(tmp_path_factory.mktemp("arch"), arch)
    return mi.load_model(str(path))


@pytest.mark.parametrize("sets", [SETS, NESTED, None], ids=["small", "nested", "shipped"])
def test_one_pass_beliefs_equal_one_estimator_run_per_prefix(arch_model, sets, npz2):
    """The fast path (continuations read off the sentence pass and its key/value cache) gives the numbers of
    the direct computation (every word prefix through the exact estimator's own padded passes)."""
    model = arch_model
    keys, tts = mi.surprisal.suite_sequences(model, npz2)
    slow = prefix_beliefs(model, npz2, {(it.key, c.name): tt for (it, c), tt in zip(keys, tts)}, sets, batch_size=3)
    assert len(slow) == 4
    multi = [ids for bs in belief_sets(model, npz2, sets).values() for ids in bs.token_ids if len(ids) > 1]
    assert bool(multi) == (sets is not None), "SETS and NESTED have multi-token continuations on this tokenizer"
    for batch_size in (1, 16):
        fast = word_predictors(model, npz2, layers=(), continuations=sets, batch_size=batch_size)
        for (key, cond), p in slow.items():
            item = next(it.number for it in npz2.items if it.key == key)
            np.testing.assert_allclose(_rows(fast, item, cond)["reading_p_preferred"], p, rtol=1e-5, atol=1e-7)
    assert_no_hooks(model)


def test_context_rows_share_a_row_between_nested_contexts():
    rows, where = context_rows({0: [(1,), (1, 2), (1, 2, 3), (4, 5)], 2: [(1, 2)]}, [3, 5, 7])
    assert rows == [(3, (1, 2)), (3, (4,)), (7, (1,))]
    assert where == {(0, (1, 2, 3)): 0, (0, (1, 2)): 0, (0, (4, 5)): 1, (2, (1, 2)): 2}


def test_routing_on_a_model_wrapped_by_a_bridge_is_one_clear_error(tiny_dirs, npz2):
    model = mi.load_model(str(tiny_dirs["llama"]), cached=False)  # its own copy: the bridge wraps modules in place
    assert not model.wrapped
    _ = model.tl
    assert model.wrapped
    with pytest.raises(ConfigError, match="bridge"):
        word_predictors(model, npz2.head(1), heads=["L1H0"], layers=(), readings=False)
    # everything but routing still works on it
    table = word_predictors(model, npz2.head(1), layers=(), readings=False)
    assert bool(table["surprisal_bits"].notna().all())

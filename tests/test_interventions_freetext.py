"""Side effects where an intervention would act in free text: post-verbal noun phrases, the scope built from
them, the rescoped intervention, next-token KL, and the scoped columns of `run_collapse`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_no_hooks
from mechinterp.interventions.base import AllPositions, TokenTable
from mechinterp.interventions.clamp import fit_clamp
from mechinterp.interventions.compose import sentence_surprisal_under
from mechinterp.interventions.freetext import next_token_kl, postverbal_noun_phrases, postverbal_scope, rescoped
from mechinterp.interventions.labelled import suite_activations
from mechinterp.locate.sites import Site
from mechinterp.stimuli import load_suite
from mechinterp.tokenization import tokenize_text

TEXTS = ["While the man hunted the deer ran into the woods and the old dog barked.",
         "The student forgot the solution, so she asked her teacher for help."]


@pytest.fixture(scope="module")
def npz4():
    return load_suite("npz").head(4)


@pytest.fixture(scope="module")
def clamp(tiny_model, npz4):
    site = Site(1, "resid_post")
    data = suite_activations(tiny_model, [npz4], [site])
    return fit_clamp(data, site, "ambiguous", TokenTable.from_suites(tiny_model, [npz4]), shift=3.0)


def test_postverbal_noun_phrases():
    assert postverbal_noun_phrases("While the man hunted the deer ran into the woods.") == [(4, 6)]
    words = TEXTS[1].split()
    got = postverbal_noun_phrases(TEXTS[1])
    assert [words[a:b] for a, b in got] == [["the", "solution,"], ["her", "teacher"]]
    assert postverbal_noun_phrases("It was a cold day.") == []  # a copula is not a lexical verb
    assert postverbal_noun_phrases("The dog barked.") == []


def test_scope_edits_the_noun_phrase_tokens(tiny_model):
    scope = postverbal_scope(tiny_model, TEXTS)
    tt = tokenize_text(tiny_model.tokenizer, tiny_model.bos_token_id, TEXTS[0])
    deer = set(tt.tokens_of_word(4)) | set(tt.tokens_of_word(5))  # "the deer"
    pos = scope.table[tuple(tt.input_ids)]
    assert deer <= pos and 0 not in pos
    assert scope.info["noun_phrases"] == sum(len(postverbal_noun_phrases(t)) for t in TEXTS)
    last = postverbal_scope(tiny_model, TEXTS, n_words=1).table[tuple(tt.input_ids)]
    assert set(tt.tokens_of_word(5)) <= last and not set(tt.tokens_of_word(4)) & last
    unknown = torch.tensor([[tiny_model.bos_token_id, 11, 12, 13]])
    assert not scope.mask(unknown).any()  # other text is left alone


def test_rescoped_intervention_acts_only_from_the_noun_phrase_on(tiny_model, clamp):
    text = [TEXTS[0]]
    iv, info = rescoped(tiny_model, clamp, text)
    assert info["noun_phrases"] == 1 and 0 < info["edited_tokens"] < info["tokens"]
    (h,) = iv.hooks
    assert h.scope.info["where"] == "postverbal_np" and h.scope.info["n_words"] == 2  # the suite scope's n_words
    base = sentence_surprisal_under(tiny_model, text, None)["surprisal_bits"].to_numpy()
    everywhere = sentence_surprisal_under(tiny_model, text, clamp)["surprisal_bits"].to_numpy()
    scoped = sentence_surprisal_under(tiny_model, text, iv)["surprisal_bits"].to_numpy()
    assert_no_hooks(tiny_model)
    # words up to and including "the" of "the deer" are predicted before any edited position
    np.testing.assert_allclose(scoped[:5], base[:5], atol=1e-5)
    assert np.abs(scoped[5:] - base[5:]).max() > 1e-3
    assert np.abs(everywhere[1:5] - base[1:5]).max() > 1e-3  # everywhere: the first words change too
    unscoped = type(clamp)(**{**clamp.__dict__, "scope": AllPositions(tiny_model.bos_token_id)})
    same, info2 = rescoped(tiny_model, unscoped, text)
    assert info2 == {} and isinstance(same.hooks[0].scope, AllPositions)  # acts everywhere in free text too


def _hand_kl(model, text, iv):
    ids = torch.tensor([tokenize_text(model.tokenizer, model.bos_token_id, text).input_ids])
    with torch.no_grad():
        lp0 = torch.log_softmax(model.hf(input_ids=ids).logits[0, :-1].float(), -1)
        with iv.apply(model):
            lp1 = torch.log_softmax(model.hf(input_ids=ids).logits[0, :-1].float(), -1)
    return (lp0.exp() * (lp0 - lp1)).sum(-1)


def test_next_token_kl_equals_hand_computation(tiny_model, clamp):
    kl_all, kl_none = next_token_kl(tiny_model, TEXTS, [clamp, None], batch_size=2)
    hand = torch.cat([_hand_kl(tiny_model, t, clamp) for t in TEXTS])
    assert kl_none == 0.0 and kl_all == pytest.approx(float(hand.mean()), rel=1e-4)
    iv, _ = rescoped(tiny_model, clamp, TEXTS)
    (kl_scoped,) = next_token_kl(tiny_model, TEXTS, [iv])
    assert 0 < kl_scoped < kl_all  # fewer positions edited, every later prediction still sees the edit
    assert_no_hooks(tiny_model)


def test_collapse_reports_scoped_side_effects(tiny_model, npz4, clamp):
    from mechinterp.compare.humans import load_natural_stories
    from mechinterp.interventions.collapse import SIDE_EFFECT_COLUMNS, ns_texts, perplexity, run_collapse

    corpus = load_natural_stories().subset([1, 2])
    res = run_collapse(tiny_model, npz4, {"clamp": clamp}, corpus=corpus, ns_words_per_story=40, readings=False)
    se = res.side_effects.set_index("intervention")
    assert list(res.side_effects.columns) == SIDE_EFFECT_COLUMNS
    assert se.loc["original", "ns_perplexity_scoped_ratio"] == 1.0 and se.loc["original", "ns_kl_nats"] == 0.0
    c = se.loc["clamp"]
    assert 0 < c["ns_scoped_token_share"] < 1
    assert 0 < c["ns_kl_scoped_nats"] < c["ns_kl_nats"]
    texts = ns_texts(corpus, 40)
    iv, _ = rescoped(tiny_model, clamp, texts)
    assert c["ns_perplexity_scoped"] == pytest.approx(perplexity(sentence_surprisal_under(tiny_model, texts, iv)))
    assert c["ns_perplexity_scoped"] != pytest.approx(c["ns_perplexity"])
    assert_no_hooks(tiny_model)

"""Words and regions to tokens: BOS, leading whitespace, region spans, straddling tokens."""

from __future__ import annotations

import pytest

import mechinterp.tokenization as tokenization
from mechinterp.errors import RegionError
from mechinterp.stimuli import load_suite
from mechinterp.tokenization import check_context, context_length, tokenize_condition, tokenize_text


def test_bos_and_word_spans(tiny_model):
    tt = tokenize_text(tiny_model.tokenizer, tiny_model.bos_token_id, "While the man hunted, the deer ran.")
    assert tt.input_ids[0] == tiny_model.bos_token_id
    assert tt.words == ("While", "the", "man", "hunted,", "the", "deer", "ran.")
    # spans tile the sequence after BOS, in order, with no gaps
    assert tt.word_spans[0][0] == 1 and tt.word_spans[-1][1] == len(tt.input_ids)
    for (a, b), (c, _) in zip(tt.word_spans, tt.word_spans[1:]):
        assert a < b == c
    # a word's tokens decode to the word with its leading space
    tok = tiny_model.tokenizer
    for i, w in enumerate(tt.words):
        text = tok.decode(list(tt.input_ids[slice(*tt.word_spans[i])]))
        assert text == (w if i == 0 else " " + w)


def test_matches_whole_string_tokenization(tiny_model):
    text = "The horse raced past the barn fell."
    tt = tokenize_text(tiny_model.tokenizer, tiny_model.bos_token_id, text)
    assert not tt.per_word
    assert list(tt.input_ids[1:]) == tiny_model.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_regions_map_to_tokens(tiny_model):
    suite = load_suite("npz")
    amb = suite.ambiguity
    for it in suite.items[:5]:
        for c in it.conditions:
            tt = tokenize_condition(tiny_model, c)
            words = c.region_words(amb.disambiguating_region)
            a, b = tt.region_spans[amb.disambiguating_region]
            assert tiny_model.tokenizer.decode(list(tt.input_ids[a:b])).strip() == " ".join(w.text for w in words)
            assert tt.last_token_of_region(amb.ambiguous_region) == tt.tokens_of_region(amb.ambiguous_region)[-1]


def test_empty_region_and_errors(tiny_model):
    suite = load_suite("npz")
    c = suite.items[0].condition("ambiguous")  # cue region is empty
    tt = tokenize_condition(tiny_model, c)
    cue = suite.ambiguity.cue_region
    assert len(tt.tokens_of_region(cue)) == 0
    with pytest.raises(RegionError, match="is empty"):
        tt.last_token_of_region(cue)
    with pytest.raises(RegionError, match="region 99 does not exist"):
        tt.tokens_of_region(99)
    with pytest.raises(RegionError, match="out of range"):
        tt.tokens_of_word(100)
    with pytest.raises(RegionError, match="empty sentence"):
        tokenize_text(tiny_model.tokenizer, 0, "   ")


class _MergingTokenizer:
    """A tokenizer that merges 'a b' into one token across the space (as some SentencePiece vocabularies can)."""

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        if text.startswith(" "):
            ids, offs = [len(text)], [(0, len(text))]
        else:
            ids, offs, pos = [], [], 0
            while pos < len(text):
                if text.startswith("a b", pos):
                    ids.append(100)
                    offs.append((pos, pos + 3))
                    pos += 3
                else:
                    ids.append(ord(text[pos]))
                    offs.append((pos, pos + 1))
                    pos += 1
        out = {"input_ids": ids}
        if return_offsets_mapping:
            out["offset_mapping"] = offs
        return out


def test_straddling_token_falls_back_to_per_word():
    tt = tokenize_text(_MergingTokenizer(), 1, "x a b y")
    assert tt.per_word
    assert len(tt.word_spans) == 4
    for a, b in tt.word_spans:
        assert b > a


def test_long_sentence_is_fast_and_refused_beyond_context(tiny_model):
    import time

    from mechinterp.stimuli.types import Condition, Region

    text = " ".join(["horse", "raced,", "past"] * 17_000)  # 51,000 words
    t0 = time.perf_counter()
    tok = tokenize_text(tiny_model.tokenizer, tiny_model.bos_token_id, text)
    assert time.perf_counter() - t0 < 20  # was quadratic in words x tokens
    assert len(tok.word_spans) == 51_000 and tok.word_spans[-1][1] == len(tok.input_ids)
    cond = Condition(name="long", regions=(Region(number=1, content=text),))
    with pytest.raises(RegionError, match=r"context length of \d+ tokens"):
        tokenize_condition(tiny_model, cond)


def test_check_context_names_the_first_condition_too_long(tiny_model, monkeypatch):
    """The suite-level check every command makes before its first forward pass: silent when every condition
    fits, else one error with the suite, item, condition, length and limit, and how many others are too long."""
    mvrr, npz = load_suite("mvrr"), load_suite("npz")
    lengths = {(it.key, c.name): len(tokenize_condition(tiny_model, c)) for it in mvrr.items for c in it.conditions}
    longest = max(lengths.values())
    check_context(tiny_model, [mvrr, npz])  # everything fits the default context
    monkeypatch.setattr(tiny_model.hf.config, "max_position_embeddings", longest - 1)
    assert context_length(tiny_model) == longest - 1
    over = [k for k, n in lengths.items() if n == longest]
    with pytest.raises(RegionError) as exc:
        check_context(tiny_model, [mvrr.head(1), mvrr])
    msg = str(exc.value)
    item, cond = over[0]
    assert f"suite 'mvrr' item {item} condition '{cond}'" in msg and f"{longest} tokens long" in msg
    assert f"context length of {longest - 1} tokens" in msg and "\n" not in msg
    assert (f"({len(over) - 1} other" in msg) == (len(over) > 1)
    check_context(tiny_model, [mvrr.head(1)])  # the first item alone fits
    monkeypatch.setattr(tokenization, "context_length", lambda model: None)
    check_context(tiny_model, [mvrr])  # a model that does not say its limit: nothing is refused

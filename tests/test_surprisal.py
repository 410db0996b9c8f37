"""Word surprisal is exact: by hand, batched vs alone, either padding side, and on every backend."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mechinterp.forward import logits, next_token_stats, pad_batch
from mechinterp.stimuli import load_suite
from mechinterp.surprisal import SurprisalConfig, _bow_mask, sentence_surprisal, suite_surprisal
from mechinterp.tokenization import tokenize_text

SENTENCES = [
    "While the man hunted the deer ran into the woods.",
    "The old man the boat.",
    "The xylophonist's frobnication bewildered everyone at Zanzibar's quayside.",
    "Because the suspect changed, the file deserved further investigation.",
]


def _uniform(model):
    """A copy of ``model`` whose logits are all zero: every token has probability 1/V."""
    hf = copy.deepcopy(model.hf)
    with torch.no_grad():
        hf.get_output_embeddings().weight.zero_()
        bias = getattr(hf.get_output_embeddings(), "bias", None)
        if bias is not None:
            bias.zero_()
    return dataclasses.replace(model, hf=hf, _views={})


def test_by_hand_uniform_model(tiny_model):
    m = _uniform(tiny_model)
    V = m.hf.get_output_embeddings().weight.shape[0]
    df = sentence_surprisal(m, SENTENCES[2:3])
    # each token costs log2(V) bits, so a word costs (its number of tokens) * log2(V)
    np.testing.assert_allclose(df["surprisal_bits"], df["n_tokens"] * math.log2(V), rtol=1e-6)
    np.testing.assert_allclose(df["entropy_bits"], math.log2(V), rtol=1e-6)
    assert df["n_tokens"].max() > 1  # the case includes words split into several tokens
    # trailing-whitespace correction: words after the first gain P(bow)/P(bow) = 1; the first word pays log2(V/B)
    B = int(_bow_mask(m.tokenizer)[:V].sum())
    tr = sentence_surprisal(m, SENTENCES[2:3], SurprisalConfig(whitespace="trailing"))
    expected = tr["n_tokens"] * math.log2(V)
    expected.iloc[0] -= math.log2(B / V)
    np.testing.assert_allclose(tr["surprisal_bits"], expected, rtol=1e-6)


def test_by_hand_against_plain_forward(tiny_model):
    """One sentence, computed independently with a bare forward pass and log_softmax."""
    tok = tiny_model.tokenizer
    text = "The xylophonist's frobnication bewildered everyone."
    ids = [tiny_model.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(tiny_model.hf(torch.tensor([ids])).logits[0].double(), -1)
    per_token = [-lp[t - 1, ids[t]].item() / math.log(2) for t in range(1, len(ids))]
    # "xylophonist's" is the second word: find its tokens by decoding prefixes
    df = sentence_surprisal(tiny_model, [text])
    n0, n1 = df["n_tokens"].iloc[0], df["n_tokens"].iloc[1]
    assert tok.decode(ids[1 + n0 : 1 + n0 + n1]) == " xylophonist's"
    assert df["surprisal_bits"].iloc[1] == pytest.approx(sum(per_token[n0 : n0 + n1]), abs=1e-4)
    assert df["surprisal_bits"].sum() == pytest.approx(sum(per_token), abs=1e-4)


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_gpt2"])
def test_batched_alone_padding_and_backends_agree(fixture, request):
    m = request.getfixturevalue(fixture)
    alone = pd.concat(
        [sentence_surprisal(m, [s], SurprisalConfig(batch_size=1)) for s in SENTENCES], ignore_index=True
    )
    for backend in ("hf", "transformer_lens", "nnsight"):
        for side in ("right", "left"):
            cfg = SurprisalConfig(backend=backend, padding_side=side, batch_size=4)
            batched = sentence_surprisal(m, SENTENCES, cfg)
            diff = np.abs(batched["surprisal_bits"].to_numpy() - alone["surprisal_bits"].to_numpy()).max()
            assert diff <= 1e-4, (backend, side, diff)
            ediff = np.abs(batched["entropy_bits"].to_numpy() - alone["entropy_bits"].to_numpy()).max()
            assert ediff <= 1e-4, (backend, side, ediff)


def test_left_padding_needs_position_ids(tiny_gpt2):
    """The nnsight issue-672 failure mode: without mask-derived position ids, a left-padded GPT-2 row is wrong.
    Guards that our batches really carry the correction (this test fails if position_ids are dropped)."""
    m = tiny_gpt2
    tts = [tokenize_text(m.tokenizer, m.bos_token_id, s) for s in SENTENCES[:2]]
    b = pad_batch([t.input_ids for t in tts], m.pad_token_id, "left")
    short = int(np.argmin(b.lengths))
    good = next_token_stats(logits(m, b), b.input_ids)[0][short, b.row_slice(short)]
    with torch.no_grad():
        bad_logits = m.hf(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
    bad = next_token_stats(bad_logits, b.input_ids)[0][short, b.row_slice(short)]
    assert (good[1:] - bad[1:]).abs().max() > 1e-3


def test_suite_surprisal_table(tiny_model):
    suite = load_suite("npz")
    df = suite_surprisal(tiny_model, suite.head(3), show_progress=False)
    assert list(df.columns)[:4] == ["suite", "construction", "item", "condition"]
    assert set(df["condition"]) == {"ambiguous", "unambiguous"}
    one = df[(df["item"] == suite.items[0].number) & (df["condition"] == "ambiguous")]
    assert " ".join(one["word"]) == suite.items[0].condition("ambiguous").text
    assert (df["surprisal_bits"] > 0).all() and df["surprisal_bits"].notna().all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gemma3-270m", "smollm2-135m"])
def test_real_models_invariance_and_parity(name, request):
    m = request.getfixturevalue("gemma" if name == "gemma3-270m" else "smollm2")
    alone = pd.concat([sentence_surprisal(m, [s], SurprisalConfig(batch_size=1)) for s in SENTENCES], ignore_index=True)
    for backend, side in [("hf", "left"), ("hf", "right"), ("transformer_lens", "left"), ("nnsight", "left"), ("nnsight", "right")]:
        batched = sentence_surprisal(m, SENTENCES, SurprisalConfig(backend=backend, padding_side=side, batch_size=4))
        diff = np.abs(batched["surprisal_bits"].to_numpy() - alone["surprisal_bits"].to_numpy()).max()
        assert diff <= 1e-4, (backend, side, diff)


@pytest.mark.slow
def test_real_model_by_hand(gemma):
    """Gemma: a BOS-initial sentence scored with a bare forward pass equals the word table."""
    tok = gemma.tokenizer
    text = "The horse raced past the barn fell."
    ids = tok(text, add_special_tokens=True)["input_ids"]  # Gemma's tokenizer prepends <bos> itself
    assert ids[0] == gemma.bos_token_id
    with torch.no_grad():
        lp = torch.log_softmax(gemma.hf(torch.tensor([ids])).logits[0].double(), -1)
    bits = [-lp[t - 1, ids[t]].item() / math.log(2) for t in range(1, len(ids))]
    df = sentence_surprisal(gemma, [text])
    assert df["word"].tolist() == text.split()
    assert df["surprisal_bits"].to_numpy() == pytest.approx(np.add.reduceat(bits, np.r_[0, df["n_tokens"].cumsum()[:-1]]), abs=1e-3)


@pytest.mark.parametrize("rows", [1, 4, 8, 1000])
def test_logz_and_entropy_in_chunks_match_torch(rows):
    from mechinterp.surprisal import _logz_and_entropy

    g = torch.Generator().manual_seed(0)
    lg = torch.randn(3, 5, 1000, generator=g) * 4
    lse, ent = _logz_and_entropy(lg, rows_per_chunk=rows)
    torch.testing.assert_close(lse, torch.logsumexp(lg, -1))
    torch.testing.assert_close(ent, torch.distributions.Categorical(logits=lg).entropy())

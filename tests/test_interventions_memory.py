"""Memory edits inside attention: the recency bias and key noise (mechinterp.interventions.memory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechinterp.errors import ConfigError
from mechinterp.interventions.memory import KeyNoise, RecencyBias, memory_edits
from mechinterp.surprisal import SurprisalConfig, sentence_surprisal

TEXTS = ["The old man the boat every morning before the sun comes up over the hills.",
         "While the man hunted the deer ran into the woods.", "The horse raced past the barn fell."]


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory):
    """A 2-layer random Gemma-3 (one sliding-window layer with a window of 8, grouped-query attention)."""
    from conftest import tiny_model_dir
    from mechinterp.models import load_model

    return load_model(str(tiny_model_dir(tmp_path_factory.mktemp("mem"), "gemma3")), cached=False)


@pytest.fixture(scope="module")
def tiny_llama(tiny_dirs):
    """A 2-layer random Llama of its own (other tests may run the shared one through the TransformerLens bridge,
    which takes over its attention modules)."""
    from mechinterp.models import load_model

    return load_model(str(tiny_dirs["llama"]), cached=False)


@pytest.fixture(params=["tiny_llama", "tiny_gemma3"])
def model(request):
    return request.getfixturevalue(request.param)


def surprisal(model, edit=None, texts=TEXTS, batch_size=16):
    cfg = SurprisalConfig(batch_size=batch_size)
    if edit is None:
        return sentence_surprisal(model, texts, cfg)["surprisal_bits"].to_numpy()
    with edit.apply(model):
        return sentence_surprisal(model, texts, cfg)["surprisal_bits"].to_numpy()


def test_zero_edits_equal_the_original_model_and_others_change_it(model):
    base = surprisal(model)
    for identity in (RecencyBias(0.0), KeyNoise(0.0, distance=1), KeyNoise(5.0, distance=500)):
        np.testing.assert_allclose(surprisal(model, identity), base, atol=1e-5, rtol=0)
    for edit in (RecencyBias(0.5), KeyNoise(2.0, distance=2)):
        assert np.abs(surprisal(model, edit) - base).max() > 1e-3, edit  # random tiny models: small scores
    assert model.hf.config._attn_implementation == "eager"
    np.testing.assert_allclose(surprisal(model), base, atol=0, rtol=0)  # restored


def test_a_steep_recency_bias_leaves_each_token_alone(model):
    """With lambda huge a query attends to itself only, so a word's surprisal no longer depends on the words
    before its previous token."""
    a = ["The cat sat on the mat today.", "A dog ran by the mat today."]
    with RecencyBias(1e4).apply(model):
        got = sentence_surprisal(model, a)
    last = got[got["word_index"] == 6]["surprisal_bits"].to_numpy()
    assert last[0] == pytest.approx(last[1], abs=1e-4)  # "today." after "mat" in both


def test_key_noise_is_fixed_per_position_whatever_the_batch(model):
    edit = KeyNoise(1.5, distance=3, seed=7)
    together = surprisal(model, edit)
    alone = np.concatenate([surprisal(model, edit, [t], batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=2e-4)
    assert np.abs(surprisal(model, KeyNoise(1.5, distance=3, seed=8)) - together).max() > 1e-3


def test_edits_compose_and_are_removed_on_error(tiny_llama):
    tiny_model = tiny_llama
    base = surprisal(tiny_model)
    with pytest.raises(RuntimeError):
        with memory_edits(tiny_model, [RecencyBias(0.3), KeyNoise(1.0, 2)]):
            assert tiny_model.hf.config._attn_implementation != "eager"
            raise RuntimeError("boom")
    assert tiny_model.hf.config._attn_implementation == "eager"
    np.testing.assert_allclose(surprisal(tiny_model), base, atol=0, rtol=0)


def test_bad_edits_are_refused(tiny_llama):
    tiny_model = tiny_llama
    for bad in (lambda: RecencyBias(-1.0), lambda: RecencyBias(float("nan")), lambda: KeyNoise(-0.1),
                lambda: KeyNoise(1.0, distance=-2), lambda: KeyNoise(1.0, seed=-1)):
        with pytest.raises(ConfigError):
            bad()
    with pytest.raises(ConfigError, match="not a memory edit"):
        with memory_edits(tiny_model, ["recency"]):  # type: ignore[list-item]
            pass
    old = tiny_model.hf.config._attn_implementation
    tiny_model.hf.config._attn_implementation = "sdpa"
    try:
        with pytest.raises(ConfigError, match="eager attention"):
            with RecencyBias(0.1).apply(tiny_model):
                pass
    finally:
        tiny_model.hf.config._attn_implementation = old


def test_recency_bias_matches_a_hand_computed_attention(tiny_llama):
    """The first layer's attention pattern under the bias is softmax(scores - lam * distance)."""
    tiny_model = tiny_llama
    from mechinterp.tokenization import tokenize_text

    tt = tokenize_text(tiny_model.tokenizer, tiny_model.bos_token_id, TEXTS[1])
    ids = torch.tensor([tt.input_ids])
    lam = 0.7
    with torch.no_grad():
        plain = tiny_model.hf(input_ids=ids, output_attentions=True).attentions[0][0]
        with RecencyBias(lam).apply(tiny_model):
            biased = tiny_model.hf(input_ids=ids, output_attentions=True).attentions[0][0]
    n = ids.shape[1]
    d = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).float()
    logits = torch.log(plain.clamp_min(1e-30)) - lam * d.clamp(min=0)
    logits = logits.masked_fill(d < 0, float("-inf"))
    torch.testing.assert_close(biased, torch.softmax(logits, -1), atol=1e-5, rtol=1e-4)


def test_a_model_the_transformer_lens_bridge_took_over_is_refused(tiny_dirs):
    """The bridge computes attention itself: an edit that would silently do nothing is an error instead."""
    from mechinterp.interventions.truncation import truncated_sentence_surprisal
    from mechinterp.models import load_model

    model = load_model(str(tiny_dirs["llama"]), cached=False)
    truncated_sentence_surprisal(model, TEXTS[:1], 3, SurprisalConfig(backend="transformer_lens"))
    with pytest.raises(ConfigError, match="did not reach the attention"):
        surprisal(model, RecencyBias(1.0))
    surprisal(model)  # the model itself still runs

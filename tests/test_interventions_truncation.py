"""Context truncation (each word scored with only the last k tokens before it, plus BOS)."""

from __future__ import annotations

import numpy as np
import pytest

from mechinterp.errors import ConfigError
from mechinterp.interventions.compose import sentence_surprisal_under, suite_surprisal_under
from mechinterp.interventions.truncation import Truncation, truncated_sentence_surprisal
from mechinterp.stimuli import load_suite
from mechinterp.surprisal import SurprisalConfig, sentence_surprisal, suite_surprisal

TEXTS = ["The old man the boat every morning.", "While the man hunted the deer ran into the thick woods."]


@pytest.fixture(scope="module")
def suite():
    s = load_suite("mvrr")
    return s.head(4)


@pytest.mark.parametrize("which", ["tiny_model", "tiny_gpt2"])
def test_k_at_least_sentence_length_equals_full_surprisal(which, suite, request):
    model = request.getfixturevalue(which)
    full = suite_surprisal(model, suite, show_progress=False)
    trunc = suite_surprisal_under(model, suite, Truncation(200))
    np.testing.assert_allclose(trunc["surprisal_bits"], full["surprisal_bits"], atol=2e-4)
    np.testing.assert_allclose(trunc["entropy_bits"], full["entropy_bits"], atol=2e-4)
    assert (trunc.drop(columns=["surprisal_bits", "entropy_bits"]) == full.drop(columns=["surprisal_bits", "entropy_bits"])).all().all()


def test_k_zero_scores_each_word_alone(tiny_model):
    """k = 0: a word sees only BOS, so its surprisal is that of the word as a one-word text."""
    import torch

    from mechinterp.tokenization import tokenize_text

    got = truncated_sentence_surprisal(tiny_model, TEXTS[:1], 0)
    tt = tokenize_text(tiny_model.tokenizer, tiny_model.bos_token_id, TEXTS[0])
    assert len(got) == len(tt.words)
    for w, (a, b) in enumerate(tt.word_spans):
        ids = [tiny_model.bos_token_id, *tt.input_ids[a:b]]
        with torch.no_grad():
            lg = tiny_model.hf(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
        lp = sum(float(lg[i - 1, ids[i]]) for i in range(1, len(ids)))
        assert got["surprisal_bits"].iloc[w] == pytest.approx(-lp / np.log(2), abs=1e-3)


def test_truncation_changes_late_words_only(tiny_model):
    full = sentence_surprisal(tiny_model, TEXTS)
    k2 = sentence_surprisal_under(tiny_model, TEXTS, Truncation(2))
    # the first words have at most 2 tokens of context anyway
    np.testing.assert_allclose(k2["surprisal_bits"].iloc[:2], full["surprisal_bits"].iloc[:2], atol=2e-4)
    assert (k2["surprisal_bits"] - full["surprisal_bits"]).abs().max() > 1e-2


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_truncation_on_other_backends(tiny_model, backend):
    a = truncated_sentence_surprisal(tiny_model, TEXTS, 3, SurprisalConfig(backend=backend))
    b = truncated_sentence_surprisal(tiny_model, TEXTS, 3, SurprisalConfig(backend="hf"))
    np.testing.assert_allclose(a["surprisal_bits"], b["surprisal_bits"], atol=2e-3)


def test_truncation_checks(tiny_model):
    with pytest.raises(ConfigError, match="k >= 0"):
        Truncation(-1)
    with pytest.raises(ConfigError, match="leading"):
        truncated_sentence_surprisal(tiny_model, TEXTS, 2, SurprisalConfig(whitespace="trailing"))


@pytest.mark.slow
def test_truncation_on_smollm2(smollm2, sap_classic):
    """Real model: with k=200 the SAP items score as in full context; with k=2 the NP/S garden-path effect at
    the disambiguating word vanishes (its last two tokens are the same noun phrase in both versions)."""
    from mechinterp.effects import garden_path_effects

    sub = sap_classic.model_copy(update={"items": tuple(it for it in sap_classic.items if it.number <= 3)})
    full = suite_surprisal(smollm2, sub, show_progress=False)
    np.testing.assert_allclose(suite_surprisal_under(smollm2, sub, Truncation(200))["surprisal_bits"],
                               full["surprisal_bits"], atol=5e-3)
    k2 = garden_path_effects(suite_surprisal_under(smollm2, sub, Truncation(2)), sub)
    nps = k2[(k2["construction"] == "NP/S") & (k2["roi"] == 0)]
    assert nps["effect_bits"].abs().max() < 0.05
    assert garden_path_effects(full, sub).query("roi == 0")["effect_bits"].mean() > 1.0

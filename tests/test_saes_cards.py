"""Feature cards: contexts from the training text and the stimuli, a sentence, probe cosines (offline)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_no_hooks
from mechinterp.errors import ConfigError
from mechinterp.saes import cards as K
from mechinterp.stimuli import load_suite


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    from mechinterp.saes.corpus import load_corpus
    from mechinterp.saes.train import TrainConfig, train_sae

    cfg = TrainConfig(layer=1, n_tokens=1024, n_holdout_tokens=128, d_sae=32, k=4, steps=8, batch_size=128,
                      holdout_fraction=0.1, sources=("templates",))
    return train_sae(tiny_model, load_corpus(["templates"]), cfg, tmp_path_factory.mktemp("card") / "sae",
                     n_ce_docs=4, n_examples=6)


def _live_feature(sae) -> int:
    import pandas as pd

    ex = pd.read_parquet(sae.path / "top_examples.parquet")
    return int(ex["feature"].value_counts().index[0])


def test_card_contents(trained, tiny_model, tmp_path):
    sae = trained.sae
    feat = _live_feature(sae)
    probe = tmp_path / "probe.npy"
    np.save(probe, sae.decoder_directions[feat].numpy() * 3.0)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"direction": -sae.decoder_directions[feat].contiguous()}, other)
    suites = [load_suite("npz").head(3)]
    card = K.build_card(tiny_model, sae, feat, suites, probes=[probe, other, np.ones(tiny_model.d_model)],
                        cfg=K.CardConfig(n_top=4))
    train = card.contexts[card.contexts["source"] == "training"]
    assert 1 <= len(train) <= 4 and train["activation"].is_monotonic_decreasing
    assert train["where"].str.contains("stored top examples").all()
    stim = card.contexts[card.contexts["source"] == "stimuli"]
    assert stim["where"].str.startswith("npz item").all() and (stim["activation"] > 0).all()
    assert card.probe_cosines["cosine"].round(5).tolist()[:2] == [1.0, -1.0]
    assert len(card.sentence_tokens) == len(card.sentence_acts) and card.sentence in [
        c.text for it in suites[0].items for c in it.conditions] + [card.sentence]
    assert card.top_tokens is not None and len(card.top_tokens) == K.CardConfig().n_top_tokens
    assert card.stats["site"] == "blocks.1.hook_resid_post"
    assert_no_hooks(tiny_model)


def test_sentence_activation_matches_stimulus_scan(trained, tiny_model):
    sae = trained.sae
    suites = [load_suite("mvrr").head(2)]
    scan = K.stimulus_activations(tiny_model, sae, suites)
    text = suites[0].items[0].conditions[0].text
    toks, vals = K.sentence_activations(tiny_model, sae, text, 0)
    first = scan.index["seq"] == 0
    np.testing.assert_allclose(scan.acts[first.to_numpy(), 0], vals, atol=1e-5)
    assert (scan.index["pos"] >= 1).all()


def test_card_scans_corpus_without_stored_examples(trained, tiny_model, tmp_path):
    import shutil

    from mechinterp.saes.load import load_sae

    copy = tmp_path / "sae"
    shutil.copytree(trained.path, copy)
    (copy / "top_examples.parquet").unlink()
    sae = load_sae(copy)
    card = K.build_card(tiny_model, sae, _live_feature(trained.sae), [load_suite("lexcat")],
                        cfg=K.CardConfig(n_top=3, n_docs=40))
    train = card.contexts[card.contexts["source"] == "training"]
    assert train["where"].str.contains("scan of 40 documents").all()


def test_card_errors(trained, tiny_model, tmp_path):
    sae = trained.sae
    with pytest.raises(ConfigError, match="out of range"):
        K.build_card(tiny_model, sae, sae.d_sae, [load_suite("npz")])
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones(tiny_model.d_model + 1))
    with pytest.raises(ConfigError, match="dimensions"):
        K.probe_cosines(sae, 0, [bad])
    with pytest.raises(ConfigError, match="does not exist"):
        K.probe_cosines(sae, 0, [tmp_path / "missing.npy"])
    (tmp_path / "probe.txt").write_text("1 2 3")
    with pytest.raises(ConfigError, match="unknown format"):
        K.probe_cosines(sae, 0, [tmp_path / "probe.txt"])


def test_card_report_is_offline(trained, tiny_model, tmp_path):
    from mechinterp.reports.html import write_report
    from mechinterp.saes.figures import card_blocks

    card = K.build_card(tiny_model, trained.sae, _live_feature(trained.sae), [load_suite("nps")],
                        cfg=K.CardConfig(n_top=3))
    text = write_report(tmp_path / "card.html", "card", card_blocks(card)).read_text()
    assert "<script src=" not in text and "Top contexts in the training text" in text

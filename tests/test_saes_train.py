"""Training with SAE-Lens: synthetic recovery, the centring/b_dec recipe, the saved format, the pipeline."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from mechinterp.errors import ConfigError
from mechinterp.saes.train import TrainConfig, batch_iterator, fit_sae, hook_name, save_sae


def _synthetic(n=12_000, d=24, m=48, offset=80.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=-1)
    codes = (torch.rand(n, m, generator=g) < 0.06).float() * (0.5 + torch.rand(n, m, generator=g) * 2)
    x = codes @ D
    x[:, 0] += offset  # a massive, nearly constant dimension (as in Gemma-3's residual stream)
    return x, D


def test_config_validation():
    with pytest.raises(ValidationError, match="larger than the SAE width"):
        TrainConfig(layer=0, d_sae=8, k=9)
    with pytest.raises(ValidationError, match="larger than the"):
        TrainConfig(layer=0, n_tokens=100, batch_size=200)
    cfg = TrainConfig(layer=3, steps=10, batch_size=64)
    assert cfg.tokens_seen == 640 and hook_name(3, "resid_post") == "blocks.3.hook_resid_post"


def test_batch_iterator_covers_each_epoch():
    data = torch.arange(10.0)[:, None]
    it = batch_iterator(data, 5, seed=0)
    first = torch.cat([next(it), next(it)]).flatten().sort().values
    assert first.tolist() == list(range(10))
    with pytest.raises(ConfigError, match="fewer than one batch"):
        next(batch_iterator(data, 11, 0))


def test_fit_recovers_dictionary_despite_offset():
    """TopK SAE on data with a huge constant offset: centring + b_dec at the mean keeps latents alive, and
    the saved SAE takes raw (uncentred) activations."""
    data, D = _synthetic(n=10_000)
    x, hold = data[:8000], data[8000:]
    cfg = TrainConfig(layer=0, n_tokens=len(x), d_sae=96, k=4, steps=300, batch_size=256, lr=3e-3,
                      dead_feature_window=40, lr_warm_up_steps=5)
    sae, stats = fit_sae(x, cfg, {"model_name": "synthetic", "hook_name": "blocks.0.hook_resid_post"})
    assert type(sae).__name__ == "TopKSAE" and stats.tokens_seen == 300 * 256 and stats.steps == 300
    with torch.no_grad():
        f = sae.encode(hold)
        rec = sae.decode(f)
    fve = 1 - (rec - hold).pow(2).sum() / (hold - hold.mean(0)).pow(2).sum()
    assert fve > 0.7
    assert (f > 0).sum(-1).max() <= 4
    assert ((f > 0).sum(0) == 0).float().mean() < 0.5  # most latents alive
    W = torch.nn.functional.normalize(sae.W_dec.detach(), dim=-1)
    assert (D @ W.T).max(1).values.median() > 0.9  # the true directions were found
    assert torch.allclose(sae.b_dec[0], torch.tensor(80.0), atol=2.0)  # the mean is folded into b_dec


def test_fit_rejects_bad_activations():
    cfg = TrainConfig(layer=0, n_tokens=64, d_sae=8, k=2, steps=1, batch_size=32)
    with pytest.raises(ConfigError, match="2-d"):
        fit_sae(torch.randn(2, 32, 4), cfg)
    bad = torch.randn(64, 4)
    bad[3, 1] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        fit_sae(bad, cfg)


def test_saved_format_loads_with_sae_lens(tmp_path):
    from sae_lens import SAE

    from mechinterp.saes.load import load_sae

    x, _ = _synthetic(n=2048, d=8, m=16)
    cfg = TrainConfig(layer=1, n_tokens=2048, d_sae=16, k=2, steps=5, batch_size=256)
    sae, _ = fit_sae(x, cfg, {"model_name": "m", "hook_name": "blocks.1.hook_resid_post"})
    save_sae(sae, tmp_path / "s", {"tokens_seen": 1280})
    again = SAE.load_from_disk(tmp_path / "s")
    torch.testing.assert_close(again.encode(x[:50]), sae.encode(x[:50]))
    loaded = load_sae(tmp_path / "s")
    assert (loaded.layer, loaded.component, loaded.model_name) == (1, "resid_post", "m")
    assert loaded.training == {"tokens_seen": 1280}


def test_train_pipeline_on_tiny_model(tiny_model, tmp_path):
    """Corpus -> activations (BOS left out) -> SAE -> quality.json and top examples, on the tiny model."""
    from mechinterp.saes.corpus import load_corpus
    from mechinterp.saes.train import train_sae

    corpus = load_corpus(["templates"])
    cfg = TrainConfig(layer=1, n_tokens=2048, n_holdout_tokens=256, d_sae=64, k=4, steps=20, batch_size=128,
                      holdout_fraction=0.1, sources=("templates",))
    res = train_sae(tiny_model, corpus, cfg, tmp_path / "sae", n_ce_docs=12, n_examples=5)
    q = json.loads((tmp_path / "sae" / "quality.json").read_text())
    assert q == res.quality
    assert q["tokens_seen"] == 20 * 128 and q["heldout"]["n_tokens"] == 256
    assert q["heldout"]["l0"] == pytest.approx(4.0, abs=0.01)
    assert 0 <= q["heldout"]["dead_fraction"] <= 1 and len(q["log10_density"]) == 64
    s = q["spliced"]
    assert s["n_tokens"] > 0 and s["ce_clean"] > 0
    assert s["ce_recovered_vs_zero"] == pytest.approx((s["ce_zero"] - s["ce_sae"]) / (s["ce_zero"] - s["ce_clean"]))
    training = json.loads((tmp_path / "sae" / "training.json").read_text())
    assert training["corpus"]["sha256"] == corpus.sha256 and training["cached_train_tokens"] == 2048
    assert training["provenance"]["model"]["weights_sha256"] == tiny_model.weights_sha256
    ex = pd.read_parquet(tmp_path / "sae" / "top_examples.parquet")
    assert (ex["pos"] >= 1).all() and (ex["activation"] > 0).all()  # BOS never among the examples
    assert ex.groupby("feature")["rank"].max().max() <= 4
    # the stored token id is the corpus token at that position
    from mechinterp.saes.activations import doc_sequence

    r = ex.iloc[0]
    seq = doc_sequence(tiny_model, corpus.documents[int(r["doc"])].text, cfg.context_size)
    assert seq.input_ids[int(r["pos"])] == int(r["token_id"])
    with pytest.raises(ConfigError, match="not an SAE directory"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "x.txt").write_text("x")
        train_sae(tiny_model, corpus, cfg, tmp_path / "other")


def test_activations_leave_bos_out_and_match_sites(tiny_model):
    from mechinterp.locate.activations import collect_rows
    from mechinterp.locate.sites import Site
    from mechinterp.saes.activations import corpus_activations, doc_sequence
    from mechinterp.saes.corpus import template_corpus

    corpus = template_corpus(20)
    acts = corpus_activations(tiny_model, corpus, [3, 1, 2], 0, "resid_post", n_tokens=None, chunk_docs=2)
    seqs = {i: doc_sequence(tiny_model, corpus.documents[i].text, 64) for i in (1, 2, 3)}
    assert len(acts) == sum(len(s) - 1 for s in seqs.values()) and (acts.pos >= 1).all()
    # every row equals the site's activation at that (document, position)
    site = Site(0, "resid_post")
    ref = collect_rows(tiny_model, [seqs[3]], [site])
    rows = ref.rows[site]
    want = ref.tensors[site][rows[:, 1] == 2][0]
    got = acts.acts[(acts.doc == 3) & (acts.pos == 2)][0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="fewer than"):
        corpus_activations(tiny_model, corpus, [0], 0, "resid_post", n_tokens=10_000)


def test_context_size_truncates_at_word_boundary(tiny_model):
    from mechinterp.saes.activations import doc_sequence

    text = " ".join(["word"] * 200)
    seq = doc_sequence(tiny_model, text, 16)
    assert len(seq) <= 16 and seq.text.split() == ["word"] * len(seq.words)

"""The SAE spliced into the model: exact forward pass, surprisal, gradients, no hooks left; and quality."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_no_hooks
from mechinterp.forward import pad_batch
from mechinterp.saes.load import load_sae
from mechinterp.saes.splice import spliced, word_surprisal
from mechinterp.stimuli import load_suite
from mechinterp.tokenization import tokenize_condition
from test_saes_load import perfect_sae


@pytest.fixture(scope="module")
def topk_sae(tiny_model, tmp_path_factory):
    """A random TopK SAE on the tiny model's layer 0 (reconstruction far from perfect: tests the error term)."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=tiny_model.d_model, d_sae=96, k=6,
                                metadata=SAEMetadata(hook_name="blocks.0.hook_resid_post")))
    path = tmp_path_factory.mktemp("sae") / "topk"
    sae.save_model(path)
    return load_sae(path)


def _npz(model, n=4):
    suite = load_suite("npz")
    return [it for it in suite.items[:n]], suite


def test_splice_with_error_term_leaves_logits_unchanged(tiny_model, topk_sae):
    items, _ = _npz(tiny_model)
    seqs = [tokenize_condition(tiny_model, it.conditions[0]).input_ids for it in items]
    b = pad_batch(seqs, tiny_model.pad_token_id)
    kw = dict(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids, use_cache=False)
    with torch.no_grad():
        clean = tiny_model.hf(**kw).logits
        with spliced(tiny_model, topk_sae) as box:
            out = tiny_model.hf(**kw).logits
    torch.testing.assert_close(out, clean, atol=1e-4, rtol=1e-4)
    assert box.f.shape == (len(seqs), b.input_ids.shape[1], 96)
    assert ((box.f > 0).sum(-1) <= 6).all()
    assert_no_hooks(tiny_model)


def test_hooks_removed_after_error(tiny_model, topk_sae):
    with pytest.raises(RuntimeError, match="boom"):
        with spliced(tiny_model, topk_sae):
            raise RuntimeError("boom")
    assert_no_hooks(tiny_model)


def test_word_surprisal_matches_suite_surprisal(tiny_model, topk_sae):
    from mechinterp.surprisal import suite_surprisal

    items, suite = _npz(tiny_model, 3)
    small = suite.model_copy(update={"items": tuple(items)})
    words = suite_surprisal(tiny_model, small, show_progress=False)
    dis = suite.ambiguity.disambiguating_region
    for it in items:
        c = it.conditions[1]
        tok = tokenize_condition(tiny_model, c)
        s, _, _ = word_surprisal(tiny_model, topk_sae, [tok], [tok.tokens_of_region(dis)])
        want = words[(words["item"] == it.number) & (words["condition"] == c.name) & (words["region"] == dis)]
        assert float(s[0]) / torch.log(torch.tensor(2.0)).item() == pytest.approx(want["surprisal_bits"].sum(), abs=1e-3)


def test_feature_gradients_match_finite_differences(tiny_model, topk_sae):
    items, suite = _npz(tiny_model, 2)
    dis = suite.ambiguity.disambiguating_region
    toks = [tokenize_condition(tiny_model, it.conditions[0]) for it in items]
    tg = [t.tokens_of_region(dis) for t in toks]
    s0, box, _ = word_surprisal(tiny_model, topk_sae, toks, tg, grad=True)
    f, g = box.f.detach(), box.f.grad
    # pick an active feature at a position before the disambiguator in row 0
    pos = tg[0][0] - 1
    feat = int(torch.nonzero(f[0, pos] > 0)[0])
    eps = 1e-2

    def bump(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[0, pos, feat] += eps
        return y

    with torch.no_grad():
        s1, _, _ = word_surprisal(tiny_model, topk_sae, toks, tg, edit=bump)
    assert float(s1[0] - s0[0]) / eps == pytest.approx(float(g[0, pos, feat]), rel=0.05, abs=1e-4)
    assert float(s1[1]) == pytest.approx(float(s0[1]), abs=1e-6)  # rows are independent
    # the error term carries a gradient too
    assert box.err.grad is not None and box.err.grad[0, pos].abs().sum() > 0
    assert_no_hooks(tiny_model)


def test_quality_of_a_perfect_sae(tiny_model, tmp_path):
    """An SAE that reconstructs exactly: FVE 1, CE equal to clean, 100% recovered, KL 0."""
    from mechinterp.saes.activations import corpus_activations, doc_sequence
    from mechinterp.saes.corpus import template_corpus
    from mechinterp.saes.quality import quality_record, reconstruction_stats, splice_stats

    sae = load_sae(perfect_sae(tmp_path / "p", tiny_model.d_model, layer=1))
    corpus = template_corpus(30)
    acts = corpus_activations(tiny_model, corpus, list(range(30)), 1, "resid_post", n_tokens=None)
    rec = reconstruction_stats(sae, acts.acts)
    assert rec.fve == pytest.approx(1.0, abs=1e-5) and rec.cosine == pytest.approx(1.0, abs=1e-5)
    assert 0 <= rec.dead_fraction <= 1 and len(rec.log10_density) == sae.d_sae
    seqs = [doc_sequence(tiny_model, corpus.documents[i].text, 64) for i in range(8)]
    sp = splice_stats(tiny_model, sae, seqs, mean=acts.acts.mean(0), batch_size=3)
    assert sp.ce_sae == pytest.approx(sp.ce_clean, abs=1e-4) and sp.kl_sae == pytest.approx(0.0, abs=1e-5)
    assert sp.ce_recovered_vs_zero == pytest.approx(1.0, abs=1e-3)
    assert sp.kl_zero > 0 and sp.kl_mean > 0
    assert sp.n_tokens == sum(len(s) - 2 for s in seqs)
    q = quality_record(rec, sp, site="x")
    assert q["spliced"]["ce_recovered_vs_mean"] == pytest.approx(1.0, abs=1e-3) and "log10_density" in q
    assert_no_hooks(tiny_model)


def test_zero_ablation_really_zeroes_the_site(tiny_model, tmp_path):
    """ce_zero is the CE with the site set to zero at non-BOS positions (checked by hand)."""
    from mechinterp.locate.hooks import write_site
    from mechinterp.locate.sites import Site
    from mechinterp.saes.quality import splice_stats
    from mechinterp.tokenization import tokenize_text

    sae = load_sae(perfect_sae(tmp_path / "p", tiny_model.d_model, layer=0))
    seq = tokenize_text(tiny_model.tokenizer, tiny_model.bos_token_id, "The farmer found the old map again.")

    def zero(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[:, 1:] = 0
        return y

    ids = torch.tensor([seq.input_ids])
    with torch.no_grad(), write_site(tiny_model, Site(0, "resid_post"), zero):
        lp = torch.log_softmax(tiny_model.hf(input_ids=ids).logits[0, 1:-1].float(), -1)
    want = -lp.gather(-1, ids[0, 2:, None]).mean()
    sp = splice_stats(tiny_model, sae, [seq], mean=torch.zeros(tiny_model.d_model))
    assert sp.ce_zero == pytest.approx(float(want), abs=1e-4)
    assert sp.ce_mean == pytest.approx(sp.ce_zero, abs=1e-5)  # the mean given here is zero

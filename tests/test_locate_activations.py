"""Reading sites: the definition of each component, padding/batch invariance, and parity across the three backends."""

from __future__ import annotations

import pytest
import torch

from mechinterp.errors import ConfigError, RegionError
from mechinterp.locate.activations import collect, collect_rows, collect_tokens
from mechinterp.locate.hooks import base_model, block_part, layout_of, read_site
from mechinterp.locate.sites import COMPONENTS, RegionPos, Site, TokenPos, parse_sites
from mechinterp.stimuli import load_suite
from mechinterp.tokenization import tokenize_condition

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def npz():
    return load_suite("npz")


def _seqs(model, suite, n_items=3):
    return [tokenize_condition(model, c) for it in suite.head(n_items).items for c in it.conditions]


# ---- definitions ----------------------------------------------------------------------------------
ALL = "resid_pre|resid_mid|resid_post|attn_out|mlp_out@*:token=-1,head_out@*:token=-1"


@pytest.mark.parametrize("which", ["tiny_model", "tiny_gpt2"])
def test_component_definitions(which, request, npz):
    model = request.getfixturevalue(which)
    seqs = _seqs(model, npz, 2)
    sites = parse_sites(ALL, model.n_layers, model.n_heads)
    got = collect(model, seqs, sites, batch_size=4)
    # resid_pre(L) / resid_post(L) are the HF hidden states entering / leaving block L
    hs = []
    for s in seqs:
        ids = torch.tensor([s.input_ids])
        hs.append(model.hf(input_ids=ids, output_hidden_states=True).hidden_states)
    for L in range(model.n_layers):
        want_pre = torch.stack([h[L][0, -1] for h in hs])
        torch.testing.assert_close(got[Site(L, "resid_pre", TokenPos(-1))], want_pre, rtol=0, atol=1e-6)
        pre, mid, post = (got[Site(L, c, TokenPos(-1))] for c in ("resid_pre", "resid_mid", "resid_post"))
        attn, mlp = got[Site(L, "attn_out", TokenPos(-1))], got[Site(L, "mlp_out", TokenPos(-1))]
        torch.testing.assert_close(mid, pre + attn, rtol=0, atol=1e-6)
        torch.testing.assert_close(post, mid + mlp, rtol=0, atol=1e-6)
        heads = sum(got[Site(L, "head_out", TokenPos(-1), h)] for h in range(model.n_heads))
        o = block_part(model, L, layout_of(model).o_proj)
        bias = o.bias if getattr(o, "bias", None) is not None else 0.0
        torch.testing.assert_close(heads + bias, attn, rtol=0, atol=1e-5)
    # the last resid_post is the final hidden state before the final norm
    last = torch.stack([h[-1][0, -1] for h in hs])
    final_norm = base_model(model).norm if hasattr(base_model(model), "norm") else base_model(model).ln_f
    torch.testing.assert_close(final_norm(got[Site(model.n_layers - 1, "resid_post", TokenPos(-1))]), last,
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("which", ["tiny_model", "tiny_gpt2"])
def test_collect_is_padding_and_batch_invariant(which, request, npz):
    model = request.getfixturevalue(which)
    seqs = _seqs(model, npz, 3)
    sites = parse_sites("resid_post|mlp_out@*:region=np/last+verb/mean,attn_out@1:region=np/all", model.n_layers)
    a = collect(model, seqs, sites, batch_size=1, suite=npz)
    b = collect(model, seqs, sites, batch_size=6, suite=npz)
    for s in sites:
        torch.testing.assert_close(a[s], b[s], rtol=0, atol=2e-6)
        if s.position.which != "all":
            assert a[s].shape == (len(seqs), model.d_model)
    allsite = Site(1, "attn_out", RegionPos("np", "all"))
    rows = collect_rows(model, seqs, [allsite], suite=npz).rows[allsite]
    want = [(i, t) for i, s in enumerate(seqs) for t in s.tokens_of_region(4)]
    assert [tuple(r) for r in rows.tolist()] == want


def test_collect_stops_after_last_needed_layer(tiny_model, npz):
    seqs = _seqs(tiny_model, npz, 1)
    with read_site(tiny_model, tiny_model.hf.lm_head) as head, read_site(tiny_model, Site(1, "resid_pre")) as pre1, \
            read_site(tiny_model, Site(1, "attn_out")) as attn1:
        collect(tiny_model, seqs, [Site(1, "resid_pre", TokenPos(-1))])
    assert not head.values and not attn1.values and len(pre1.values) == 1


def test_collect_missing_region(tiny_model):
    mvrr = load_suite("mvrr")
    seqs = _seqs(tiny_model, mvrr, 2)
    site = Site(0, "resid_post", RegionPos("cue"))
    with pytest.raises(RegionError, match="empty"):
        collect(tiny_model, seqs, [site], suite=mvrr)
    got = collect_rows(tiny_model, seqs, [site], suite=mvrr, missing="skip")
    assert got.rows[site][:, 0].tolist() == [1, 3]  # only the unambiguous conditions have a cue


def test_collect_tokens(tiny_model, npz):
    seqs = _seqs(tiny_model, npz, 2)
    x = collect_tokens(tiny_model, seqs, 1, "resid_mid", batch_size=3)
    assert x.shape == (sum(len(s) - 1 for s in seqs), tiny_model.d_model)
    with_bos = collect_tokens(tiny_model, seqs, 1, "resid_mid", skip_bos=False)
    assert with_bos.shape[0] == sum(len(s) for s in seqs)
    torch.testing.assert_close(with_bos[1 : len(seqs[0])], x[: len(seqs[0]) - 1])


def test_bad_sites_raise(tiny_model, npz):
    seqs = _seqs(tiny_model, npz, 1)
    with pytest.raises(ConfigError, match="out of range"):
        collect(tiny_model, seqs, [Site(5, "resid_pre", TokenPos(0))])
    with pytest.raises(ConfigError, match="head"):
        collect(tiny_model, seqs, [Site(0, "head_out", TokenPos(0))])
    with pytest.raises(ConfigError, match="backend"):
        collect(tiny_model, seqs, [Site(0, "resid_pre", TokenPos(0))], backend="jax")  # type: ignore[arg-type]


# ---- parity across backends -------------------------------------------------------------------------
def _parity(model, suite, spec, n_items, atol):
    seqs = _seqs(model, suite, n_items)
    sites = parse_sites(spec, model.n_layers, model.n_heads)
    ref = collect(model, seqs, sites, backend="hf", batch_size=4, suite=suite)
    for backend in ("transformer_lens", "nnsight"):
        got = collect(model, seqs, sites, backend=backend, batch_size=4, suite=suite)
        for s in sites:
            torch.testing.assert_close(got[s], ref[s], rtol=0, atol=atol, msg=f"{backend} {s}")
    return ref


@pytest.mark.parametrize("which", ["tiny_model", "tiny_gpt2"])
def test_backend_parity_tiny(which, request, npz):
    model = request.getfixturevalue(which)
    spec = "resid_pre|resid_mid|resid_post|attn_out|mlp_out@*:region=np/last+verb/mean,head_out@*:token=-1"
    _parity(model, npz, spec, 3, atol=1e-6)
    assert set(COMPONENTS) == {"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head_out"}


@pytest.mark.slow
def test_backend_parity_smollm2(smollm2, npz):
    _parity(smollm2, npz, "resid_pre|resid_mid|resid_post|attn_out|mlp_out@0+14+29:region=np/last,head_out@5:token=-1:head=0+8", 2, atol=1e-4)


@pytest.mark.slow
def test_backend_parity_and_definitions_gemma(gemma, npz):
    spec = "resid_pre|resid_mid|resid_post|attn_out|mlp_out@0+6+17:region=np/last,head_out@6:region=np/last"
    ref = _parity(gemma, npz, spec, 2, atol=1e-3)
    seqs = _seqs(gemma, npz, 2)
    # resid_pre(0) is the embedding after Gemma's sqrt(d_model) scale
    ids = torch.tensor([[*seqs[0].input_ids]])
    raw = base_model(gemma).embed_tokens.weight[ids[0, seqs[0].last_token_of_region(4)]]
    pos = RegionPos("np")
    torch.testing.assert_close(ref[Site(0, "resid_pre", pos)][0], raw * gemma.d_model ** 0.5, rtol=1e-5, atol=1e-4)
    # attn_out is after post_attention_layernorm: the norm of the sum of head terms
    heads = sum(ref[Site(6, "head_out", pos, h)] for h in range(gemma.n_heads))
    norm = block_part(gemma, 6, "post_attention_layernorm")
    torch.testing.assert_close(norm(heads), ref[Site(6, "attn_out", pos)], rtol=1e-4, atol=1e-2)


# ---- shared rows (share=True) -------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["hf", "transformer_lens", "nnsight"])
def test_share_keeps_one_tensor_for_the_same_memory(tiny_model, npz, backend):
    seqs = _seqs(tiny_model, npz, 3)
    sites = parse_sites("resid_pre|resid_mid|resid_post@*:region=np/all+verb/last", tiny_model.n_layers)
    plain = collect_rows(tiny_model, seqs, sites, backend, batch_size=2, suite=npz).tensors
    shared = collect_rows(tiny_model, seqs, sites, backend, batch_size=2, suite=npz, share=True).tensors
    for s in sites:
        torch.testing.assert_close(shared[s], plain[s], rtol=0, atol=0, msg=str(s))
    for pos in (RegionPos("np", "all"), RegionPos("verb", "last")):
        for L in range(tiny_model.n_layers - 1):
            post, pre = Site(L, "resid_post", pos), Site(L + 1, "resid_pre", pos)
            assert shared[post] is shared[pre] and plain[post] is not plain[pre]
    # per position: resid_pre@0, every resid_mid, and every resid_post are distinct memory
    assert len({id(t) for t in shared.values()}) == 2 * (2 * tiny_model.n_layers + 1)


def test_share_splits_when_memory_differs_in_a_later_batch(tiny_model, npz, monkeypatch):
    """Sites shared after the first batch get their own copy as soon as a batch reads different memory."""
    import mechinterp.locate.activations as act

    seqs = _seqs(tiny_model, npz, 3)
    sites = parse_sites("resid_pre|resid_post@*:region=np/all", tiny_model.n_layers)
    plain = collect_rows(tiny_model, seqs, sites, batch_size=2, suite=npz).tensors
    n_batches = [0]
    real_pad, real_same = act.pad_batch, act._same_memory

    def counting_pad(*a, **k):
        n_batches[0] += 1
        return real_pad(*a, **k)

    monkeypatch.setattr(act, "pad_batch", counting_pad)
    monkeypatch.setattr(act, "_same_memory", lambda *a: n_batches[0] == 1 and real_same(*a))
    shared = collect_rows(tiny_model, seqs, sites, batch_size=2, suite=npz, share=True).tensors
    assert n_batches[0] == 3
    for s in sites:
        torch.testing.assert_close(shared[s], plain[s], rtol=0, atol=0, msg=str(s))
    assert len({id(t) for t in shared.values()}) == len(sites)

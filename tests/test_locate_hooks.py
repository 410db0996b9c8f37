"""Hooks: they fire on every backend, write what they say, and never outlive their context (even on error)."""

from __future__ import annotations

import pytest
import torch

from conftest import hook_snapshot
from mechinterp.forward import logits, pad_batch
from mechinterp.locate.activations import collect
from mechinterp.locate.hooks import (
    at_positions,
    block_part,
    layout_of,
    read_site,
    read_sites,
    run_until,
    write_site,
)
from mechinterp.locate.sites import Site, TokenPos
from mechinterp.stimuli import load_suite
from mechinterp.tokenization import tokenize_condition

pytestmark = pytest.mark.usefixtures("one_torch_thread")


BACKENDS = ("hf", "transformer_lens", "nnsight")


@pytest.fixture(scope="module")
def batch(tiny_model):
    suite = load_suite("npz")
    seqs = [tokenize_condition(tiny_model, c) for c in suite.items[0].conditions]
    return pad_batch([s.input_ids for s in seqs], tiny_model.pad_token_id)


def _run(model, batch, backend):
    # warm every backend once so that library hooks exist before snapshots are taken
    return logits(model, batch, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_and_write_fire_on_every_backend(tiny_model, batch, backend):
    _run(tiny_model, batch, backend)
    before = hook_snapshot(tiny_model)
    site = Site(1, "mlp_out")
    with read_site(tiny_model, site) as cap:
        base = _run(tiny_model, batch, backend)
    assert cap.value.shape == (*batch.input_ids.shape, tiny_model.d_model)
    with write_site(tiny_model, site, lambda x: torch.zeros_like(x)), read_site(tiny_model, site) as cap2:
        ablated = _run(tiny_model, batch, backend)
    assert cap2.value.abs().max() == 0  # a read registered after a write sees the written value
    assert not torch.allclose(base, ablated)
    assert hook_snapshot(tiny_model) == before
    ref = _run(tiny_model, batch, "hf")
    torch.testing.assert_close(base, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("component", ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head_out"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_hooks_removed_after_exception(tiny_model, batch, component, backend):
    _run(tiny_model, batch, backend)
    before = hook_snapshot(tiny_model)
    site = Site(0, component, head=2 if component == "head_out" else None)

    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with write_site(tiny_model, site, boom):
            _run(tiny_model, batch, backend)
    assert hook_snapshot(tiny_model) == before
    with pytest.raises(ValueError, match="outside"):
        with read_sites(tiny_model, [site, Site(1, "resid_post")]):
            _run(tiny_model, batch, backend)
            raise ValueError("outside the forward")
    assert hook_snapshot(tiny_model) == before


@pytest.mark.parametrize("which", ["tiny_model", "tiny_gpt2"])
def test_identity_writes_change_nothing(which, request):
    model = request.getfixturevalue(which)
    suite = load_suite("npz")
    seqs = [tokenize_condition(model, c) for c in suite.items[0].conditions]
    b = pad_batch([s.input_ids for s in seqs], model.pad_token_id)
    ref = logits(model, b)
    for comp in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head_out"):
        site = Site(1, comp, head=1 if comp == "head_out" else None)
        with write_site(model, site, lambda x: x.clone()):
            torch.testing.assert_close(logits(model, b), ref, rtol=0, atol=1e-5)


def test_write_resid_mid_is_seen_downstream(tiny_model, batch):
    """Writing resid_mid(L) changes both the MLP input and the residual the block carries on."""
    v = torch.randn(tiny_model.d_model)
    site = Site(0, "resid_mid")
    with read_site(tiny_model, site) as orig, read_site(tiny_model, Site(0, "mlp_out")) as mlp0:
        logits(tiny_model, batch)
    want = orig.value + v
    norm = block_part(tiny_model, 0, layout_of(tiny_model).mlp_norm)
    with write_site(tiny_model, site, lambda x: x + v), read_site(tiny_model, norm) as _, \
            read_site(tiny_model, Site(0, "resid_post")) as post, read_site(tiny_model, Site(0, "mlp_out")) as mlp:
        logits(tiny_model, batch)
    torch.testing.assert_close(post.value, want + mlp.value, rtol=0, atol=1e-5)
    assert not torch.allclose(mlp.value, mlp0.value)  # the MLP saw the new resid_mid
    # TransformerLens's own hook_resid_mid (ln2.hook_in) sees the written value too
    with write_site(tiny_model, site, lambda x: x + v):
        _, cache = tiny_model.tl.run_with_cache(batch.input_ids, attention_mask=batch.attention_mask,
                                                names_filter=["blocks.0.hook_resid_mid"], stop_at_layer=1)
    real = batch.attention_mask.bool()  # pad positions differ between backends and do not matter
    torch.testing.assert_close(cache["blocks.0.hook_resid_mid"][real], want[real], rtol=0, atol=1e-5)


def test_write_head_equals_editing_its_z_slice(tiny_model, batch):
    L, h, dh = 1, 2, tiny_model.d_head
    with write_site(tiny_model, Site(L, "head_out", head=h), lambda x: torch.zeros_like(x)):
        a = logits(tiny_model, batch)
    o_proj = block_part(tiny_model, L, layout_of(tiny_model).o_proj)

    def zero_z(_m, args):
        z = args[0].clone()
        z[..., h * dh : (h + 1) * dh] = 0
        return (z,)

    handle = o_proj.register_forward_pre_hook(zero_z)
    try:
        b = logits(tiny_model, batch)
    finally:
        handle.remove()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_at_positions_and_run_until(tiny_model, batch):
    site = Site(1, "resid_pre")
    vals = torch.ones(2, tiny_model.d_model)
    with write_site(tiny_model, site, at_positions([0, 1], [3, 2], vals)), read_site(tiny_model, Site(0, "resid_post")) as before_w, \
            read_site(tiny_model, site) as after_w:
        out = run_until(tiny_model, 1, before=False, input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    assert out is None
    assert torch.equal(after_w.value[0, 3], vals[0]) and torch.equal(after_w.value[1, 2], vals[1])
    # untouched elsewhere (resid_pre(1) is resid_post(0) before the write)
    mask = torch.ones(after_w.value.shape[:2], dtype=torch.bool)
    mask[0, 3] = mask[1, 2] = False
    torch.testing.assert_close(after_w.value[mask], before_w.value[mask])


def test_sites_write_through_collect(tiny_model):
    """collect (a read) sees an active write: interventions compose with caching."""
    suite = load_suite("npz")
    seqs = [tokenize_condition(tiny_model, suite.items[0].conditions[0])]
    s = Site(1, "resid_post", TokenPos(-1))
    with write_site(tiny_model, Site(1, "resid_post"), lambda x: x * 0 + 3.0):
        got = collect(tiny_model, seqs, [s])[s]
    assert torch.all(got == 3.0)

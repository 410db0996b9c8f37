"""Activation cache: contents, reuse, resume after interruption, atomic shards, lazy loading, corruption."""

from __future__ import annotations

import json

import pytest
import safetensors
import torch

import mechinterp.locate.cache as cache_module
from mechinterp.errors import CacheError
from mechinterp.locate.activations import collect
from mechinterp.locate.cache import (
    ActivationCache,
    CacheConfig,
    build_cache,
    cache_key,
    parse_cache_sites,
)
from mechinterp.locate.sites import RegionPos, Site
from mechinterp.stimuli import load_suite
from mechinterp.tokenization import tokenize_condition

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def subset(suite, n):
    """The first n items as a new Suite (model_copy would keep the cached sha256 of the full suite)."""
    d = suite.model_dump()
    return type(suite).model_validate({**d, "items": d["items"][:n]})


@pytest.fixture(scope="module")
def small_suite():
    return subset(load_suite("mvrr"), 3)


SPEC = "resid_post@0+1:region=verb/last,mlp_out@1:region=cue/last,resid_pre@1:region=subject/all"


def _build(model, suite, out, **kw):
    sites = parse_cache_sites(SPEC, model, suite)
    return build_cache(model, suite, sites, out, CacheConfig(shard_size=2, batch_size=2), **kw)


def test_contents_and_rows(tiny_model, small_suite, tmp_path):
    cache, reused = _build(tiny_model, small_suite, tmp_path)
    assert not reused and cache.manifest["n_shards"] == 3  # 6 sequences, 2 per shard
    seqs = [tokenize_condition(tiny_model, c) for it in small_suite.items for c in it.conditions]
    verb = Site(1, "resid_post", RegionPos("verb"))
    want = collect(tiny_model, seqs, [verb], suite=small_suite)[verb]
    torch.testing.assert_close(cache.get(verb), want)
    rows = cache.rows(verb)
    assert list(rows.item) == ["1", "1", "2", "2", "3", "3"]
    assert list(rows.condition) == ["ambiguous", "unambiguous"] * 3
    assert set(rows.region) == {3}
    assert list(rows.token) == [s.last_token_of_region(3) for s in seqs]
    assert rows.token_str[0].endswith("raced")
    # the cue exists only in the unambiguous condition: one row per unambiguous sentence
    cue = Site(1, "mlp_out", RegionPos("cue"))
    assert cache.shape(cue) == (3, tiny_model.d_model)
    assert set(cache.rows(cue).condition) == {"unambiguous"}
    # 'all' positions: one row per token of the region
    subj = Site(1, "resid_pre", RegionPos("subject", "all"))
    assert cache.shape(subj)[0] == sum(len(s.tokens_of_region(1)) for s in seqs) == len(cache.rows(subj))
    prov = cache.provenance
    assert prov["model"]["weights_sha256"] == tiny_model.weights_sha256
    assert prov["suite"]["sha256"] == small_suite.sha256


def test_reuse_same_inputs_and_new_key_for_new_inputs(tiny_model, small_suite, tmp_path):
    a, _ = _build(tiny_model, small_suite, tmp_path)
    calls = []
    b, reused = _build(tiny_model, small_suite, tmp_path, on_shard=lambda d, n: calls.append(d))
    assert reused and not calls and b.root == a.root
    sites = parse_cache_sites(SPEC, tiny_model, small_suite)
    k1 = cache_key(tiny_model, small_suite, sites, CacheConfig(shard_size=2))
    assert k1 == cache_key(tiny_model, small_suite, sites, CacheConfig(shard_size=2, batch_size=7))  # batch: no
    assert k1 != cache_key(tiny_model, small_suite, sites[:1], CacheConfig(shard_size=2))
    assert k1 != cache_key(tiny_model, small_suite, sites, CacheConfig(shard_size=2, store_dtype="float16"))
    other = subset(small_suite, 2)
    assert k1 != cache_key(tiny_model, other, sites, CacheConfig(shard_size=2))


def test_resume_after_interruption(tiny_model, small_suite, tmp_path):
    class Interrupt(Exception):
        pass

    def stop_after_first(done, total):
        if done == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        _build(tiny_model, small_suite, tmp_path / "a", on_shard=stop_after_first)
    root = next((tmp_path / "a").iterdir())
    m = json.loads((root / "manifest.json").read_text())
    assert not m["complete"] and len(m["shards"]) == 1
    assert sorted(p.name for p in root.iterdir() if p.name != ".lock") == ["manifest.json", "shard-00000.safetensors"]
    with pytest.raises(CacheError, match="incomplete"):
        ActivationCache.open(root)  # a reader never sees a partial cache
    first_bytes = (root / "shard-00000.safetensors").read_bytes()
    # a crash mid-write leaves only a temporary file, which the next run discards
    (root / ".shard-00001.safetensors.999.tmp").write_bytes(b"half a shard")
    calls = []
    cache, reused = _build(tiny_model, small_suite, tmp_path / "a", on_shard=lambda d, n: calls.append(d))
    assert not reused and calls == [2, 3]  # only the two missing shards were computed
    assert (root / "shard-00000.safetensors").read_bytes() == first_bytes
    assert not list(root.glob(".*.tmp"))
    ref, _ = _build(tiny_model, small_suite, tmp_path / "b")
    for s in ref.sites:
        torch.testing.assert_close(cache.get(s), ref.get(s))
        assert cache.rows(s).drop(columns="shard").equals(ref.rows(s).drop(columns="shard"))


def test_lazy_loading(tiny_model, small_suite, tmp_path, monkeypatch):
    built, _ = _build(tiny_model, small_suite, tmp_path)
    opened, read = [], []
    real = safetensors.safe_open

    class Spy:
        def __init__(self, path, framework):
            opened.append(path)
            self.f = real(path, framework=framework)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *a):
            return self.f.__exit__(*a)

        def get_tensor(self, name):
            read.append(name)
            return self.f.get_tensor(name)

    monkeypatch.setattr(cache_module, "safe_open", Spy)  # the name the cache reads shards with
    cache = ActivationCache.open(built.root)
    assert not opened  # opening reads the manifest only
    site = cache.sites[0]
    x = cache.get(site)
    assert set(read) == {str(site)} and len(opened) == 3  # one site, each shard once
    assert x.shape == cache.shape(site)


def test_corrupt_shard_and_manifest(tiny_model, small_suite, tmp_path):
    cache, _ = _build(tiny_model, small_suite, tmp_path)
    shard = cache.root / "shard-00001.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CacheError, match="shard-00001.safetensors.*delete"):
        ActivationCache.open(cache.root)
    with pytest.raises(CacheError, match="shard-00001"):
        _build(tiny_model, small_suite, tmp_path)  # a resume does not silently trust it either
    # same size, garbage header: caught when read
    shard.write_bytes(b"\xff" * len(data))
    c2 = ActivationCache.open(cache.root)
    with pytest.raises(CacheError, match="shard-00001.*corrupt"):
        c2.get(c2.sites[0])
    # flipped data bytes: caught by verify()
    bad = bytearray(data)
    bad[-5] ^= 0xFF
    shard.write_bytes(bytes(bad))
    with pytest.raises(CacheError, match="sha256"):
        ActivationCache.open(cache.root).verify()
    # following the fix (delete the shard, run again) repairs it
    shard.unlink()
    fixed, reused = _build(tiny_model, small_suite, tmp_path)
    assert not reused
    fixed.verify()
    (cache.root / "manifest.json").write_text('{"format": "mechinterp-activation-cache/1", "key": ')
    with pytest.raises(CacheError, match="manifest.json is corrupt.*delete"):
        ActivationCache.open(cache.root)
    with pytest.raises(CacheError, match="not an activation cache"):
        ActivationCache.open(tmp_path / "nowhere")


def test_same_memory_is_stored_once(tiny_model, small_suite, tmp_path):
    sites = parse_cache_sites("resid_pre|resid_post@*:region=verb/last", tiny_model, small_suite)
    cache, _ = build_cache(tiny_model, small_suite, sites, tmp_path, CacheConfig(shard_size=4, batch_size=2))
    seqs = [tokenize_condition(tiny_model, c) for it in small_suite.items for c in it.conditions]
    want = collect(tiny_model, seqs, sites, batch_size=2, suite=small_suite)
    for s in sites:
        torch.testing.assert_close(cache.get(s), want[s])
    n = tiny_model.n_layers
    for sh in cache.manifest["shards"]:  # resid_pre@L+1 is resid_post@L: n - 1 aliases, n + 1 stored tensors
        assert len(sh["aliases"]) == n - 1
        with safetensors.safe_open(str(cache.root / sh["file"]), framework="pt") as f:
            assert len(list(f.keys())) == n + 1
    cache.verify()
    # a cache written before aliases existed (format /1) still opens
    plain_sites = parse_cache_sites("resid_post@*:region=verb/last", tiny_model, small_suite)
    old, _ = build_cache(tiny_model, small_suite, plain_sites, tmp_path / "old", CacheConfig(shard_size=4, batch_size=2))
    m_old = json.loads((old.root / "manifest.json").read_text())
    m_old["format"] = "mechinterp-activation-cache/1"
    for sh in m_old["shards"]:
        sh.pop("aliases")
    (old.root / "manifest.json").write_text(json.dumps(m_old))
    reopened = ActivationCache.open(old.root)
    torch.testing.assert_close(reopened.get(plain_sites[0]), want[plain_sites[0]])


@pytest.mark.slow
def test_cache_gemma_matches_collect(gemma, tmp_path):
    suite = subset(load_suite("npz"), 2)
    sites = parse_cache_sites("resid_post@3+9:region=np/last,attn_out@5:region=disambiguating/last", gemma, suite)
    cache, _ = build_cache(gemma, suite, sites, tmp_path, CacheConfig(shard_size=3))
    seqs = [tokenize_condition(gemma, c) for it in suite.items for c in it.conditions]
    want = collect(gemma, seqs, sites, suite=suite)
    for s in sites:
        # shards of 3 and one batch of 8 sum in different orders: the same vectors up to float32 rounding,
        # measured against each vector's norm (Gemma's residual stream runs into the hundreds)
        got = cache.get(s)
        assert got.shape == want[s].shape
        rel = (got - want[s]).norm(dim=-1) / want[s].norm(dim=-1)
        assert rel.max() < 1e-5, f"{s}: relative error {rel.max():.2e}"
    cache.verify()


def test_cache_command(tiny_dirs, tmp_path, capsys):
    from mechinterp.cli import main

    args = ["cache", "--model", str(tiny_dirs["llama"]), "--suite", "mvrr", "--sites", "resid_post@*:region=verb/last",
            "--out-dir", str(tmp_path), "--shard-size", "16", "--verify"]
    assert main(args) == 0
    assert "wrote cache" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "reused cache" in out and "[60, 64]" in out
    assert main(args[:6] + ["resid_post@9", "--out-dir", str(tmp_path)]) == 2
    assert "out of range" in capsys.readouterr().err

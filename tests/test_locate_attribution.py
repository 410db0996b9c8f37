"""Attribution patching: the gradient is right (finite differences), and it tracks exact patching."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mechinterp.locate.patching import (
    Patch,
    PatchConfig,
    pair_context,
    parse_sweep,
    patch_suite,
    run_patches,
)
from mechinterp.locate.patching.attribution import correlation
from mechinterp.locate.sites import Site, TokenPos
from mechinterp.stimuli import load_suite

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def npz():
    return load_suite("npz")


@pytest.mark.parametrize("which", ["tiny_model", "tiny_gpt2"])
def test_gradient_matches_finite_differences(which, request, npz):
    """attribution estimate - base = (a' - a) . dm/da, which is the derivative of m(a + t (a' - a)) at t=0."""
    model = request.getfixturevalue(which)
    sites = parse_sweep("resid_pre|resid_mid|attn_out|mlp_out|resid_post@*:region=np/last,head_out@1:region=verb/last",
                        model, npz)
    cfg = PatchConfig(directions=("clean_to_corrupt",))
    df = patch_suite(model, npz, sites, cfg, items=[npz.items[0]], exact=False, attribution=True)
    ctx = pair_context(model, npz, npz.items[0], sites, cfg)
    eps = 0.05
    checked = 0
    for p, (_, row) in zip(ctx.planned, df.iterrows()):
        key = p.site.unpositioned
        a = ctx.acts.corrupt[key][0, list(p.corrupt_positions)]
        b = ctx.acts.clean[key][0, list(p.clean_positions)]
        plus = Patch(key, p.corrupt_positions, a + eps * (b - a))
        minus = Patch(key, p.corrupt_positions, a - eps * (b - a))
        mp, mm = run_patches(model, ctx.pair.corrupt.input_ids, [plus, minus], ctx.specs["corrupt"])
        fd = (mp - mm) / (2 * eps)
        est = row.raw - row.corrupt_value
        assert math.isclose(est, fd, rel_tol=0.05, abs_tol=1e-4), (str(p.site), est, fd)
        checked += 1
    assert checked == len(sites)


def test_no_difference_means_no_change(tiny_model, npz):
    """BOS is identical in both versions: the estimate equals the unpatched value, as exact patching does."""
    sites = [Site(1, "resid_mid", TokenPos(0)), Site(0, "head_out", TokenPos(0), 3)]
    df = patch_suite(tiny_model, npz, sites, PatchConfig(), items=npz.items[:2], attribution=True)
    base = np.where(df.direction == "clean_to_corrupt", df.corrupt_value, df.clean_value)
    assert np.allclose(df.raw, base, atol=1e-5)


def test_attribution_tracks_exact_on_tiny_model(tiny_model, npz):
    sites = parse_sweep(None, tiny_model, npz)
    df = patch_suite(tiny_model, npz, sites, PatchConfig(), items=npz.items[:2], attribution=True)
    assert set(df.method) == {"exact", "attribution"}
    r = correlation(df)
    assert r.n.iloc[0] == len(df) // 2
    assert r.pearson.iloc[0] > 0.9  # small random model: patches are small, the linear estimate is good
    by = correlation(df, by=["component"])
    assert set(by.component) == {"resid_pre", "attn_out", "mlp_out", "head_out"}


def test_correlation_function():
    rng = np.random.default_rng(0)
    n = 40
    exact = rng.normal(size=n)
    attr = exact + rng.normal(scale=0.5, size=n)
    common = dict(suite="s", item=[str(i // 4) for i in range(n)], direction="clean_to_corrupt", layer=np.arange(n) % 4,
                  component=["attn_out", "mlp_out"] * (n // 2), head=-1, position="np/last", corrupt_value=10.0,
                  clean_value=8.0)
    df = pd.concat([pd.DataFrame({**common, "method": "exact", "raw": 10.0 + exact}),
                    pd.DataFrame({**common, "method": "attribution", "raw": 10.0 + attr})])
    r = correlation(df)
    assert math.isclose(r.pearson.iloc[0], np.corrcoef(exact, attr)[0, 1], rel_tol=1e-9)
    assert r.n.iloc[0] == n
    by = correlation(df, by=["component"])
    sel = np.arange(n) % 2 == 0
    assert math.isclose(by.set_index("component").pearson["attn_out"], np.corrcoef(exact[sel], attr[sel])[0, 1])


@pytest.mark.slow
def test_attribution_on_gemma(gemma, npz):
    sites = parse_sweep("resid_pre|attn_out|mlp_out@0+4+8+12+16:region=*/last", gemma, npz)
    df = patch_suite(gemma, npz, sites, PatchConfig(directions=("clean_to_corrupt",)), items=npz.items[:2],
                     attribution=True)
    r = correlation(df)
    assert r.n.iloc[0] == 2 * len(sites)
    assert r.pearson.iloc[0] > 0.3  # real model: weaker than on a tiny one, but clearly related

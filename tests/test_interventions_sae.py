"""Ablating / clamping SAE features with the SAE's error term kept."""

from __future__ import annotations

import pytest
import torch

from mechinterp.errors import ConfigError
from mechinterp.interventions.base import AllPositions, TokenTable
from mechinterp.interventions.compose import suite_surprisal_under
from mechinterp.interventions.labelled import Labelled, suite_activations
from mechinterp.interventions.sae_clamp import SAEFeatureEdit, fit_sae_edit, select_features
from mechinterp.locate.sites import Site
from mechinterp.stimuli import load_suite


def random_sae(path, d_in, d_sae=32, layer=1, seed=0):
    """An SAE-Lens ReLU SAE with random weights (reconstruction is poor: the error term matters)."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from mechinterp.saes.load import load_sae

    torch.manual_seed(seed)
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=f"blocks.{layer}.hook_resid_post"))
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in) / d_sae**0.5)
        sae.b_enc.zero_()
    sae.save_model(path)
    return load_sae(path)


@pytest.fixture(scope="module")
def sae(tmp_path_factory, tiny_model):
    return random_sae(tmp_path_factory.mktemp("sae") / "s", tiny_model.d_model)


def test_edit_changes_only_the_chosen_features(sae):
    x = torch.randn(20, sae.d_in)
    f = sae.encode(x)
    feats = [int(i) for i in torch.argsort(f.mean(0), descending=True)[:3]]
    same = SAEFeatureEdit(sae, tuple(feats), tuple(0.0 for _ in feats), AllPositions(0))
    y = same.edit(x)
    # exactly x minus those features' decoder contributions: the SAE error term is kept
    expected = x - f[:, feats] @ sae.sae.W_dec[feats]
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    fy = sae.encode(y)
    assert not torch.allclose(y, x)
    # setting features to their current values changes nothing
    keep = SAEFeatureEdit(sae, (feats[0],), (0.0,), AllPositions(0))
    silent = x[f[:, feats[0]] == 0]
    if len(silent):
        torch.testing.assert_close(keep.edit(silent), silent)
    assert fy.shape == f.shape


def test_selection_finds_planted_features(sae):
    torch.manual_seed(1)
    n = 200
    y = torch.arange(n) % 2
    W = sae.sae.W_enc.detach()
    target = 5
    # push class-1 rows along the encoder direction of feature 5
    x = torch.randn(n, sae.d_in) * 0.1 + (y[:, None] * 3.0) * (W[:, target] / W[:, target].norm())
    data = Labelled({sae.site: x}, tuple("ab"[int(i)] for i in y), tuple(map(str, range(n))))
    feats, means = select_features(sae, data, remove="b", n_features=1)
    assert feats == [target]
    edit = fit_sae_edit(sae, data, "b", AllPositions(0), mode="clamp", n_features=1)
    assert edit.values[0] == pytest.approx(float(means["a"][target]))
    with pytest.raises(ConfigError, match="unknown class"):
        select_features(sae, data, remove="c")
    with pytest.raises(ConfigError, match="out of range"):
        SAEFeatureEdit(sae, (999,), (0.0,), AllPositions(0))


def test_sae_edit_in_a_forward_pass(tiny_model, sae):
    s = load_suite("nps")
    s = s.head(4)
    data = suite_activations(tiny_model, [s], [sae.site])
    edit = fit_sae_edit(sae, data, "ambiguous", TokenTable.from_suites(tiny_model, [s], conditions="ambiguous"),
                        n_features=4)
    base = suite_surprisal_under(tiny_model, s, None)
    got = suite_surprisal_under(tiny_model, s, edit)
    diff = (got["surprisal_bits"] - base["surprisal_bits"]).abs()
    assert diff[got["condition"] == "unambiguous"].max() < 1e-5  # only ambiguous conditions are edited
    assert diff[got["condition"] == "ambiguous"].max() > 1e-4
    assert edit.describe()["kind"] == "sae" and len(edit.features) <= 4


@pytest.mark.slow
def test_sae_edit_on_smollm2(smollm2, tmp_path):
    """Real model, random SAE at layer 10: the edit changes the residual stream by exactly the edited features'
    decoder contribution (error term kept) at the scoped positions, and nothing elsewhere."""
    from mechinterp.interventions.base import apply_interventions
    from mechinterp.locate.activations import collect_rows
    from mechinterp.tokenization import tokenize_condition

    sae = random_sae(tmp_path / "s", smollm2.d_model, d_sae=256, layer=10)
    s = load_suite("npz").head(3)
    data = suite_activations(smollm2, [s], [sae.site])
    edit = fit_sae_edit(sae, data, "ambiguous", TokenTable.from_suites(smollm2, [s]), n_features=4)
    seqs = [tokenize_condition(smollm2, c) for it in s.items for c in it.conditions]
    nxt = Site(11, "resid_pre")
    base = collect_rows(smollm2, seqs, [nxt, sae.site])
    with apply_interventions(smollm2, [edit]):
        got = collect_rows(smollm2, seqs, [nxt])
    rows = base.rows[nxt]
    scoped = torch.tensor([p in edit.scope.table[tuple(seqs[i].input_ids)] for i, p in rows.tolist()])
    x = base.tensors[sae.site]
    f = sae.encode(x)
    idx = list(edit.features)
    expected = x - f[:, idx] @ sae.sae.W_dec[idx].float()
    torch.testing.assert_close(got.tensors[nxt][scoped], expected[scoped], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(got.tensors[nxt][~scoped], x[~scoped])

"""Loading SAE-Lens SAE directories (trained here or elsewhere) and finding their site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mechinterp.errors import ConfigError
from mechinterp.saes.load import load_sae, parse_hook_name


def perfect_sae(path: Path, d_in: int, layer: int = 1, component: str = "resid_post", model_name: str | None = None) -> Path:
    """An SAE-Lens ReLU SAE that reconstructs exactly: latents relu(x_i) and relu(-x_i), decoder [I; -I]."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = {"hook_name": f"blocks.{layer}.hook_{component}"} | ({"model_name": model_name} if model_name else {})
    cfg = StandardSAEConfig(d_in=d_in, d_sae=2 * d_in, metadata=SAEMetadata(**meta))
    sae = StandardSAE(cfg)
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.save_model(path)
    return path


def test_parse_hook_name():
    assert parse_hook_name("blocks.6.hook_resid_post") == (6, "resid_post")
    assert parse_hook_name("blocks.0.hook_mlp_out") == (0, "mlp_out")
    assert parse_hook_name("blocks.3.attn.hook_z") is None
    assert parse_hook_name(None) is None


def test_load_standard_sae_from_sae_lens(tmp_path):
    sae = load_sae(perfect_sae(tmp_path / "p", 8, layer=2, component="mlp_out", model_name="tiny"))
    assert (sae.layer, sae.component, sae.d_sae, sae.d_in) == (2, "mlp_out", 16, 8)
    assert sae.site.layer == 2 and sae.site.component == "mlp_out"
    x = torch.randn(5, 8)
    torch.testing.assert_close(sae.decode(sae.encode(x)), x)
    assert torch.allclose(sae.decoder_directions.norm(dim=-1), torch.ones(16))
    ident = sae.identity()
    assert ident["architecture"] == "standard" and len(ident["weights_sha256"]) == 64


def test_overrides_and_unknown_hooks(tmp_path):
    path = perfect_sae(tmp_path / "p", 4)
    cfg = json.loads((path / "cfg.json").read_text())
    cfg["metadata"]["hook_name"] = "blocks.1.attn.hook_z"
    (path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="give --layer and --component"):
        load_sae(path)
    sae = load_sae(path, layer=0, component="resid_pre")
    assert (sae.layer, sae.component) == (0, "resid_pre")
    with pytest.raises(ConfigError, match="unknown component"):
        load_sae(path, layer=0, component="embeddings")


def test_bad_directories(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sae(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no cfg.json or sae_weights.safetensors"):
        load_sae(tmp_path / "empty")
    path = perfect_sae(tmp_path / "p", 4)
    (path / "cfg.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_sae(path)


def test_training_checkpoint_format_loads(tmp_path):
    """A directory saved by SAE-Lens's trainer (training config in cfg.json) loads as an inference SAE."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    tr = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=6, d_sae=12, k=3,
                                               metadata=SAEMetadata(hook_name="blocks.0.hook_resid_post")))
    tr.save_model(tmp_path / "ckpt")
    sae = load_sae(tmp_path / "ckpt")
    x = torch.randn(4, 6)
    assert (sae.encode(x) > 0).sum(-1).max() <= 3
    torch.testing.assert_close(sae.encode(x), tr.encode(x))


def test_check_model(tmp_path, tiny_model):
    with pytest.warns(UserWarning, match="trained on 'other'"):
        load_sae(perfect_sae(tmp_path / "o", tiny_model.d_model, model_name="other")).check_model(tiny_model)
    sae = load_sae(perfect_sae(tmp_path / "p", tiny_model.d_model + 1))
    with pytest.raises(ConfigError, match="d_model"):
        sae.check_model(tiny_model)
    sae = load_sae(perfect_sae(tmp_path / "q", tiny_model.d_model, layer=7))
    with pytest.raises(ConfigError, match="layers 0-1"):
        sae.check_model(tiny_model)

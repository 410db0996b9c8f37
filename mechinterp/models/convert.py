"""Convert a GGUF file into a cached Hugging Face model directory (fp32 safetensors), once.

The directory is written under a temporary name and renamed when complete, so an interrupted conversion
never leaves a directory that looks finished. A marker file records the source and a sha256 of the
weights, which is the model's identity in every provenance record.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

import mechinterp.provenance as prov
from mechinterp.errors import WeightsError
from mechinterp.io import atomic_dir, sha256_file

MARKER = "mechinterp-model.json"
WEIGHTS = "model.safetensors"


def cache_slug(name: str) -> str:
    # Trap: TransformerLens 3.9 misbehaves when a tokenizer's name_or_path contains "gemma", so the
    # directory is named by a hash of the registry name, never by the name itself.
    return "m-" + hashlib.sha1(name.encode()).hexdigest()[:12]


def weights_files(directory: Path) -> list[Path]:
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        files = sorted(directory.glob("*.bin"))
    return files


def read_marker(directory: Path) -> dict:
    try:
        return json.loads((directory / MARKER).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"{directory / MARKER} is missing or corrupt ({exc}); delete {directory} to convert the model again"
        ) from exc


def verify_weights(directory: Path, marker: dict) -> str:
    """Check the converted weights against the marker; rehash only when size or mtime changed."""
    path = directory / WEIGHTS
    fix = f"delete {directory} (or run `mechinterp models --rebuild {marker.get('name', '<name>')}`) to convert again"
    if not path.exists():
        raise WeightsError(f"weights file {path} is missing; {fix}")
    st = path.stat()
    if st.st_size != marker["weights_size"]:
        raise WeightsError(
            f"weights file {path} is corrupt (size {st.st_size} bytes, expected {marker['weights_size']}); {fix}"
        )
    if st.st_mtime_ns != marker["weights_mtime_ns"]:
        digest = sha256_file(path)
        if digest != marker["weights_sha256"]:
            raise WeightsError(f"weights file {path} is corrupt (sha256 does not match the recorded one); {fix}")
    return marker["weights_sha256"]


def convert_gguf(gguf_path: Path, target: Path, name: str) -> Path:
    """Dequantize ``gguf_path`` with transformers and save it as a HF directory at ``target``."""
    if not gguf_path.exists():
        raise WeightsError(f"GGUF file {gguf_path} is missing")
    t0 = time.time()
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype="float32"
        )
    except Exception as exc:
        raise WeightsError(f"could not read GGUF file {gguf_path}: {exc}") from exc
    # The dequantized model is plain fp32; drop the quantization record or TL and save_pretrained refuse it.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        wfiles = weights_files(tmp)
        if [p.name for p in wfiles] != [WEIGHTS]:
            raise WeightsError(f"conversion of {gguf_path} wrote unexpected weight files {wfiles}")
        st = wfiles[0].stat()
        marker = {
            "name": name,
            "source": str(gguf_path),
            "source_sha256": sha256_file(gguf_path),
            "weights_sha256": sha256_file(wfiles[0]),
            "weights_size": st.st_size,
            "weights_mtime_ns": st.st_mtime_ns,
            "converted_seconds": round(time.time() - t0, 1),
            "versions": prov.library_versions(),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
    return target

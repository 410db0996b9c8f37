"""Provenance: what produced a result file, written as JSON beside it."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import sys
from dataclasses import asdict, dataclass, field, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mechinterp.io import write_json_atomic

TRACKED_PACKAGES = (
    "mechinterp",
    "torch",
    "transformers",
    "transformer-lens",
    "nnsight",
    "sae-lens",
    "concept-erasure",
    "numpy",
    "pandas",
    "scikit-learn",
    "safetensors",
)


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in TRACKED_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return obj


@dataclass
class Provenance:
    """Everything needed to say where a result came from."""

    command: str
    config: dict[str, Any]
    model: dict[str, Any] | None = None  # name, display name, weights sha256, source
    suite: dict[str, Any] | None = None  # name, sha256, source path
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=library_versions)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat())
    host: str = field(default_factory=platform.node)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = {k: _jsonable(v) for k, v in self.config.items()}
        return json.loads(json.dumps(d, default=str))


def provenance_path(result: Path) -> Path:
    result = Path(result)
    return result.with_name(result.name + ".provenance.json")


def write_provenance(result: Path, prov: Provenance) -> Path:
    return write_json_atomic(provenance_path(result), prov.to_json())


def read_provenance(result: Path) -> dict[str, Any]:
    return json.loads(provenance_path(result).read_text())

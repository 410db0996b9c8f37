"""Job expansion: a sweep file becomes one job per model x suite x probe-settings variant x seed.

A job reads its activations once and trains every site of the sweep (layers x components, and the baseline
positions) for every construction of its suite; seeds and settings variants are separate jobs. A job's id is
a hash of everything that determines its result, so editing a sweep file re-runs exactly the jobs whose
specification changed and skips the others.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from mechinterp.layers import check_layer_field
from mechinterp.probes.train import ProbeSettings
from mechinterp.sweeps.config import SweepConfig


class JobSpec(BaseModel):
    """Everything one job needs (serialisable, so it travels to Ray workers)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    suite: str
    seed: int
    layers: str | list[int]
    components: list[str]
    probe: ProbeSettings
    backend: str = "hf"
    batch_size: int = 32
    device: str = "auto"
    dtype: str = "float32"

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: str | list[int]) -> str | list[int]:
        """A layer list (:mod:`mechinterp.layers`) or layer numbers; checked against the model when it runs."""
        return check_layer_field(v)

    @property
    def job_id(self) -> str:
        # batch size and device never change results (beyond float noise); float32 jobs keep the ids they had
        # before the dtype was part of a job
        payload = self.model_dump(mode="json", exclude={"batch_size", "device"} | ({"dtype"} if self.dtype == "float32" else set()))
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
        return f"{_slug(self.model)}__{_slug(self.suite)}__s{self.seed}__{digest}"

    def describe(self) -> str:
        return f"{_slug(self.model)} {_slug(self.suite)} seed={self.seed}"


def _slug(s: str) -> str:
    name = Path(s).stem if ("/" in s or "\\" in s) else s
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", name).strip("-") or "x"


def _resolve(entry: str, base: Path | None) -> str:
    """A path given relative to the sweep file is made absolute; names are kept."""
    if base is not None and ("/" in entry or entry.endswith((".json", ".csv"))):
        p = Path(entry).expanduser()
        if not p.is_absolute() and (base / p).exists():
            return str((base / p).resolve())
    return entry


def expand(cfg: SweepConfig, base_dir: Path | None = None) -> list[JobSpec]:
    jobs: list[JobSpec] = []
    for model in cfg.grid.models:
        for suite in cfg.grid.suites:
            for variant in cfg.probe_variants():
                for seed in cfg.grid.seeds:
                    jobs.append(JobSpec(
                        model=_resolve(model, base_dir), suite=_resolve(suite, base_dir), seed=seed,
                        layers=cfg.sites.layers, components=list(cfg.sites.components), probe=variant,
                        backend=cfg.sweep.backend, batch_size=cfg.sweep.batch_size,
                        device=cfg.sweep.device, dtype=cfg.sweep.dtype,
                    ))
    seen: dict[str, JobSpec] = {}
    for j in jobs:
        seen.setdefault(j.job_id, j)
    return list(seen.values())


def job_summary(jobs: list[JobSpec]) -> dict[str, Any]:
    return {"n_jobs": len(jobs), "jobs": [{"id": j.job_id, **j.model_dump(mode="json")} for j in jobs]}

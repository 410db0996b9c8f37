"""Job expansion: a sweep file becomes one probe job per model x suite x probe-settings variant x seed, and
one command job per ``[[command]]`` x model x suite x seed.

A probe job (:class:`JobSpec`) reads its activations once and trains every site of the sweep (layers x
components, and the baseline positions) for every construction of its suite; seeds and settings variants are
separate jobs. A command job (:class:`CommandJob`) runs one ``mechinterp`` command line. A job's id is a hash of
everything that determines its result, so editing a sweep file re-runs exactly the jobs whose specification
changed and skips the others.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from mechinterp.layers import check_layer_field
from mechinterp.probes.train import ProbeSettings
from mechinterp.sweeps.commands import NOT_IN_ID, OptionValue, command_argv, option_name
from mechinterp.sweeps.config import SweepConfig, command_grid


class JobSpec(BaseModel):
    """Everything one job needs (serialisable, so it travels to Ray workers)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["probe"] = "probe"
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
        # (nor did the kind, added with command jobs)
        payload = self.model_dump(mode="json", exclude={"kind", "batch_size", "device"}
                                  | ({"dtype"} if self.dtype == "float32" else set()))
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
        return f"{_slug(self.model)}__{_slug(self.suite)}__s{self.seed}__{digest}"

    def describe(self) -> str:
        return f"{_slug(self.model)} {_slug(self.suite)} seed={self.seed}"


class CommandJob(BaseModel):
    """One ``mechinterp`` command run by a sweep (serialisable, so it travels to Ray workers).

    Args:
        run: The command's words (``"patch"``, ``"sae train"``).
        model: The ``--model`` value.
        suite: The ``--suite`` value, or None for a command run without one.
        seed: The ``--seed`` value, or None for a command without ``--seed``.
        options: Its other options by name without dashes (a list repeats the option, true is a flag).
        device: ``--device`` (not part of the job id).
        dtype: ``--dtype``.

    Example:
        >>> CommandJob(run="patch", model="smollm2-135m", suite="npz", seed=0, options={"items": 4}).job_id
        'patch__smollm2-135m__npz__s0__...'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["command"] = "command"
    run: str
    model: str
    suite: str | None = None
    seed: int | None = None
    options: dict[str, OptionValue] = {}
    device: str = "auto"
    dtype: str = "float32"

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Keys as option names (``n_per_class`` and ``n-per-class`` are the same option)."""
        return {option_name(k): x for k, x in v.items()}

    @property
    def job_id(self) -> str:
        # the device and batch sizes never change results (beyond float noise)
        payload = self.model_dump(mode="json", exclude={"device"})
        payload["options"] = {k: v for k, v in payload["options"].items() if k not in NOT_IN_ID}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
        suite = _slug(self.suite) if self.suite is not None else "-"
        seed = f"s{self.seed}" if self.seed is not None else "s-"
        return f"{_slug(self.run)}__{_slug(self.model)}__{suite}__{seed}__{digest}"

    def describe(self) -> str:
        return f"{self.run} {_slug(self.model)} {_slug(self.suite or '-')} seed={self.seed}"

    def command_line(self, out_dir: str = "JOB_DIR") -> str:
        """The command line this job runs (quoted for a shell), its outputs in ``out_dir``.

        Example:
            >>> job.command_line()
            'mechinterp patch --model smollm2-135m --suite npz --seed 0 --device auto ... --items 4'
        """
        argv = command_argv(self.run, self.options, self.model, self.suite, self.seed, out_dir,
                            device=self.device, dtype=self.dtype)
        return shlex.join(["mechinterp", *argv])


Job = JobSpec | CommandJob


def job_from_dict(spec: dict[str, Any]) -> Job:
    """A job from its ``model_dump`` (a probe job when it names no kind: stores written before commands).

    Args:
        spec: ``job.model_dump(mode="json")``.

    Example:
        >>> job_from_dict(job.model_dump(mode="json")) == job
        True
    """
    return CommandJob.model_validate(spec) if spec.get("kind") == "command" else JobSpec.model_validate(spec)


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


def expand(cfg: SweepConfig, base_dir: Path | None = None) -> list[Job]:
    """The jobs of a sweep file: its probe jobs, then its command jobs, each once.

    Args:
        cfg: The parsed sweep file.
        base_dir: The sweep file's folder: model and suite paths relative to it are made absolute.

    Example:
        >>> [j.job_id for j in expand(load_sweep("sweeps/collapse.toml"))]
        ['collapse__smollm2-135m__npz__s0__...', ...]
    """
    jobs: list[Job] = []
    if cfg.has_probe_jobs and cfg.grid is not None:
        for model in cfg.grid.models or []:
            for suite in cfg.grid.suites or []:
                for variant in cfg.probe_variants():
                    for seed in cfg.grid.seeds:
                        jobs.append(JobSpec(
                            model=_resolve(model, base_dir), suite=_resolve(suite, base_dir), seed=seed,
                            layers=cfg.sites.layers, components=list(cfg.sites.components), probe=variant,
                            backend=cfg.sweep.backend, batch_size=cfg.sweep.batch_size,
                            device=cfg.sweep.device, dtype=cfg.sweep.dtype,
                        ))
    for cmd in cfg.command:
        models, suites, seeds = command_grid(cfg, cmd)
        for model in models:
            for suite in suites:
                for seed in seeds:
                    jobs.append(CommandJob(
                        run=cmd.run, model=_resolve(model, base_dir),
                        suite=None if suite is None else _resolve(suite, base_dir), seed=seed,
                        options=dict(cmd.options), device=cfg.sweep.device, dtype=cfg.sweep.dtype,
                    ))
    seen: dict[str, Job] = {}
    for j in jobs:
        seen.setdefault(j.job_id, j)
    return list(seen.values())


def job_summary(jobs: list[Job]) -> dict[str, Any]:
    return {"n_jobs": len(jobs), "jobs": [{"id": j.job_id, **j.model_dump(mode="json")} for j in jobs]}

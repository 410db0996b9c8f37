"""Running one job and returning its result (nothing is written here; the results store commits it). This is
the function executors call, in-process or on a Ray worker.

* A probe job loads the model and suite and runs the probes: its result holds tables and probe artifacts.
* A command job runs its ``mechinterp`` command in this process with its outputs in a fresh temporary
  directory: its result holds every file written there as bytes (so a Ray worker needs no shared file system),
  and a non-zero exit raises :class:`~mechinterp.sweeps.commands.CommandFailed` with the command's error line.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mechinterp.models import load_model
from mechinterp.probes.artifact import ProbeArtifact
from mechinterp.probes.pipeline import run_probes
from mechinterp.stimuli import load_suite
from mechinterp.sweeps.commands import command_argv, command_slug, run_command
from mechinterp.sweeps.config import resolve_layers
from mechinterp.sweeps.jobs import CommandJob, Job, JobSpec, job_from_dict
from mechinterp.tokenization import check_context


@dataclass
class JobResult:
    job_id: str
    spec: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    artifacts: dict[str, ProbeArtifact]
    model: dict[str, Any]
    suite: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # a command job's outputs by relative path


def execute_job(spec: Job | dict[str, Any], show_progress: bool = False) -> JobResult:
    """Run one job (probe or command) and return its result.

    Args:
        spec: The job, or its ``model_dump`` (as sent to a Ray worker).
        show_progress: Progress bars for a probe job.

    Raises:
        CommandFailed: A command job's command exited with a non-zero status.

    Example:
        >>> execute_job(expand(load_sweep("sweeps/quick.toml"))[0]).tables["metrics"]
    """
    spec = job_from_dict(spec) if isinstance(spec, dict) else spec
    if isinstance(spec, CommandJob):
        return execute_command(spec)
    return _execute_probes(spec, show_progress)


def execute_command(spec: CommandJob) -> JobResult:
    """Run a command job in this process into a temporary directory and return every file it wrote.

    Args:
        spec: The command job.

    Raises:
        CommandFailed: The command exited with a non-zero status (the message is its error line).

    Example:
        >>> sorted(execute_command(CommandJob(run="surprisal", model="smollm2-135m", suite="npz")).files)
        ['surprisal.parquet', 'surprisal.parquet.provenance.json']
    """
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mechinterp-job-") as tmp:
        root = Path(tmp)
        argv = command_argv(spec.run, spec.options, spec.model, spec.suite, spec.seed, root,
                            device=spec.device, dtype=spec.dtype)
        stdout, _ = run_command(argv)
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    model: dict[str, Any] = {"name": spec.model}
    suite: dict[str, Any] = {"name": spec.suite}
    prov = files.get(f"{command_slug(spec.run)}.parquet.provenance.json")
    if prov is not None:  # the identities the command recorded for its table
        record = json.loads(prov)
        model, suite = record.get("model") or model, record.get("suite") or suite
    return JobResult(
        job_id=spec.job_id, spec=spec.model_dump(mode="json"), tables={}, artifacts={}, model=model, suite=suite,
        info={"seconds": round(time.time() - t0, 2), "host": platform.node(), "pid": os.getpid(),
              "stdout": stdout[-20000:]},
        files=files,
    )


def _execute_probes(spec: JobSpec, show_progress: bool) -> JobResult:
    t0 = time.time()
    model = load_model(spec.model, device=spec.device, dtype=spec.dtype)
    suite = load_suite(spec.suite)
    check_context(model, [suite])  # before any forward pass
    layers = resolve_layers(spec.layers, model.n_layers)
    res = run_probes(
        model, suite, layers, spec.components, spec.probe, spec.seed, backend=spec.backend,
        batch_size=spec.batch_size, show_progress=show_progress,
    )
    jid = spec.job_id
    tables = {k: v.assign(job_id=jid) for k, v in res.tables().items()}
    return JobResult(
        job_id=jid, spec=spec.model_dump(mode="json"), tables=tables, artifacts=res.artifacts,
        model=model.identity(), suite=suite.identity(),
        info={"seconds": round(time.time() - t0, 2), "host": platform.node(), "pid": os.getpid(),
              "layers": layers},
    )

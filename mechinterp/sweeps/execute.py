"""Running one job: load the model and suite, run the probes, return the result (nothing is written here;
the results store commits it). This is the function executors call, in-process or on a Ray worker."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mechinterp.models import load_model
from mechinterp.probes.artifact import ProbeArtifact
from mechinterp.probes.pipeline import run_probes
from mechinterp.stimuli import load_suite
from mechinterp.sweeps.config import resolve_layers
from mechinterp.sweeps.jobs import JobSpec
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


def execute_job(spec: JobSpec | dict[str, Any], show_progress: bool = False) -> JobResult:
    spec = spec if isinstance(spec, JobSpec) else JobSpec.model_validate(spec)
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

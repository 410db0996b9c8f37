"""Run a sweep file: expand it into jobs, skip the finished ones, run the rest on an executor with a progress
bar, commit each result as it arrives, then rebuild the combined tables and figures of the sweep's probe jobs
and the index of its command jobs (``commands.parquet``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from mechinterp.errors import ConfigError, MechinterpError
from mechinterp.io import atomic_path, write_json_atomic
from mechinterp.models import get_spec
from mechinterp.probes.figures import write_figures
from mechinterp.probes.readout import DecisionRule
from mechinterp.probes.summary import (
    best_sites,
    summarise_metrics,
    summarise_verdicts,
    verdict_counts,
)
from mechinterp.provenance import Provenance
from mechinterp.stimuli import load_suite
from mechinterp.sweeps.config import SweepConfig, load_sweep
from mechinterp.sweeps.executors import Executor, gpus_per_job, make_executor
from mechinterp.sweeps.jobs import CommandJob, Job, JobSpec, expand, job_from_dict, job_summary
from mechinterp.sweeps.store import TABLES, ResultsStore
from mechinterp.tables import write_table

log = logging.getLogger(__name__)


@dataclass
class SweepOutcome:
    store: Path
    n_jobs: int
    skipped: int
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def store_path(cfg: SweepConfig, override: str | Path | None = None) -> Path:
    if override:
        return Path(override)
    if cfg.sweep.store:
        return Path(cfg.sweep.store)
    return Path("out") / "sweeps" / cfg.sweep.name


def _write_json(path: Path, obj: Any) -> None:
    write_json_atomic(path, obj)


def run_sweep(
    path: str | Path,
    store: str | Path | None = None,
    executor: str | Executor | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    dry_run: bool = False,
    show_progress: bool = True,
) -> SweepOutcome:
    path = Path(path)
    cfg = load_sweep(path)
    jobs = expand(cfg, path.parent.resolve())
    check_jobs(jobs, path)
    st = ResultsStore(store_path(cfg, store))
    if st.root.exists() and not st.root.is_dir():
        raise ConfigError(f"sweep {path}: the results store {st.root} is a file: give a directory "
                          "([sweep] store or --store)")
    done = st.done() if st.jobs_dir.exists() else set()
    todo = [j for j in jobs if j.job_id not in done]
    outcome = SweepOutcome(store=st.root, n_jobs=len(jobs), skipped=len(jobs) - len(todo))
    if dry_run:
        for j in jobs:
            line = f"{'done ' if j.job_id in done else 'to do'}  {j.job_id}"
            print(f"{line}  {j.command_line()}" if isinstance(j, CommandJob) else line)
        return outcome
    if isinstance(executor, str) or executor is None:  # before the store is touched (Ray may be missing)
        kind = executor or cfg.sweep.executor
        gpus = gpus_per_job(cfg.sweep.ray_gpus_per_job, cfg.sweep.device) if kind == "ray" else 0.0
        ex = make_executor(kind, ray_address or cfg.sweep.ray_address, cfg.sweep.ray_cpus_per_job, num_cpus,
                           gpus_per_job=gpus)
    else:
        ex = executor
    removed = st.prepare()
    if removed:
        log.warning("removed %d half-written entries left by an interrupted run: %s", len(removed), ", ".join(removed))
    with atomic_path(st.root / "sweep.toml") as tmp:
        shutil.copyfile(path, tmp)
    _write_json(st.root / "sweep.json", {"sweep_file": str(path.resolve()), "config": cfg.model_dump(mode="json"),
                                         **job_summary(jobs)})

    disable = (not show_progress) or bool(os.environ.get("MECHINTERP_NO_PROGRESS"))
    bar = tqdm(total=len(jobs), initial=outcome.skipped, desc=f"sweep {cfg.sweep.name}", unit="job",
               disable=disable, dynamic_ncols=True, file=sys.stderr)

    def on_result(res) -> None:
        if st.is_done(res.job_id):  # another sweep on this store finished it first
            bar.update(1)
            return
        st.commit(res)
        outcome.ran.append(res.job_id)
        bar.set_postfix_str(f"{job_from_dict(res.spec).describe()} {res.info.get('seconds', 0):.0f}s")
        bar.update(1)

    def on_error(job: Job, exc: BaseException) -> None:
        st.record_failure(job.job_id, job.model_dump(mode="json"), exc)
        outcome.failed[job.job_id] = f"{type(exc).__name__}: {exc}"
        log.error("job %s failed: %s: %s", job.job_id, type(exc).__name__, exc)
        bar.update(1)

    try:
        ex.run(todo, on_result, on_error, skip=lambda j: st.is_done(j.job_id))
    finally:
        bar.close()
    ids = [j.job_id for j in jobs if isinstance(j, JobSpec) and st.is_done(j.job_id)]
    outcome.tables, outcome.figures = collect(st, ids, cfg, figures=cfg.sweep.figures)
    commands = [j.job_id for j in jobs if isinstance(j, CommandJob) and st.is_done(j.job_id)]
    if commands:
        outcome.tables["commands"] = write_command_index(st, commands, cfg)
    return outcome


def write_command_index(st: ResultsStore, job_ids: list[str], cfg: SweepConfig | None = None) -> Path:
    """Write ``commands.parquet`` in the store root: one row per finished command job (job_id, run, model,
    suite, seed, files: the paths of its files under ``jobs/<job_id>/``).

    Args:
        st: The results store.
        job_ids: Finished command jobs.
        cfg: The sweep file (recorded in the index's provenance).

    Example:
        >>> pd.read_parquet(write_command_index(st, ids)).run.tolist()
        ['patch', 'collapse']
    """
    rows = []
    for jid in job_ids:
        info = st.job_info(jid)
        spec = info["spec"]
        rows.append({"job_id": jid, "run": spec["run"], "model": spec["model"], "suite": spec.get("suite"),
                     "seed": spec.get("seed"), "files": list(info.get("files", []))})
    df = pd.DataFrame(rows, columns=["job_id", "run", "model", "suite", "seed", "files"])
    df["seed"] = df["seed"].astype("Int64")
    prov = Provenance(command="mechinterp sweep", config=cfg.model_dump(mode="json") if cfg else {},
                      extra={"jobs": job_ids})
    return write_table(df, st.root / "commands.parquet", prov)


def check_jobs(jobs: list[Job], path: str | Path) -> None:
    """Refuse a sweep, before any job runs, whose jobs name a suite that cannot be read or a model that is
    neither a registry name nor a model directory: one error naming the sweep file, the entry and the problem,
    instead of every job failing the same way. (Models are looked up, not loaded; a suite longer than a
    model's context is refused by each job before its first forward pass.)

    Raises:
        ConfigError: the first bad suite or model (one line).
    """
    def where(j: Job) -> str:
        return f"command {j.run!r}: " if isinstance(j, CommandJob) else "grid."

    suites: dict[str, Job] = {}
    models: dict[str, Job] = {}
    for j in jobs:  # each suite and model once, named by the first job that uses it
        if j.suite is not None:
            suites.setdefault(j.suite, j)
        models.setdefault(j.model, j)
    for suite, j in suites.items():
        try:
            load_suite(suite)
        except MechinterpError as exc:
            raise ConfigError(f"sweep {path}: {where(j)}suites entry {suite!r} cannot be used: {exc} "
                              "(no job was run)") from None
    for model, j in models.items():
        try:
            get_spec(model)
        except MechinterpError as exc:
            raise ConfigError(f"sweep {path}: {where(j)}models entry {model!r} cannot be used: {exc} "
                              "(no job was run)") from None


def collect(st: ResultsStore, job_ids: list[str], cfg: SweepConfig | None = None, figures: bool = True):
    """Write the sweep's combined tables (finished jobs only) and summary tables and figures."""
    if not job_ids:
        return {}, []
    infos = [st.job_info(j) for j in job_ids]
    prov = Provenance(
        command="mechinterp sweep", config=cfg.model_dump(mode="json") if cfg else {},
        model={"models": sorted({json.dumps(i["model"], sort_keys=True) for i in infos})},
        suite={"suites": sorted({json.dumps(i["suite"], sort_keys=True) for i in infos})},
        extra={"jobs": job_ids},
    )
    out: dict[str, Path] = {}
    frames = {}
    for name in TABLES:
        df = st.table(name, job_ids)
        frames[name] = df
        out[name] = write_table(df, st.root / f"{name}.parquet", prov)
    min_acc = min((i["spec"]["probe"]["min_accuracy"] for i in infos), default=0.6)
    ms = summarise_metrics(frames["metrics"])
    vs = summarise_verdicts(frames["verdicts"], DecisionRule(min_accuracy=min_acc))
    best = best_sites(ms, vs)
    for name, df in (("metrics_summary", ms), ("verdicts_summary", vs), ("best_sites", best),
                     ("verdict_counts", verdict_counts(vs))):
        out[name] = write_table(df, st.root / f"{name}.parquet", prov)
    figs = write_figures(ms, vs, st.root / "figures") if figures else []
    return out, figs

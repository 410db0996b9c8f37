"""The results store: one directory per finished job, committed by an atomic rename, so a sweep can be
killed at any moment and resumed with no lost or corrupt results.

Layout::

    STORE/
      sweep.toml                  the sweep file of the last run;  sweep.json: its jobs
      jobs/<job_id>/              a FINISHED job (nothing else ever appears under jobs/)
        job.json                  spec, model and suite identity, timing
        metrics.parquet ...       its tables, each with <table>.parquet.provenance.json beside it
        probes/<CONS>/<component>-L<layer>/probe.safetensors + probe.json
      jobs/<job_id>/              a finished COMMAND job: job.json and every file the command wrote
        <command>.parquet ...     (its --out table, its --out-dir contents, --report ...)
      .tmp/<job_id>.<pid>/        a job being written (deleted at the next start if its process is gone)
      failed/<job_id>.json        the error of a job that failed (retried on the next run)
      metrics.parquet, readout.parquet, verdicts.parquet, training.parquet, confounds.parquet
                                  all finished probe jobs together (+ summary tables), rebuilt after each run
      commands.parquet            one row per finished command job: job_id, run, model, suite, seed, files
      figures/*.html

A job is written completely into ``.tmp/`` (tables via :func:`mechinterp.tables.write_table`, probes via
:meth:`ProbeArtifact.save`), its ``job.json`` last, and then the directory is renamed into ``jobs/``: a
rename within one file system is atomic, so ``jobs/<id>`` either exists complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import traceback
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from mechinterp.errors import CacheError
from mechinterp.io import write_json_atomic
from mechinterp.provenance import Provenance, hash_json
from mechinterp.tables import read_table, write_table

TABLES = ("metrics", "readout", "verdicts", "training", "confounds")
JOB_FILE = "job.json"


class ResultsStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.tmp_dir = self.root / ".tmp"
        self.failed_dir = self.root / "failed"

    # ---- state ---------------------------------------------------------------------------------------
    def prepare(self) -> list[str]:
        """Create the layout and remove what a killed run left half-written; return what was removed."""
        for d in (self.root, self.jobs_dir, self.tmp_dir, self.failed_dir):
            d.mkdir(parents=True, exist_ok=True)
        removed = []
        for p in self.tmp_dir.iterdir():
            if _writer_alive(p.name):  # another sweep on this store is writing it right now
                continue
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p.name)
        for p in self.jobs_dir.iterdir():  # cannot happen by construction; a directory without job.json is junk
            if not (p / JOB_FILE).exists():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        return removed

    def done(self) -> set[str]:
        if not self.jobs_dir.exists():
            return set()
        return {p.name for p in self.jobs_dir.iterdir() if (p / JOB_FILE).exists()}

    def is_done(self, job_id: str) -> bool:
        return (self.jobs_dir / job_id / JOB_FILE).exists()

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def job_info(self, job_id: str) -> dict[str, Any]:
        path = self.jobs_dir / job_id / JOB_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CacheError(f"job record {path} is unreadable: {exc}") from exc

    # ---- writing -------------------------------------------------------------------------------------
    def commit(self, result: Any, command: str = "mechinterp sweep") -> Path:
        """Write a :class:`~mechinterp.sweeps.execute.JobResult` and move it into place atomically."""
        final = self.jobs_dir / result.job_id
        if final.exists():
            return final
        tmp = self.tmp_dir / f"{result.job_id}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            prov = Provenance(command=command, config=result.spec, model=result.model, suite=result.suite,
                              seed=result.spec.get("seed"), extra={"job_id": result.job_id, **result.info})
            for name, df in result.tables.items():
                write_table(df, tmp / f"{name}.parquet", prov)
            for key, art in result.artifacts.items():
                art.save(tmp / "probes" / key)
            files = getattr(result, "files", {}) or {}
            for rel, data in files.items():
                target = _file_in(tmp, rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            record = {"job_id": result.job_id, "kind": result.spec.get("kind", "probe"), "spec": result.spec,
                      "model": result.model, "suite": result.suite, "info": result.info,
                      "tables": sorted(result.tables), "probes": sorted(result.artifacts), "files": sorted(files),
                      "spec_hash": hash_json(result.spec)}
            (tmp / JOB_FILE).write_text(json.dumps(record, indent=2, default=str))
            _fsync_dir(tmp)
            tmp.rename(final)
            _fsync_dir(self.jobs_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        (self.failed_dir / f"{result.job_id}.json").unlink(missing_ok=True)
        return final

    def record_failure(self, job_id: str, spec: dict[str, Any], exc: BaseException) -> None:
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.failed_dir / f"{job_id}.json",
                          {"job_id": job_id, "spec": spec, "error": f"{type(exc).__name__}: {exc}",
                           "traceback": "".join(traceback.format_exception(exc))})

    def failures(self) -> dict[str, dict[str, Any]]:
        if not self.failed_dir.exists():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in self.failed_dir.glob("*.json")}

    # ---- reading -------------------------------------------------------------------------------------
    def table(self, name: str, job_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """One table of all finished jobs (or of ``job_ids``) concatenated."""
        ids = sorted(self.done() if job_ids is None else job_ids)
        frames = []
        for jid in ids:
            path = self.jobs_dir / jid / f"{name}.parquet"
            if not path.exists():
                raise CacheError(f"job {jid} in {self.root} has no {name} table ({path})")
            frames.append(read_table(path))  # refused if the job's provenance does not describe it
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def probe_dirs(self, job_id: str) -> list[Path]:
        base = self.jobs_dir / job_id / "probes"
        return sorted(p.parent for p in base.glob("*/*/probe.json"))


def _file_in(root: Path, rel: str) -> Path:
    """``root/rel`` for a file a command job wrote; refused when it would land outside ``root`` or on job.json."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or rel == JOB_FILE:
        raise CacheError(f"a job's file cannot be stored as {rel!r}: give a relative path inside the job, "
                         f"not {JOB_FILE}")
    return root.joinpath(*parts)


def _writer_alive(name: str) -> bool:
    """Temporary entries are named ``<job_id>.<pid>``: is that process still running (on this host)?"""
    pid = name.rsplit(".", 1)[-1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)

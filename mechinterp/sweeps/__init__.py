"""Scripted, resumable sweeps: TOML files in ``sweeps/`` name models x suites x sites x probe settings x
seeds, and any command that loads a model and writes a table or directory (``[[command]]``: ``patch``,
``collapse``, ``sae train`` ...); :func:`run_sweep` runs them in-process or on Ray into a :class:`ResultsStore`
(Parquet + provenance), skipping finished jobs and surviving a kill at any moment.

* :mod:`.config`: the sweep-file model (pydantic) and its parser (errors name key and line).
* :mod:`.commands`: which commands a sweep runs, their options checked against the command-line parser.
* :mod:`.jobs`: expansion into :class:`JobSpec` s and :class:`CommandJob` s with content-hash ids.
* :mod:`.execute`: running one job (probes: :func:`mechinterp.probes.run_probes`; a command: in-process).
* :mod:`.store`: the results store (atomic per-job commits).
* :mod:`.executors`: local and Ray executors.
* :mod:`.runner`: the whole sweep, progress bar, combined tables and figures.
"""

from mechinterp.sweeps.config import (
    SweepConfig,
    load_sweep,
    parse_sweep,
    resolve_layers,
)
from mechinterp.sweeps.execute import JobResult, execute_job
from mechinterp.sweeps.executors import LocalExecutor, RayExecutor, make_executor
from mechinterp.sweeps.jobs import CommandJob, JobSpec, expand
from mechinterp.sweeps.runner import SweepOutcome, collect, run_sweep
from mechinterp.sweeps.store import ResultsStore

__all__ = [
    "CommandJob", "JobResult", "JobSpec", "LocalExecutor", "RayExecutor", "ResultsStore", "SweepConfig", "SweepOutcome",
    "collect", "execute_job", "expand", "load_sweep", "make_executor", "parse_sweep", "resolve_layers", "run_sweep",
]

"""Executors: where jobs run. Both hand each finished :class:`~mechinterp.sweeps.execute.JobResult` back to
the driver, which commits it to the results store, so workers need no shared file system.

* :class:`LocalExecutor`: one job after another in this process (activations of the generated training
  sentences are memoised across jobs of the same model and seed).
* :class:`RayExecutor`: each job is a Ray task (``num_cpus=cpus_per_job``, ``num_gpus=gpus_per_job``: by
  default one GPU per job when the sweep's device is not ``cpu`` and CUDA is available here, see
  :func:`gpus_per_job`). ``address=None`` starts a local
  Ray instance for this run and stops it afterwards; ``address="auto"`` or ``"ray://HOST:10001"`` joins a
  running cluster (install ``mechinterp[ray]`` and the same mechinterp version on every node; each worker
  loads its own copy of the model, so size ``cpus_per_job`` to the memory a model needs).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Protocol, Sequence

import torch

from mechinterp.errors import ConfigError
from mechinterp.sweeps.execute import JobResult, execute_job
from mechinterp.sweeps.jobs import Job

log = logging.getLogger(__name__)

OnResult = Callable[[JobResult], None]
OnError = Callable[[Job, BaseException], None]


class Executor(Protocol):
    def run(self, jobs: Sequence[Job], on_result: OnResult, on_error: OnError,
            skip: Callable[[Job], bool] | None = None) -> None: ...


class LocalExecutor:
    def __init__(self, show_job_progress: bool = False):
        self.show_job_progress = show_job_progress

    def run(self, jobs: Sequence[Job], on_result: OnResult, on_error: OnError,
            skip: Callable[[Job], bool] | None = None) -> None:
        for job in jobs:
            if skip is not None and skip(job):  # finished meanwhile by another sweep on the same store
                continue
            try:
                result = execute_job(job, show_progress=self.show_job_progress)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one bad job must not stop the sweep; it is recorded and retried next run
                on_error(job, exc)
                continue
            on_result(result)


def _ray_execute(spec: dict[str, Any]) -> JobResult:  # runs on a Ray worker

    os.environ.setdefault("MECHINTERP_NO_PROGRESS", "1")
    return execute_job(spec)


def import_ray() -> Any:
    """The ``ray`` module, or ConfigError (one line: how to install it, or to run locally) when the Ray client
    is not installed or cannot be imported."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f"the Ray executor needs the Ray client, which cannot be imported ({exc}): pip install "
            "'mechinterp[ray]', or run the sweep locally (--executor local, or executor = 'local' in [sweep])"
        ) from None
    return ray


def gpus_per_job(setting: float | None, device: str) -> float:
    """The GPUs a Ray task of the sweep asks for (``ray.remote(num_gpus=...)``).

    Args:
        setting: ``[sweep] ray_gpus_per_job``; None for the default.
        device: ``[sweep] device``.

    Returns:
        ``setting`` when given; else 1 when ``device`` is not ``cpu`` and CUDA is available on this machine
        (the driver), else 0.

    Example:
        >>> gpus_per_job(None, "cpu")
        0.0
    """
    if setting is not None:
        return float(setting)
    if device == "cpu":
        return 0.0
    return 1.0 if torch.cuda.is_available() else 0.0


class RayExecutor:
    def __init__(self, address: str | None = None, cpus_per_job: float = 1.0, num_cpus: int | None = None,
                 init_kwargs: dict[str, Any] | None = None, gpus_per_job: float = 0.0):
        import_ray()  # refuse at once, before any job or store is touched
        self.address = address or None
        self.cpus_per_job = cpus_per_job
        self.gpus_per_job = gpus_per_job
        self.num_cpus = num_cpus
        self.init_kwargs = init_kwargs or {}

    def run(self, jobs: Sequence[Job], on_result: OnResult, on_error: OnError,
            skip: Callable[[Job], bool] | None = None) -> None:
        jobs = [j for j in jobs if skip is None or not skip(j)]
        ray = import_ray()
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address is None and self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(address=self.address, **kwargs)
            except ConnectionError as exc:
                raise ConfigError(f"cannot reach the Ray cluster at {self.address!r}: {exc}") from exc
            started = True
        try:
            task = ray.remote(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job, max_retries=0)(_ray_execute)
            pending = {task.remote(j.model_dump(mode="json")): j for j in jobs}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:
                        cause = getattr(exc, "cause", None)
                        on_error(job, cause if isinstance(cause, BaseException) else exc)
                        continue
                    on_result(result)
        finally:
            if started:
                ray.shutdown()


def make_executor(kind: str, address: str | None = None, cpus_per_job: float = 1.0,
                  num_cpus: int | None = None, gpus_per_job: float = 0.0) -> Executor:
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address=address, cpus_per_job=cpus_per_job, num_cpus=num_cpus, gpus_per_job=gpus_per_job)
    raise ConfigError(f"unknown executor {kind!r}: choose local or ray")

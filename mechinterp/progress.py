"""Progress bars for long loops (tqdm on stderr; silent when disabled or not wanted)."""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(it: Iterable[T] | None, desc: str = "", disable: bool = False, total: int | None = None) -> Iterable[T]:
    """A tqdm bar over ``it`` (off when ``disable`` or when ``MECHINTERP_NO_PROGRESS`` is set).

    Args:
        it: The iterable to wrap.
        desc: The bar's label.
        disable: Show no bar.
        total: Length of ``it`` when it has none.

    Returns:
        An iterable yielding the items of ``it``.

    Example:
        >>> for item in progress(items, desc="patching"):
        ...     ...
    """
    if os.environ.get("MECHINTERP_NO_PROGRESS"):
        disable = True
    return tqdm(it, desc=desc, disable=disable, total=total, leave=False, dynamic_ncols=True)


class Stage:
    """One numbered step of a longer job: prints ``[k/n] what ...`` when it starts and the time it took
    when it ends (to stderr, so tables printed on stdout stay clean).

    Args:
        index: The step's number, from 1.
        total: How many steps the job has.
        what: A short description of the step.

    Example:
        >>> with Stage(2, 5, "patching NP/Z"):
        ...     run_patching()
    """

    def __init__(self, index: int, total: int, what: str):
        self.label = f"[{index}/{total}] {what}"
        self.seconds = 0.0

    def __enter__(self) -> "Stage":
        self._start = time.perf_counter()
        print(f"{self.label} ...", file=sys.stderr, flush=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.seconds = time.perf_counter() - self._start
        status = "failed" if exc_type is not None else "done"
        print(f"{self.label}: {status} in {self.seconds:.1f} s", file=sys.stderr, flush=True)

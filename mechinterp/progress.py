"""Progress bars for long loops (tqdm on stderr; silent when disabled or not wanted)."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(it: Iterable[T] | None, desc: str = "", disable: bool = False, total: int | None = None) -> Iterable[T]:
    if os.environ.get("MECHINTERP_NO_PROGRESS"):
        disable = True
    return tqdm(it, desc=desc, disable=disable, total=total, leave=False, dynamic_ncols=True)

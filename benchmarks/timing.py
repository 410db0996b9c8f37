"""Timing shared by the benchmarks: device synchronisation and interleaved pairs of runs.

A benchmark compares a run with its baseline in the same process; ``interleaved_pairs`` alternates which of the
two goes first in each pair, so that a burst of background load moves one pair, and a benchmark reports the
median of the per-pair ratios.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch


def sync(device: str) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously), so that a timer read next counts it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved_pairs(baseline: Callable[[], object], run: Callable[[], object], repeats: int, device: str
                      ) -> tuple[list[float], list[float], list[float]]:
    """Time ``repeats`` pairs of (baseline, run), alternating which goes first.

    Returns:
        (run / baseline ratio per pair, baseline seconds, run seconds).
    """
    ratios, base_s, run_s = [], [], []
    for k in range(repeats):
        pair = {}
        order = (("baseline", baseline), ("run", run))
        for name, fn in (order if k % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            fn()
            sync(device)
            pair[name] = time.perf_counter() - t0
        base_s.append(pair["baseline"])
        run_s.append(pair["run"])
        ratios.append(pair["run"] / pair["baseline"])
    return ratios, base_s, run_s


def suite_args(suite: str, items: int, batch_size: int, repeats: int, items_help: str = "first N items of the suite"
               ) -> argparse.ArgumentParser:
    """The options of a benchmark over a suite's first items: --model, --suite, --items, --batch-size, --repeats,
    --device, with the given defaults."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--suite", default=suite)
    ap.add_argument("--items", type=int, default=items, help=items_help)
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--device", default="cpu", help="torch device to run on, e.g. cuda (default: cpu)")
    return ap

"""Cost of caching every residual site to disk, and whether memory grows with the suite.

1. Overhead: :func:`mechinterp.locate.cache.build_cache` of resid_pre, resid_mid and resid_post at every layer and
   every token (the largest cache a suite can make) against a plain forward pass of the decoder over the same
   right-padded batches (no LM head: the cache does not need one, and for Gemma the 262k-token unembedding
   alone costs more than all blocks; the full forward with logits is printed for reference). ``--repeats``
   interleaved pairs (the order alternates within each pair), each cache build into a fresh directory
   (deleted outside the timing); the result is the MEDIAN of the per-pair ratios, so a burst of background
   load moves one pair, not the result. Target: <= 1.15x. ``--device cuda`` runs the model on CUDA (synchronised
   before each timer is read; the cache still goes to disk through host memory).
2. Memory: peak RSS growth (above the RSS after loading the model) while caching the suite and a suite 10x
   larger (the items repeated with new numbers), each in a fresh subprocess. It must not grow with the suite
   (memory is bounded by two shards: one being collected, one being written). Printed as its own RESULT line before the last.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from timing import sync

SPEC = "resid_pre|resid_mid|resid_post@*"


def _suite(name: str, times: int):
    from mechinterp.stimuli import load_suite

    s = load_suite(name)
    if times == 1:
        return s
    d = s.model_dump()
    items = []
    for k in range(times):
        for it in d["items"]:
            items.append({**it, "number": it["number"] + k * 10_000})
    return type(s).model_validate({**d, "items": items})


def _memory_child(model_name: str, suite_name: str, times: int, shard_size: int, batch_size: int, device: str,
                  q) -> None:
    from mechinterp.locate.cache import CacheConfig, build_cache, parse_cache_sites
    from mechinterp.models import load_model

    torch.set_num_threads(1)
    proc = psutil.Process()
    model = load_model(model_name, device=device)
    suite = _suite(suite_name, times)
    sites = parse_cache_sites(SPEC, model, suite)
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out = Path(tempfile.mkdtemp(prefix="mi-cache-mem-"))
    try:
        cache, _ = build_cache(model, suite, sites, out, CacheConfig(shard_size=shard_size, batch_size=batch_size))
        n_rows = cache.shape(cache.sites[0])[0]
        disk = sum(f.stat().st_size for f in cache.root.iterdir())
    finally:
        stop.set()
        th.join()
        shutil.rmtree(out, ignore_errors=True)
    q.put({"times": times, "sequences": 2 * len(suite.items), "rows": n_rows, "disk_mb": disk / 2**20,
           "peak_growth_mb": (peak[0] - base) / 2**20})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--suite", default="npz")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shard-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--device", default="cpu", help="torch device to run on, e.g. cuda (default: cpu)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from mechinterp.forward import batches, pad_batch
    from mechinterp.locate.cache import CacheConfig, build_cache, parse_cache_sites
    from mechinterp.locate.hooks import base_model
    from mechinterp.models import load_model
    from mechinterp.tokenization import tokenize_condition

    if not args.skip_memory:  # subprocesses first, while this process holds no model
        ctx = mp.get_context("spawn")
        mem = []
        for times in (1, 10):
            q = ctx.Queue()
            p = ctx.Process(target=_memory_child, args=(args.model, args.suite, times, args.shard_size, args.batch_size,
                                                      args.device, q))
            p.start()
            mem.append(q.get())
            p.join()
    model = load_model(args.model, device=args.device)
    suite = _suite(args.suite, 1)
    sites = parse_cache_sites(SPEC, model, suite)
    seqs = [tokenize_condition(model, c) for it in suite.items for c in it.conditions]
    n_tokens = sum(len(s) for s in seqs)
    cfg = CacheConfig(shard_size=args.shard_size, batch_size=args.batch_size)

    @torch.no_grad()
    def plain(logits: bool) -> None:
        for start in range(0, len(seqs), args.shard_size):  # the cache's batches: per shard, by length
            shard = sorted(seqs[start : start + args.shard_size], key=len)
            for idx in batches(len(shard), args.batch_size):
                b = pad_batch([shard[i].input_ids for i in idx], model.pad_token_id, "right", device=model.device)
                kw = dict(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                          use_cache=False)
                if logits:
                    model.hf(**kw).logits.sum()
                else:
                    base_model(model)(**kw).last_hidden_state.sum()

    def cached() -> float:
        out = Path(tempfile.mkdtemp(prefix="mi-cache-bench-"))
        try:
            t0 = time.perf_counter()
            build_cache(model, suite, sites, out, cfg)
            sync(args.device)
            return time.perf_counter() - t0
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        sync(args.device)
        return time.perf_counter() - t0

    plain(False)
    cached()
    sync(args.device)
    times: dict[str, list[float]] = {"decoder": [], "cache": [], "full": []}
    for r in range(args.repeats):
        pair = [("decoder", lambda: timed(lambda: plain(False))), ("cache", cached)]
        for name, fn in pair if r % 2 == 0 else pair[::-1]:
            times[name].append(fn())
    times["full"].append(timed(lambda: plain(True)))  # for reference only
    ratios = [c / d for c, d in zip(times["cache"], times["decoder"])]
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = statistics.median(ratios)
    print(f"model {args.model}; suite {args.suite}: {len(seqs)} sentences, {n_tokens} tokens; {len(sites)} sites "
          f"(every token); batch {args.batch_size}, shard {args.shard_size}; {torch.get_num_threads()} threads; "
          f"device {args.device}")
    print(f"plain decoder forward: {med['decoder']:.2f} s; full forward with logits: {med['full']:.2f} s; "
          f"cache to disk: {med['cache']:.2f} s (medians of {args.repeats}; full: once)")
    print("cache / decoder per pair: " + ", ".join(f"{x:.3f}" for x in ratios))
    print(f"cache / full forward with logits = {med['cache'] / med['full']:.3f}")
    on = "" if args.device == "cpu" else f" device={args.device}"
    if not args.skip_memory:
        for m in mem:
            print("memory:", json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in m.items()}))
        growth = mem[1]["peak_growth_mb"] / max(mem[0]["peak_growth_mb"], 1.0)
        print(f"RESULT cache_peak_memory_growth_10x={growth:.2f} target <=1.25{on}")
    print(f"RESULT cache_overhead={ratio:.3f} target <=1.15{on}")


if __name__ == "__main__":
    main()

"""Throughput of the surprisal pipeline against a bare HF forward pass over the same batches.

Both run in this process on the same padded batches (sentences of the built-in suites, sorted by length
as the pipeline does). The pipeline includes tokenization, the backend forward, log-softmax, entropy and
word aggregation. Target: pipeline tokens/s >= 0.9 x bare forward tokens/s, on CPU and on CUDA
(``--device cuda``; CUDA work is synchronised before each timer is read).
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import sync

from mechinterp.forward import batches, pad_batch
from mechinterp.models import load_model
from mechinterp.stimuli import builtin_suites, load_suite
from mechinterp.surprisal import SurprisalConfig, suite_surprisal
from mechinterp.tokenization import tokenize_condition


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--suites", default=",".join(builtin_suites()))
    ap.add_argument("--device", default="cpu", help="torch device to run on, e.g. cuda (default: cpu)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(args.model, device=args.device)
    suites = [load_suite(s) for s in args.suites.split(",")]
    per_suite = [[tokenize_condition(model, c) for it in s.items for c in it.conditions] for s in suites]
    seqs = [t for group in per_suite for t in group]
    n_tokens = sum(len(s) for s in seqs)
    cfg = SurprisalConfig(batch_size=args.batch_size)

    def bare() -> None:
        # exactly the pipeline's batches: per suite, sorted by length, right-padded
        with torch.no_grad():
            for group in per_suite:
                order = sorted(range(len(group)), key=lambda i: len(group[i]))
                for idx in batches(len(order), args.batch_size):
                    b = pad_batch([group[order[i]].input_ids for i in idx], model.pad_token_id, "right",
                                  device=model.device)
                    model.hf(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                             use_cache=False).logits.sum()

    def pipeline() -> None:
        for s in suites:
            suite_surprisal(model, s, cfg, show_progress=False)

    bare()  # warm-up
    pipeline()
    sync(args.device)
    times = {"bare": [], "pipeline": []}
    for _ in range(args.repeats):  # interleave to share any drift in machine load
        for name, fn in (("bare", bare), ("pipeline", pipeline)):
            t0 = time.perf_counter()
            fn()
            sync(args.device)
            times[name].append(time.perf_counter() - t0)
    bare_tps = n_tokens / min(times["bare"])
    pipe_tps = n_tokens / min(times["pipeline"])
    print(f"model {args.model}; {len(seqs)} sentences, {n_tokens} tokens, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    print(f"bare HF forward: {bare_tps:.1f} tokens/s (best of {args.repeats})")
    print(f"surprisal pipeline: {pipe_tps:.1f} tokens/s (best of {args.repeats})")
    on = "" if args.device == "cpu" else f" device={args.device}"
    print(f"RESULT surprisal_throughput_ratio={pipe_tps / bare_tps:.3f} target >=0.9{on}")


if __name__ == "__main__":
    main()

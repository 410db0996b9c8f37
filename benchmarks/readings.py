"""Time of the exact reading probabilities of a 30-item suite against its surprisal run.

Both run in this process on the same model and suite (default: the first 30 NP/Z items, ambiguous and
unambiguous conditions): :func:`mechinterp.surprisal.suite_surprisal` (every word of every condition) and
:func:`mechinterp.readings.exact_readings` (every diagnostic continuation of both readings at the end of the
ambiguous region of every condition). ``--repeats`` interleaved pairs (the order alternates within each pair);
the result is the MEDIAN of the per-pair ratios, so a burst of background load moves one pair, not the result.
Target: <= 2.0 (``--device cuda`` runs both on CUDA, synchronised before each timer is read).
"""

from __future__ import annotations

import statistics

import torch
from timing import interleaved_pairs, suite_args, sync

from mechinterp.models import load_model
from mechinterp.readings import exact_readings
from mechinterp.stimuli import load_suite
from mechinterp.surprisal import SurprisalConfig, suite_surprisal


def main() -> None:
    args = suite_args("npz", 30, 8, 5).parse_args()
    model = load_model(args.model, device=args.device)
    suite = load_suite(args.suite).head(args.items)
    cfg = SurprisalConfig(batch_size=args.batch_size)

    def surprisal() -> None:
        suite_surprisal(model, suite, cfg, show_progress=False)

    def readings() -> None:
        exact_readings(model, suite, batch_size=args.batch_size)

    surprisal()  # warm-up (tokenizer caches, first-call allocations)
    readings()
    sync(args.device)
    ratios, t_surprisal, t_run = interleaved_pairs(surprisal, readings, args.repeats, args.device)
    n_cond = sum(len(it.conditions) for it in suite.items)
    print(f"model {args.model}; suite {suite.name}: {len(suite.items)} items, {n_cond} conditions; batch "
          f"{args.batch_size}; {torch.get_num_threads()} threads; device {args.device}")
    print(f"surprisal run: median {statistics.median(t_surprisal):.3f} s; exact readings: median "
          f"{statistics.median(t_run):.3f} s ({args.repeats} interleaved pairs)")
    on = "" if args.device == "cpu" else f" device={args.device}"
    print(f"RESULT readings_over_surprisal={statistics.median(ratios):.3f} target <=2.0{on}")


if __name__ == "__main__":
    main()

"""Time of every word-level predictor of the 72 SAP ClassicGP items against their surprisal run.

Both run in this process on the same model and items (default: all 72 items of ``sap:ClassicGP``, both
conditions): :func:`mechinterp.surprisal.suite_surprisal` (every word of every condition) and
:func:`mechinterp.word_predictors` with every predictor on: surprisal and entropy, the parse-belief update
from the exact reading estimator after every word, representational reanalysis at every layer, and routing for
the heads ``--heads`` (default ``L11H0 L8H1``, the Gemma-3-270M heads of the issue). ``--repeats`` interleaved
pairs (the order alternates within each pair); the result is the MEDIAN of the per-pair ratios, so a burst of
background load moves one pair, not the result. Target: <= 3.0 (issue 14; ``--device cuda`` runs both on CUDA,
synchronised before each timer is read).
"""

from __future__ import annotations

import statistics

import torch
from timing import interleaved_pairs, suite_args, sync

from mechinterp.compare.predictors import word_predictors
from mechinterp.models import load_model
from mechinterp.stimuli import load_suite
from mechinterp.surprisal import SurprisalConfig, suite_surprisal


def main() -> None:
    ap = suite_args("sap:ClassicGP", 72, 16, 3, "first N items of the suite (default 72: all of SAP ClassicGP)")
    ap.add_argument("--heads", nargs="*", default=["L11H0", "L8H1"])
    args = ap.parse_args()
    model = load_model(args.model, device=args.device)
    suite = load_suite(args.suite).head(args.items)
    cfg = SurprisalConfig(batch_size=args.batch_size)

    def surprisal() -> None:
        suite_surprisal(model, suite, cfg, show_progress=False)

    def predictors() -> None:
        word_predictors(model, suite, heads=args.heads, layers=None, batch_size=args.batch_size)

    surprisal()  # warm-up (tokenizer caches, first-call allocations)
    predictors()
    sync(args.device)
    ratios, t_surprisal, t_run = interleaved_pairs(surprisal, predictors, args.repeats, args.device)
    n_cond = sum(len(it.conditions) for it in suite.items)
    print(f"model {args.model}; suite {suite.name}: {len(suite.items)} items, {n_cond} conditions; heads "
          f"{' '.join(args.heads)}; every layer; batch {args.batch_size}; {torch.get_num_threads()} threads; "
          f"device {args.device}")
    print(f"surprisal run: median {statistics.median(t_surprisal):.3f} s; all predictors: median "
          f"{statistics.median(t_run):.3f} s ({args.repeats} interleaved pairs)")
    on = "" if args.device == "cpu" else f" device={args.device}"
    print(f"RESULT predictors_over_surprisal={statistics.median(ratios):.3f} target <=3.0{on}")


if __name__ == "__main__":
    main()

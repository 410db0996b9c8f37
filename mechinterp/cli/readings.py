"""`mechinterp readings`: the probability the model gives each reading at the end of the ambiguous region."""

from __future__ import annotations

import argparse

import pandas as pd

from mechinterp.cli import common
from mechinterp.readings import exact_readings, load_continuations
from mechinterp.readings.sampled import sampled_readings
from mechinterp.readings.summary import compare_estimators, estimator_line, summarise_readings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("readings", help="reading probabilities per item from next-word mass (exact) and/or "
                                        "parsed samples (sampled)")
    common.add_model(p)
    common.add_suite(p)
    common.add_out(p, help_="one row per item x condition x reading (.csv/.parquet); the per-construction summary "
                            "is written beside it as <name>.summary.<ext> (and <name>.estimators.<ext> with both "
                            "estimators, <name>.samples.<ext> with the classified samples)")
    common.add_seed(p)
    p.add_argument("--method", default="exact", choices=["exact", "sampled", "both"], help="estimator (default exact)")
    p.add_argument("--samples", type=common.positive_int, default=10, help="samples per item and condition (sampled; default 10)")
    p.add_argument("--continuations", metavar="TOML", help="continuation sets (default: the shipped file)")
    p.add_argument("--batch-size", type=common.positive_int, default=8)
    p.add_argument("--n-boot", type=common.positive_int, default=2000)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    sets = load_continuations(args.continuations)
    suite = common.get_suite(args.suite)
    model = common.get_model(args, [suite])
    common.seed_everything(args.seed)
    frames, samples = [], []
    if args.method in ("exact", "both"):
        frames.append(exact_readings(model, suite, continuations=sets, batch_size=args.batch_size, backend=args.backend))
    if args.method in ("sampled", "both"):
        frames.append(sampled_readings(model, suite, n_samples=args.samples, seed=args.seed, samples_out=samples,
                                       batch_size=args.batch_size))
    table = pd.concat(frames, ignore_index=True)
    summary = summarise_readings(table, by=("method", "construction", "condition"), n_boot=args.n_boot, seed=args.seed)
    prov = common.provenance("readings", args, model, [suite], continuations=args.continuations or "shipped")
    common.write(table, out, prov)
    common.write(summary, common.sibling(out, "summary"), prov)
    if samples:
        common.write(pd.DataFrame(samples), common.sibling(out, "samples"), prov)
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if len(frames) == 2:
        est = compare_estimators(frames[0], frames[1])
        common.write(est, common.sibling(out, "estimators"), prov)
        print(est.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(estimator_line(est))
    return 0

"""`mechinterp evaluate`: a SyntaxGym suite's prediction formulas, per item."""

from __future__ import annotations

import argparse

from mechinterp.cli import common
from mechinterp.effects import evaluate_predictions
from mechinterp.surprisal import SurprisalConfig, region_surprisal, suite_surprisal


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a SyntaxGym suite's predictions per item and print the accuracy")
    common.add_model(p)
    common.add_suite(p)
    common.add_out(p)
    p.add_argument("--batch-size", type=common.positive_int, default=16, help="sequences per forward pass (does not change the numbers)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    suite = common.get_suite(args.suite)
    model = common.get_model(args, [suite])
    words = suite_surprisal(model, suite, SurprisalConfig(backend=args.backend, batch_size=args.batch_size))
    res = evaluate_predictions(region_surprisal(words), suite)
    acc = float(res["passed"].mean())
    common.write(res, out, common.provenance("evaluate", args, model, [suite], accuracy=acc))
    for (idx, formula), g in res.groupby(["prediction", "formula"]):  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: groupby keys are Hashable, not tuples
        print(f"prediction {idx} {formula}: {g['passed'].mean():.3f} ({int(g['passed'].sum())}/{len(g)} items)")
    print(f"accuracy: {acc:.3f}")
    return 0

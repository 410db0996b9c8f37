"""`mechinterp surprisal`: one row per word with surprisal and entropy (bits)."""

from __future__ import annotations

import argparse

from mechinterp.cli import common
from mechinterp.cli.options import add_config_options, config_from_args
from mechinterp.surprisal import SurprisalConfig, suite_surprisal

SURPRISAL_FIELDS = ["batch_size", "padding_side", "whitespace"]
SURPRISAL_HELPS = {
    "batch_size": "sequences per forward pass (does not change the numbers)",
    "padding_side": "pad batches on the right or the left (does not change the numbers)",
    "whitespace": "leading: a word owns the whitespace before it; trailing: Pimentel & Meister (2024) correction",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("surprisal", help="word-level surprisal and entropy for a suite")
    common.add_model(p)
    common.add_suite(p)
    common.add_out(p)
    common.add_seed(p)
    add_config_options(p, SurprisalConfig, SURPRISAL_FIELDS, helps=SURPRISAL_HELPS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    suite = common.get_suite(args.suite)
    model = common.get_model(args, [suite])
    common.seed_everything(args.seed)
    cfg = config_from_args(SurprisalConfig, args, SURPRISAL_FIELDS, backend=args.backend)
    df = suite_surprisal(model, suite, cfg)
    multi = df[df["n_tokens"] > 1]
    common.write(df, out, common.provenance("surprisal", args, model, [suite], surprisal_config=cfg.__dict__,
                                            words_with_several_tokens=int(len(multi))))
    return 0

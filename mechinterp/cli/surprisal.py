"""`mechinterp surprisal`: one row per word with surprisal and entropy (bits)."""

from __future__ import annotations

import argparse

from mechinterp.cli import common
from mechinterp.surprisal import SurprisalConfig, suite_surprisal


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("surprisal", help="word-level surprisal and entropy for a suite")
    common.add_model(p)
    common.add_suite(p)
    common.add_out(p)
    common.add_seed(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--padding-side", choices=["right", "left"], default="right")
    p.add_argument("--whitespace", choices=["leading", "trailing"], default="leading",
                   help="leading: a word owns the whitespace before it (default); trailing: Pimentel & Meister (2024) correction")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    suite = common.get_suite(args.suite)
    model = common.get_model(args)
    common.seed_everything(args.seed)
    cfg = SurprisalConfig(backend=args.backend, batch_size=args.batch_size, padding_side=args.padding_side,
                          whitespace=args.whitespace)
    df = suite_surprisal(model, suite, cfg)
    multi = df[df["n_tokens"] > 1]
    common.write(df, out, common.provenance("surprisal", args, model, [suite], surprisal_config=cfg.__dict__,
                                            words_with_several_tokens=int(len(multi))))
    return 0

"""`mechinterp effects`: garden-path effect per construction and ROI with bootstrap intervals."""

from __future__ import annotations

import argparse
from pathlib import Path

from mechinterp.cli import common
from mechinterp.effects import check_rois, garden_path_effects, summarise_effects
from mechinterp.errors import ConfigError
from mechinterp.surprisal import SurprisalConfig, suite_surprisal
from mechinterp.tables import check_out_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("effects", help="garden-path effects (ambiguous - unambiguous surprisal) per construction and ROI")
    common.add_model(p)
    common.add_suite(p)
    common.add_out(p)
    common.add_seed(p)
    p.add_argument("--rois", default="0,1,2", help="word offsets from the disambiguating word (default 0,1,2)")
    p.add_argument("--n-boot", type=common.positive_int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--items-out", help="also write the per-item effects to this table")
    p.add_argument("--batch-size", type=common.positive_int, default=16)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    items_out = check_out_path(args.items_out) if args.items_out else None
    try:
        rois = [int(x) for x in args.rois.split(",") if x.strip()]
    except ValueError as exc:
        raise ConfigError(f"--rois must be comma-separated whole numbers, got {args.rois!r}") from exc
    suite = common.get_suite(args.suite)
    check_rois(suite, rois)
    model = common.get_model(args, [suite])
    common.seed_everything(args.seed)
    words = suite_surprisal(model, suite, SurprisalConfig(backend=args.backend, batch_size=args.batch_size))
    items = garden_path_effects(words, suite, rois)
    summary = summarise_effects(items, n_boot=args.n_boot, seed=args.seed)
    prov = common.provenance("effects", args, model, [suite])
    if items.empty:
        raise ConfigError(f"--rois {args.rois}: no item of suite {suite.name!r} has these ROIs; nothing written")
    common.write(summary, out, prov)
    if items_out:  # after the summary succeeded, so a failed run leaves both tables as they were
        common.write(items, Path(items_out), prov)
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    return 0

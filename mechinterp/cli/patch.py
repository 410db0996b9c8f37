"""`mechinterp patch`: activation (and attribution) patching between the two versions of every item."""

from __future__ import annotations

import argparse

import pandas as pd

from mechinterp.cli import common
from mechinterp.cli.options import add_config_options, config_from_args
from mechinterp.errors import ConfigError
from mechinterp.locate.figures import write_patching_report
from mechinterp.locate.patching import PatchConfig, parse_sweep, patch_suite
from mechinterp.locate.patching.attribution import correlation

PATCH_FIELDS = ["metric", "alternative", "rows_per_pass"]
PATCH_HELPS = {
    "metric": "what a patch changes: surprisal of the disambiguating word, or its log-probability difference",
    "alternative": "logprob_diff: one-token continuation of the preferred reading "
                   "(default per construction: NP/Z ',', NP/S '.', MV/RR '.')",
    "rows_per_pass": "patched rows per batched forward pass (does not change the numbers)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("patch", help="activation / attribution patching sweep (one row per item x site x direction)")
    common.add_model(p, backend=False)  # patches are hooks on the HF modules; every backend reads the same tensor
    p.add_argument("--suite", action="append", required=True,
                   help="built-in suite name or path (repeatable); needs ambiguous/unambiguous conditions")
    common.add_out(p)
    common.add_seed(p)
    p.add_argument("--sweep", default=None,
                   help="site spec; region=* = each region before the disambiguator except the cue. Default: "
                        "'resid_pre|attn_out|mlp_out@*:region=*/last,head_out@*:region=*/last:head=*'")
    p.add_argument("--no-heads", action="store_true", help="default sweep without heads")
    add_config_options(p, PatchConfig, PATCH_FIELDS[:2], helps=PATCH_HELPS)
    p.add_argument("--direction", choices=["both", "clean_to_corrupt", "corrupt_to_clean"], default="both")
    p.add_argument("--method", choices=["both", "exact", "attribution"], default="both")
    p.add_argument("--items", type=common.positive_int, default=None, help="only the first N items of each suite")
    add_config_options(p, PatchConfig, PATCH_FIELDS[2:], helps=PATCH_HELPS)
    p.add_argument("--report", help="also write a plotly HTML report here")
    p.add_argument("--min-gap", type=float, default=0.5,
                   help="report: leave out of averages items whose clean-corrupt gap is <= this many bits "
                        "or goes the wrong way (default 0.5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    if args.report and not args.report.endswith((".html", ".htm")):
        raise ConfigError(f"--report {args.report}: use an .html file name")
    suites = [common.get_suite(s) for s in args.suite]
    model = common.get_model(args, [s.head(args.items) for s in suites])  # the items it will run
    common.seed_everything(args.seed)
    directions = ("clean_to_corrupt", "corrupt_to_clean") if args.direction == "both" else (args.direction,)
    cfg = config_from_args(PatchConfig, args, PATCH_FIELDS, directions=directions)
    frames, skipped, sweeps = [], [], {}
    for suite in suites:
        sites = parse_sweep(args.sweep, model, suite, heads=not args.no_heads)
        sweeps[suite.name] = len(sites)
        items = suite.items[: args.items] if args.items is not None else None
        df = patch_suite(model, suite, sites, cfg, items=items, exact=args.method in ("both", "exact"),
                         attribution=args.method in ("both", "attribution"))
        skipped += df.attrs.get("skipped", [])
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df.attrs["skipped"] = skipped
    extra = {"patch_config": cfg.__dict__, "n_sites": sweeps, "skipped": skipped[:200]}
    if args.method == "both":
        corr = correlation(df)
        by = correlation(df, by=["construction", "component"])
        extra["attribution_vs_exact"] = corr.to_dict("records")
        extra["attribution_vs_exact_by_component"] = by.to_dict("records")
        print(f"attribution vs exact: Pearson r = {corr.pearson.iloc[0]:.3f}, Spearman = {corr.spearman.iloc[0]:.3f} "
              f"(n = {int(corr.n.iloc[0])})")
    prov = common.provenance("patch", args, model, suites, **extra)
    common.write(df, out, prov)
    if args.report:
        write_patching_report(df, args.report, prov.to_json(), min_gap=args.min_gap,
                              title=f"Activation patching: {model.spec.display_name}, {', '.join(s.name for s in suites)}")
        print(f"wrote report {args.report}")
    return 0

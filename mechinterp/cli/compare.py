"""`mechinterp compare`: predicted garden-path effects in ms (original model and interventions) vs human data."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mechinterp.cli import common
from mechinterp.cli.collapse import RUN_DEFAULTS, add_common, collapse_from_args
from mechinterp.compare.figures import write_compare_report
from mechinterp.compare.humans import human_subset, load_sap_effects, noise_ceiling, published_effects
from mechinterp.compare.likeness import compare
from mechinterp.errors import ConfigError
from mechinterp.surprisal import SurprisalConfig
from mechinterp.tables import check_out_path, read_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="human-likeness test: model vs SAP human garden-path effects (ms)")
    common.add_model(p)
    common.add_suite(p)
    common.add_out(p, help_="human-vs-model table per intervention, construction and ROI (.csv/.parquet); order, "
                            "correlation and item tables are written beside it")
    common.add_seed(p)
    add_common(p)
    p.add_argument("--human", metavar="DIR", help="SAP Benchmark directory (with effects/) for by-item effects and "
                   "the noise ceiling (default: the copy shipped with the package)")
    p.add_argument("--subset", default=None, help="SAP subset whose human effects the suite is compared with "
                                                  "(default: the one a SAP item file names, else ClassicGP)")
    p.add_argument("--collapsed", action="append", default=[], metavar="TABLE",
                   help="word tables written by `mechinterp collapse` (repeatable) instead of running interventions")
    p.add_argument("--linking", metavar="JSON", help="a saved linking fit to reuse (else fitted on --naturalstories)")
    p.add_argument("--save-linking", metavar="JSON", help="write the linking fit here")
    p.add_argument("--link-stories", default=None,
                   help="Natural Stories stories to fit the link on, e.g. 1,2,3 (default: all 10)")
    p.add_argument("--report", metavar="HTML", help="also write an HTML report")
    p.add_argument("--n-boot", type=common.positive_int, default=2000)
    p.add_argument("--order-roi", type=int, default=1, choices=[0, 1, 2],
                   help="ROI (0, 1 or 2) at which the construction order is tested (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    report = Path(args.report) if args.report else None
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--report {report}: use an .html file name")
    if not args.linking and str(args.naturalstories).strip().lower() in ("", "none"):
        raise ConfigError("give --naturalstories DIR or 'shipped' (to fit the surprisal-to-ms link) or --linking JSON")
    if args.collapsed and args.intervention:
        raise ConfigError("give either --collapsed tables or --intervention specs, not both")
    given = [f"--{k.replace('_', '-')}" for k, v in RUN_DEFAULTS.items() if getattr(args, k) != v]
    if args.collapsed and given:
        raise ConfigError(f"{', '.join(given)} act where the interventions are run: with --collapsed tables, give "
                          "them to `mechinterp collapse`, which wrote those tables")
    suite = common.get_suite(args.suite)
    subset = human_subset(suite, args.subset)  # before any forward pass
    human = published_effects(subset)
    human_items = load_sap_effects(args.human, subset, "item")
    ceiling = noise_ceiling(args.human)
    model = common.get_model(args, [suite])
    common.seed_everything(args.seed)
    descriptions = {}
    efficacy = None
    if args.collapsed:
        words, sides, effs = [], [], []
        for t in args.collapsed:
            path = check_out_path(t)
            words.append(read_table(path))
            if common.sibling(path, "side_effects").exists():
                sides.append(read_table(common.sibling(path, "side_effects")))
            if common.sibling(path, "efficacy").exists():
                effs.append(read_table(common.sibling(path, "efficacy")))
        words_df = pd.concat(words, ignore_index=True).drop_duplicates(["intervention", "construction", "item", "condition", "word_index"])
        side = pd.concat(sides, ignore_index=True).drop_duplicates("intervention") if sides else None
        if effs:
            efficacy = pd.concat(effs, ignore_index=True).drop_duplicates(
                ["intervention", "method", "construction", "condition"])
    else:
        _, res = collapse_from_args(args, model, suite)
        words_df, side, descriptions, efficacy = res.words, res.side_effects, res.descriptions, res.efficacy
    corpus = None if args.linking else common.natural_stories_arg(args.naturalstories)
    fit = common.linking_fit(args, model, corpus, SurprisalConfig(backend=args.backend, batch_size=args.batch_size))
    if args.save_linking:
        fit.save(args.save_linking)
    cmp = compare(words_df, suite, fit, human, human_items, ceiling, side, order_roi=args.order_roi,
                  n_boot=args.n_boot, seed=args.seed)
    prov = common.provenance("compare", args, model, [suite], linking=fit.to_json(), interventions=descriptions,
                             human_source="SAP Benchmark, Huang et al. (2024), JML; built-in construction effects")
    table = cmp.table()
    common.write(table, out, prov)
    common.write(cmp.order, common.sibling(out, "order"), prov)
    common.write(cmp.items, common.sibling(out, "items"), prov)
    if len(cmp.correlations):
        common.write(cmp.correlations, common.sibling(out, "correlations"), prov)
    if efficacy is not None:
        common.write(efficacy, common.sibling(out, "efficacy"), prov)
    if report is not None:
        write_compare_report(cmp, report, title=f"Collapse and compare: {model.spec.display_name} on {suite.name}",
                             provenance=prov.to_json(), interventions=descriptions, efficacy=efficacy)
        print(f"wrote report {report}")
    cols = ["intervention", "construction", "roi", "effect_bits", "predicted_ms", "human_ms", "ratio", "inside_human_interval"]
    print(table[cols].to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if len(cmp.order):  # a suite of one construction has no construction order
        print(cmp.order[cmp.order["primary"]].to_string(index=False))
    return 0

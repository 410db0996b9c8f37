"""`mechinterp ladder`: the memory ladder (:mod:`mechinterp.compare.ladder`): perplexity, reading-time fit and
garden-path effects of one model as its memory is degraded step by step; the report's figure can carry other
models' ladder tables (``--with``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mechinterp.cli import common
from mechinterp.compare.figures import write_ladder_report
from mechinterp.compare.humans import human_subset
from mechinterp.compare.ladder import ladder_steps, ladder_summary, memory_ladder
from mechinterp.errors import ConfigError
from mechinterp.surprisal import SurprisalConfig
from mechinterp.tables import check_out_path, check_provenance, read_table

COMMAND = "ladder"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(COMMAND, help="the memory ladder: truncation, recency bias and key noise vs perplexity, "
                                     "reading-time fit and garden-path effects")
    common.add_model(p, backend=False)
    common.add_suite(p, default="sap:ClassicGP")
    common.add_out(p, help_="ladder table, one row per step x construction x ROI (.csv/.parquet)")
    common.add_seed(p)
    p.add_argument("--truncate", default="2,3,4,6,8,16,full",
                   help="context sizes in tokens, comma-separated; 'full' = the whole prefix (default "
                        "2,3,4,6,8,16,full; '' for none)")
    p.add_argument("--recency", default="",
                   help="recency-bias slopes lambda (score - lambda x distance in tokens), comma-separated, e.g. "
                        "0,0.05,0.2,1 (default none)")
    p.add_argument("--keynoise", default="",
                   help="key-noise sizes sigma (relative to each key's rms), comma-separated, e.g. 0.5,1,2 "
                        "(default none)")
    p.add_argument("--keynoise-distance", type=common.nonnegative_int, default=8,
                   help="key noise acts on keys more than this many tokens back (default 8)")
    p.add_argument("--naturalstories", default="shipped",
                   help="Natural Stories directory or 'shipped' (default: the copy shipped with the package)")
    p.add_argument("--ns-words", type=common.positive_int, default=300,
                   help="first N words of each of the 10 stories (default 300)")
    p.add_argument("--spillover", type=common.nonnegative_int, default=2, help="deepest spillover lag (default 2)")
    p.add_argument("--folds", type=common.positive_int, default=5,
                   help="cross-validation folds by story (2-10, default 5)")
    p.add_argument("--n-boot", type=common.positive_int, default=1000, help="bootstrap replicates (default 1000)")
    p.add_argument("--batch-size", type=common.positive_int, default=16, help="sentences per forward pass")
    p.add_argument("--report", metavar="HTML", help="also write an HTML report with the ladder figure")
    p.add_argument("--with", dest="with_tables", action="append", default=[], metavar="TABLE",
                   help="another model's ladder table (written by `mechinterp ladder`) to draw in the report's "
                        "figure beside this one (repeatable)")
    p.set_defaults(func=run)


def other_ladders(paths: list[str]) -> list[pd.DataFrame]:
    """The ladder tables of ``--with``, refusing a table some other command wrote."""
    out = []
    for t in paths:
        path = check_out_path(t)
        if not path.exists():
            raise ConfigError(f"--with {t}: no such table")
        if check_provenance(path).get("command") != COMMAND:
            raise ConfigError(f"--with {t}: not a table written by `mechinterp ladder`")
        out.append(read_table(path))
    return out


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    report = Path(args.report) if args.report else None
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--report {report}: use an .html file name")
    steps = ladder_steps(args.truncate, args.recency, args.keynoise, args.keynoise_distance, args.seed)
    others = other_ladders(args.with_tables)
    if not 2 <= args.folds <= 10:
        raise ConfigError(f"--folds must be between 2 and 10 (the Natural Stories stories), got {args.folds}")
    suite = common.get_suite(args.suite)
    subset = human_subset(suite)  # checked before any forward pass; memory_ladder reads that subset's effects
    corpus = common.natural_stories_arg(args.naturalstories)
    if corpus is None:
        raise ConfigError("the ladder needs Natural Stories: give --naturalstories DIR or 'shipped'")
    model = common.get_model(args, [suite], cached=False)  # a copy of its own: the ladder edits attention
    common.seed_everything(args.seed)
    table = memory_ladder(model, suite, corpus, steps, ns_words=args.ns_words,
                          config=SurprisalConfig(batch_size=args.batch_size), lags=args.spillover,
                          n_folds=args.folds, n_boot=args.n_boot, seed=args.seed, log=print)
    prov = common.provenance(COMMAND, args, model, [suite], steps=[s.describe() for s in steps], human_subset=subset,
                             naturalstories=corpus.source,
                             human_source="SAP Benchmark, Huang et al. (2024), JML; Natural Stories (Futrell et al. 2021)")
    common.write(table, out, prov)
    if report is not None:
        both = pd.concat([table, *others], ignore_index=True)
        names = ", ".join(dict.fromkeys(both["model"].astype(str))) if "model" in both.columns else model.name
        write_ladder_report(both, report, title=f"Memory ladder: {names} on {suite.name}", provenance=prov.to_json())
        print(f"wrote report {report}")
    show = ladder_summary(table, roi=0)
    print(show.drop(columns=["model"]).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0

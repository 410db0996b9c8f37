"""`mechinterp fit`: which word-level predictors explain reading times beyond length, frequency and surprisal
(cross-validated by item; :mod:`mechinterp.compare.fit_sets`)."""

from __future__ import annotations

import argparse

import pandas as pd

from mechinterp.cli import common
from mechinterp.compare.fit_sets import (
    check_predictors,
    fit_natural_stories_sets,
    fit_sap_sets,
    natural_stories_predictors,
    predictor_sets,
)
from mechinterp.compare.humans import human_subset, load_sap_effects, noise_ceiling, sap_contrast_suite
from mechinterp.compare.predictors import word_predictors
from mechinterp.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="cross-validated regressions of reading times on word-level predictors")
    common.add_model(p, backend=False)
    common.add_suite(p)
    common.add_out(p, help_="table predictor set x data set (.csv/.parquet); per-fold and per-item tables are "
                            "written beside it")
    common.add_seed(p)
    p.add_argument("--predictors", default="surprisal,entropy_change_bits,reading_tv",
                   help="comma-separated word_predictors columns (surprisal, entropy, entropy_change are aliases; "
                        "default surprisal,entropy_change_bits,reading_tv)")
    p.add_argument("--spillover", type=common.nonnegative_int, default=2, help="deepest spillover lag (default 2)")
    p.add_argument("--folds", type=common.positive_int, default=5, help="cross-validation folds by item (default 5)")
    p.add_argument("--n-boot", type=common.positive_int, default=1000, help="bootstrap replicates (default 1000)")
    p.add_argument("--naturalstories", default="shipped",
                   help="Natural Stories directory, 'shipped' (default) or 'none' to skip that data set")
    p.add_argument("--ns-words", type=common.positive_int, default=None,
                   help="only the first N words of each Natural Stories story (default all)")
    p.add_argument("--batch-size", type=common.positive_int, default=16, help="sentences per forward pass")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    if args.folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {args.folds}")
    predictors = check_predictors(args.predictors.split(","))
    cols = sorted({c for cs in predictor_sets(predictors).values() for c in cs} - {"length", "log_freq"})
    suite = sap_contrast_suite(common.get_suite(args.suite))  # SAP long-layout files: one pair per coefficient
    subset = human_subset(suite, None)
    human_items = load_sap_effects(None, subset, "item")
    ceiling = noise_ceiling()
    corpus = common.natural_stories_arg(args.naturalstories)
    if corpus is not None and args.ns_words:
        corpus = corpus.subset(words_per_story=args.ns_words)
    model = common.get_model(args, [suite])
    common.seed_everything(args.seed)
    readings = any(c.startswith("reading_") for c in cols)
    layers = sorted({int(c.split("_L")[1]) for c in cols if c.startswith(("repr_cos_L", "repr_l2_L"))})
    heads = [c[len("attn_amb_"):] for c in cols if c.startswith("attn_amb_")]
    words = word_predictors(model, suite, heads=heads, layers=layers, batch_size=args.batch_size, readings=readings)
    summaries, folds, items = [], [], None
    if corpus is not None:
        ns = natural_stories_predictors(model, corpus, batch_size=args.batch_size)
        s, f = fit_natural_stories_sets(ns, cols, args.spillover, args.folds, args.n_boot, args.seed)
        summaries.append(s)
        folds.append(f)
    s, f, items = fit_sap_sets(words, suite, human_items, ceiling, predictors, args.spillover, args.folds,
                               args.n_boot, args.seed)
    summaries.append(s)
    folds.append(f)
    table = pd.concat(summaries, ignore_index=True)
    prov = common.provenance("fit", args, model, [suite], human_subset=subset,
                             naturalstories=corpus.source if corpus is not None else None,
                             human_source="SAP Benchmark, Huang et al. (2024), JML; Natural Stories (Futrell et al. 2021)")
    common.write(table, out, prov)
    common.write(pd.concat(folds, ignore_index=True), common.sibling(out, "folds"), prov)
    common.write(items, common.sibling(out, "items"), prov)
    show = [c for c in ("dataset", "set", "n", "loglik_per_word", "r2", "d_loglik_vs_baseline", "d_loglik_vs_surprisal",
                        "item_r", "noise_ceiling") if c in table.columns]
    print(table[show].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0

"""`mechinterp fit`: which word-level predictors explain reading times beyond length, frequency and surprisal
(cross-validated by item; :mod:`mechinterp.compare.fit_sets`)."""

from __future__ import annotations

import argparse

import pandas as pd

from mechinterp.cli import common
from mechinterp.compare.fit_sets import (
    NS_CONTEXT,
    NS_WINDOW,
    PROBE_KINDS,
    check_predictors,
    fit_natural_stories_sets,
    fit_sap_sets,
    natural_stories_predictors,
    predictor_sets,
)
from mechinterp.compare.humans import human_subset, load_sap_effects, noise_ceiling, sap_contrast_suite
from mechinterp.compare.predictors import probe_label, word_predictors
from mechinterp.errors import CacheError, ConfigError
from mechinterp.probes.artifact import ProbeArtifact


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="cross-validated regressions of reading times on word-level predictors")
    common.add_model(p, backend=False)
    common.add_suite(p)
    common.add_out(p, help_="table predictor set x data set (.csv/.parquet); per-fold and per-item tables are "
                            "written beside it")
    common.add_seed(p)
    p.add_argument("--predictors", default="surprisal,entropy_change_bits,reading_tv",
                   help="comma-separated word_predictors columns (surprisal, entropy, entropy_change are aliases; "
                        "probe_p, probe_tv, probe_kl_bits: that column of every --probes probe; default "
                        "surprisal,entropy_change_bits,reading_tv)")
    p.add_argument("--probes", nargs="+", default=[], metavar="DIR",
                   help="saved probe artifacts (directories written by `mechinterp probe`) whose parse-belief "
                        "columns probe_p/probe_tv/probe_kl_bits_<label> become predictors, label "
                        "<construction>_<component>_L<layer>; --predictors names them (probe_tv_<label> or the "
                        "bare probe_tv for every probe); without a probe column there, probe_tv of every probe "
                        "is added")
    p.add_argument("--spillover", type=common.nonnegative_int, default=2, help="deepest spillover lag (default 2)")
    p.add_argument("--folds", type=common.positive_int, default=5, help="cross-validation folds by item (default 5)")
    p.add_argument("--n-boot", type=common.positive_int, default=1000, help="bootstrap replicates (default 1000)")
    p.add_argument("--naturalstories", default="shipped",
                   help="Natural Stories directory, 'shipped' (default) or 'none' to skip that data set")
    p.add_argument("--ns-words", type=common.positive_int, default=None,
                   help="only the first N words of each Natural Stories story (default all)")
    p.add_argument("--ns-window", type=common.positive_int, default=NS_WINDOW,
                   help=f"Natural Stories words per scored window (default {NS_WINDOW}; a window as long as a "
                        "story scores it whole)")
    p.add_argument("--ns-context", type=common.nonnegative_int, default=NS_CONTEXT,
                   help=f"words of left context at the start of each window after a story's first, scored but "
                        f"not kept: every word has at least this much context (default {NS_CONTEXT}; less than "
                        "--ns-window)")
    p.add_argument("--batch-size", type=common.positive_int, default=16, help="sentences per forward pass")
    p.set_defaults(func=run)


def load_probes(dirs: list[str]) -> dict[str, tuple[str, ProbeArtifact]]:
    """Label -> (directory, probe) for each saved probe directory (labels as
    :func:`mechinterp.compare.predictors.probe_label`)."""
    out: dict[str, tuple[str, ProbeArtifact]] = {}
    for d in dirs:
        try:
            probe = ProbeArtifact.load(d)
        except (CacheError, FileNotFoundError, KeyError) as exc:
            raise ConfigError(f"--probes {d}: not a saved probe directory ({exc})") from exc
        label = probe_label(probe)
        if label in out:
            raise ConfigError(f"--probes: two probes are both labelled {label!r} (same construction, component and "
                              "layer); give one of them")
        out[label] = (d, probe)
    return out


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    if args.folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {args.folds}")
    probes = load_probes(args.probes)
    named = args.predictors.split(",")
    if probes and not any(n.strip().startswith(PROBE_KINDS) for n in named):
        named.append("probe_tv")
    predictors = check_predictors(named, list(probes))
    if args.ns_context >= args.ns_window:
        raise ConfigError(f"--ns-context ({args.ns_context}) must be less than --ns-window ({args.ns_window})")
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
    for lab, (d, probe) in probes.items():
        if probe.d_model != model.d_model:
            raise ConfigError(f"--probes {d}: probe {lab} reads d_model {probe.d_model}, the model has "
                              f"{model.d_model}; give probes trained on this model")
    used = {lab: p for lab, (_, p) in probes.items() if any(f"{k}_{lab}" in cols for k in PROBE_KINDS)}
    words = word_predictors(model, suite, probes=used, heads=heads, layers=layers, batch_size=args.batch_size,
                            readings=readings)
    summaries, folds, items = [], [], None
    if corpus is not None:
        ns = natural_stories_predictors(model, corpus, args.ns_window, args.batch_size, args.ns_context, used)
        s, f = fit_natural_stories_sets(ns, cols, args.spillover, args.folds, args.n_boot, args.seed)
        summaries.append(s)
        folds.append(f)
    s, f, items = fit_sap_sets(words, suite, human_items, ceiling, predictors, args.spillover, args.folds,
                               args.n_boot, args.seed)
    summaries.append(s)
    folds.append(f)
    table = pd.concat(summaries, ignore_index=True)
    prov = common.provenance("fit", args, model, [suite], human_subset=subset,
                             probes={lab: probes[lab][0] for lab in used},
                             naturalstories=corpus.source if corpus is not None else None,
                             human_source="SAP Benchmark, Huang et al. (2024), JML; Natural Stories (Futrell et al. 2021)")
    common.write(table, out, prov)
    common.write(pd.concat(folds, ignore_index=True), common.sibling(out, "folds"), prov)
    common.write(items, common.sibling(out, "items"), prov)
    show = [c for c in ("dataset", "set", "n", "loglik_per_word", "r2", "d_loglik_vs_baseline", "d_loglik_vs_surprisal",
                        "item_r", "noise_ceiling", "pooled_r") if c in table.columns]
    print(table[show].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0

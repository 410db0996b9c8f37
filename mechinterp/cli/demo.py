"""`mechinterp demo`: garden-path effects for the built-in suites on a model, as an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mechinterp.cli import common
from mechinterp.effects import garden_path_effects, summarise_effects
from mechinterp.reports.effects import (
    effects_figure,
    item_effects_figure,
    word_surprisal_figure,
)
from mechinterp.reports.html import write_report
from mechinterp.stimuli import builtin_suites
from mechinterp.surprisal import SurprisalConfig, suite_surprisal


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="effects for the built-in suites, written as an HTML report (the README's main job)")
    common.add_model(p)
    common.add_suite(p, many=True)
    common.add_seed(p)
    p.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    p.add_argument("--n-boot", type=int, default=2000)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    suites = [common.get_suite(s) for s in (args.suite or builtin_suites())]
    model = common.get_model(args)
    common.seed_everything(args.seed)
    words, items = [], []
    for suite in suites:
        w = suite_surprisal(model, suite, SurprisalConfig(backend=args.backend))
        words.append(w)
        items.append(garden_path_effects(w, suite))
    words_df, items_df = pd.concat(words, ignore_index=True), pd.concat(items, ignore_index=True)
    summary = summarise_effects(items_df, n_boot=args.n_boot, seed=args.seed)
    prov = common.provenance("demo", args, model, suites)
    common.write(words_df, out / "words.parquet", prov)
    common.write(items_df, out / "item_effects.csv", prov)
    common.write(summary, out / "effects.csv", prov)
    first = suites[0]
    example = first.items[0]
    wrong_way = items_df[(items_df["roi"] == 0) & (items_df["effect_bits"] <= 0)]
    multi = items_df[items_df["multi_token"]]
    notes = (
        f"<p>Model: <b>{model.spec.display_name}</b> (weights sha256 {model.weights_sha256[:16]}…). "
        f"Suites: {', '.join(f'{s.name} ({len(s.items)} items)' for s in suites)}. Effects are ambiguous minus "
        "unambiguous surprisal in bits at the disambiguating word (ROI 0) and the two words after it (ROI 1, 2), "
        "with 95% percentile-bootstrap intervals over items.</p>"
        f"<p>{len(wrong_way)} item(s) go the wrong way at ROI 0; {multi[['construction', 'item']].drop_duplicates().shape[0]} "
        "item(s) have a ROI word made of several tokens (their surprisal is the sum over tokens).</p>"
    )
    path = write_report(
        out / "report.html",
        f"Garden-path effects — {model.spec.display_name}",
        [
            ("", notes),
            ("Effect per construction", effects_figure(summary)),
            ("Summary table", summary),
            ("Items", item_effects_figure(items_df, roi=0)),
            (f"Example: {first.construction_of(example)} item {example.number}",
             word_surprisal_figure(words_df[words_df["suite"] == first.name], first.construction_of(example), example.number)),
            ("Items going the wrong way at ROI 0", wrong_way),
        ],
        prov.to_json(),
    )
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print(f"report: {path}")
    return 0

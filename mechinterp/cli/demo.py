"""`mechinterp demo`: the whole question on one model, as one HTML report.

Five stages, each writing its tidy table (with provenance) under ``--out`` and printing a progress line:

1. **effects**: garden-path effects for the built-in suites (or ``--suite``);
2. **locate**: exact clean -> corrupt patching of ``resid_pre`` at every layer, at the last token of each
   region before the disambiguator, for the first ``--items`` items of ``--focus``;
3. **expose**: reading probes (trained on generated unambiguous sentences) read out on the ambiguous word of
   those items, layer by layer;
4. **collapse**: one intervention (default: clamp the reading direction at the probes' most accurate layer
   towards the reading people prefer) on the first ``--items`` items of each construction of
   ``--compare-suite``, with Natural Stories perplexity and unambiguous-sentence side effects;
5. **compare**: predicted vs human garden-path effects (ms) through a linking fit on part of Natural Stories.

The report opens with a summary whose sentences are computed from those tables
(:mod:`mechinterp.reports.workbench`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from mechinterp.cli import common
from mechinterp.compare.figures import effects_figure as compare_figure
from mechinterp.compare.figures import headline_table
from mechinterp.compare.humans import (
    human_subset,
    load_natural_stories,
    load_sap_effects,
    noise_ceiling,
    published_effects,
)
from mechinterp.compare.likeness import compare
from mechinterp.effects import garden_path_effects, summarise_effects
from mechinterp.errors import ConfigError
from mechinterp.explore.demo import first_items, small_link
from mechinterp.interventions.collapse import run_collapse
from mechinterp.interventions.spec import build, parse_spec
from mechinterp.layers import parse_layers
from mechinterp.locate.figures import NOTES, curves, heatmaps, summarise
from mechinterp.locate.patching import PatchConfig, parse_sweep, patch_suite
from mechinterp.probes import ProbeSettings, run_probes
from mechinterp.probes.figures import readout_figure
from mechinterp.progress import Stage
from mechinterp.reports import workbench as wb
from mechinterp.reports.effects import effects_figure, item_effects_figure
from mechinterp.reports.html import write_report
from mechinterp.stimuli import builtin_suites
from mechinterp.surprisal import SurprisalConfig, suite_surprisal

#: Settings of a full run and of ``--quick`` (a smoke run), for options left unset.
DEFAULTS = {"items": 8, "probe_layers": "every 2", "probe_sentences": 40, "ns_words": 100, "n_boot": 2000}
QUICK = {"items": 3, "probe_layers": "every 4", "probe_sentences": 20, "ns_words": 40, "n_boot": 200}
N_STAGES = 6


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole question on one model (effects, patching, probes, collapse, "
                                    "human comparison) as one HTML report (the README's main job)")
    common.add_model(p)
    common.add_suite(p, many=True)
    common.add_seed(p)
    common.add_out_dir(p, default="out/demo", help_="output directory (default out/demo)")
    p.add_argument("--n-boot", type=common.positive_int, default=None, help="bootstrap resamples (default 2000; --quick 200)")
    p.add_argument("--quick", action="store_true", help="smallest settings (a smoke run; defaults below in brackets)")
    p.add_argument("--items", type=common.positive_int, default=None,
                   help="items (per construction) for patching, probes, collapse and comparison (default 8 [3])")
    p.add_argument("--focus", default="npz", help="suite for patching and probes (default npz)")
    p.add_argument("--probe-layers", default=None, help="probe layers in the layer grammar ('*', N, N-M, 'every K', joined "
                                                        "by '+'; default 'every 2' ['every 4'])")
    p.add_argument("--probe-sentences", type=common.positive_int, default=None,
                   help="generated training sentences per reading (default 40 [20])")
    p.add_argument("--intervention", default=None, metavar="SPEC",
                   help="the collapse intervention (default: clamp:layer=<probes' most accurate layer>,"
                        "fit=readings,n_fit=<--probe-sentences>,target=preferred,shift=1)")
    p.add_argument("--compare-suite", default="sap:ClassicGP",
                   help="suite for collapse and the human comparison (default sap:ClassicGP)")
    p.add_argument("--ns-stories", default="1,2", help="Natural Stories stories for the link and perplexity (default 1,2)")
    p.add_argument("--ns-words", type=common.positive_int, default=None, help="first N words of each story (default 100 [40])")
    p.set_defaults(func=run)


def settings(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options left unset from :data:`DEFAULTS` (or :data:`QUICK` with ``--quick``).

    Args:
        args: The parsed command line.

    Returns:
        The same namespace, completed.

    Example:
        >>> settings(parser.parse_args(["demo", "--quick"])).items
        3
    """
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def stage_effects(args: argparse.Namespace, model: Any, out: Path) -> dict[str, Any]:
    """Stage 1: garden-path effects for ``--suite`` (default: every built-in suite).

    Args:
        args: The completed command line (:func:`settings`).
        model: The loaded model.
        out: The output directory (``words.parquet``, ``item_effects.csv``, ``effects.csv``).

    Returns:
        ``suites``, ``words``, ``items`` (per-item effects) and ``summary`` (per construction and ROI).

    Example:
        >>> stage_effects(settings(args), model, Path("out/demo"))["summary"]
    """
    suites = [common.get_suite(s) for s in (args.suite or builtin_suites())]
    words, items = [], []
    for suite in suites:
        w = suite_surprisal(model, suite, SurprisalConfig(backend=args.backend))
        words.append(w)
        items.append(garden_path_effects(w, suite))
    words_df, items_df = pd.concat(words, ignore_index=True), pd.concat(items, ignore_index=True)
    summary = summarise_effects(items_df, n_boot=args.n_boot, seed=args.seed)
    prov = common.provenance("demo", args, model, suites, stage="effects")
    common.write(words_df, out / "words.parquet", prov)
    common.write(items_df, out / "item_effects.csv", prov)
    common.write(summary, out / "effects.csv", prov)
    return {"suites": suites, "words": words_df, "items": items_df, "summary": summary}


def stage_patching(args: argparse.Namespace, model: Any, suite: Any, out: Path) -> dict[str, Any]:
    """Stage 2: exact clean -> corrupt patching of ``resid_pre`` at every layer, at the last token of each
    region before the disambiguator (``patch.parquet``, ``patch_summary.csv``).

    Args:
        args: The completed command line.
        model: The loaded model.
        suite: The (cut) focus suite.
        out: The output directory.

    Returns:
        ``table`` (one row per item x site) and ``summary`` (:func:`mechinterp.locate.figures.summarise`).

    Example:
        >>> stage_patching(args, model, first_items(load_suite("npz"), 4), Path("out/demo"))["summary"]
    """
    sites = parse_sweep("resid_pre@*:region=*/last", model, suite)
    cfg = PatchConfig(directions=("clean_to_corrupt",))
    df = patch_suite(model, suite, sites, cfg, exact=True)
    prov = common.provenance("demo", args, model, [suite], stage="patching", n_sites=len(sites),
                             skipped=df.attrs.get("skipped", [])[:50])
    summary = summarise(df, min_gap=0.5, n_boot=min(args.n_boot, 1000), seed=args.seed)
    common.write(df, out / "patch.parquet", prov)
    common.write(summary, out / "patch_summary.csv", prov)
    return {"table": df, "summary": summary}


def probe_settings(args: argparse.Namespace) -> ProbeSettings:
    """The probe stage's settings: ``--probe-sentences`` per reading, two folds, no controls or baselines.

    Args:
        args: The completed command line (:func:`settings`).

    Returns:
        The :class:`~mechinterp.probes.ProbeSettings`.

    Raises:
        ConfigError: ``--probe-sentences`` outside the range the probes accept, named with the limit.

    Example:
        >>> probe_settings(settings(parser.parse_args(["demo", "--quick"]))).n_per_class
        20
    """
    try:
        return ProbeSettings(n_per_class=args.probe_sentences, folds=2, control=False, random_directions=0,
                             baselines=False, transfer=False, bootstrap=max(100, min(args.n_boot, 1000)))
    except ValidationError as exc:
        raise ConfigError(f"--probe-sentences {args.probe_sentences}: {exc.errors()[0]['msg']}") from None


def stage_probes(args: argparse.Namespace, model: Any, suite: Any, out: Path) -> dict[str, Any]:
    """Stage 3: reading probes on generated unambiguous sentences, read out on the suite's ambiguous word
    (``probe_verdicts.csv``, ``probe_metrics.csv``, ``probe_readout.parquet``).

    Args:
        args: The completed command line (``--probe-layers``, ``--probe-sentences``).
        model: The loaded model.
        suite: The (cut) focus suite.
        out: The output directory.

    Returns:
        ``result`` (:class:`mechinterp.probes.ProbeResult`) and ``layers``.

    Example:
        >>> stage_probes(args, model, suite, Path("out/demo"))["result"].verdicts
    """
    layers = parse_layers(args.probe_layers, model.n_layers)
    ps = probe_settings(args)
    res = run_probes(model, suite, layers, settings=ps, seed=args.seed, backend=args.backend)
    prov = common.provenance("demo", args, model, [suite], stage="probes", layers=layers,
                             probe_settings=ps.model_dump())
    common.write(res.verdicts, out / "probe_verdicts.csv", prov)
    common.write(res.metrics, out / "probe_metrics.csv", prov)
    common.write(res.readout, out / "probe_readout.parquet", prov)
    return {"result": res, "layers": layers}


def default_intervention(verdicts: pd.DataFrame, n_layers: int, n_fit: int = 150) -> str:
    """Clamp the reading direction towards the preferred reading at the probes' most accurate layer (the
    middle layer when there is no probe), fit on generated unambiguous sentences.

    Args:
        verdicts: The probe stage's verdicts table.
        n_layers: The model's number of layers.
        n_fit: Generated sentences per reading and construction to fit the clamp on.

    Returns:
        An intervention spec (:mod:`mechinterp.interventions.spec`).

    Example:
        >>> default_intervention(res.verdicts, 18)
        'commit=clamp:layer=6,fit=readings,n_fit=150,target=preferred,shift=1'
    """
    layer = int(verdicts.loc[verdicts["accuracy"].idxmax(), "layer"]) if len(verdicts) else n_layers // 2
    return f"commit=clamp:layer={layer},fit=readings,n_fit={n_fit},target=preferred,shift=1"


def stage_collapse(args: argparse.Namespace, model: Any, suite: Any, spec_text: str, corpus: Any,
                   out: Path) -> dict[str, Any]:
    """Stage 4: the suite scored with the unmodified model and under one intervention, with side effects
    (``collapse.parquet``, ``collapse.effects.csv``, ``collapse.summary.csv``, ``collapse.side_effects.csv``).

    Args:
        args: The completed command line.
        model: The loaded model.
        suite: The (cut) comparison suite.
        spec_text: The intervention spec.
        corpus: Natural Stories (perplexity on the first ``--ns-words`` words of each story).
        out: The output directory.

    Returns:
        ``result`` (:class:`mechinterp.interventions.collapse.CollapseResult`), ``summary`` (effects per
        intervention, construction and ROI) and ``name`` (the intervention's name).

    Example:
        >>> stage_collapse(args, model, suite, "commit=clamp:layer=8,fit=readings", corpus, Path("out/demo"))
    """
    spec = parse_spec(spec_text)
    built = {spec.name: build(model, spec, suite, backend=args.backend)}
    res = run_collapse(model, suite, built, SurprisalConfig(backend=args.backend), corpus, args.ns_words)
    summary = summarise_effects(res.effects, by=("intervention", "construction", "roi"), n_boot=args.n_boot,
                                seed=args.seed)
    prov = common.provenance("demo", args, model, [suite], stage="collapse", intervention=spec.model_dump(),
                             interventions=res.descriptions)
    common.write(res.words, out / "collapse.parquet", prov)
    common.write(res.effects, out / "collapse.effects.csv", prov)
    common.write(summary, out / "collapse.summary.csv", prov)
    common.write(res.side_effects, out / "collapse.side_effects.csv", prov)
    if res.efficacy is not None:
        common.write(res.efficacy, out / "collapse.efficacy.csv", prov)
    return {"result": res, "summary": summary, "name": spec.name}


def stage_compare(args: argparse.Namespace, model: Any, suite: Any, collapse: Any, corpus: Any,
                  out: Path) -> dict[str, Any]:
    """Stage 5: a linking fit on part of Natural Stories and the comparison with the SAP human effects
    (``link.json``, ``compare.csv``, ``compare.order.csv``, ``compare.items.csv``, ``compare.correlations.csv``).

    Args:
        args: The completed command line (``--ns-stories``, ``--ns-words``, ``--n-boot``).
        model: The loaded model.
        suite: The comparison suite (SAP ClassicGP by default).
        collapse: Stage 4's :class:`~mechinterp.interventions.collapse.CollapseResult`.
        corpus: Natural Stories.
        out: The output directory.

    Returns:
        ``comparison`` (:class:`mechinterp.compare.likeness.Comparison`) and ``fit`` (the linking fit).

    Example:
        >>> stage_compare(args, model, suite, col["result"], corpus, Path("out/demo"))["comparison"].table()
    """
    fit = small_link(model, corpus, _stories(args.ns_stories), args.ns_words)
    fit.save(out / "link.json")
    subset = human_subset(suite)
    cmp = compare(collapse.words, suite, fit, published_effects(subset), load_sap_effects(None, subset, "item"),
                  noise_ceiling(), collapse.side_effects, n_boot=args.n_boot, seed=args.seed)
    prov = common.provenance("demo", args, model, [suite], stage="compare", linking=fit.to_json(),
                             human_source=f"SAP Benchmark, Huang et al. (2024), JML; subset {subset}")
    common.write(cmp.table(), out / "compare.csv", prov)
    common.write(cmp.order, out / "compare.order.csv", prov)
    common.write(cmp.items, out / "compare.items.csv", prov)
    if len(cmp.correlations):
        common.write(cmp.correlations, out / "compare.correlations.csv", prov)
    return {"comparison": cmp, "fit": fit}


def _stories(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise ConfigError(f"--ns-stories must be comma-separated story numbers, got {text!r}") from exc


def run(args: argparse.Namespace) -> int:
    """Run the five stages and write ``report.html`` and ``summary.csv`` under ``--out``.

    Args:
        args: The parsed command line.

    Returns:
        0 on success.

    Example:
        >>> run(build_parser().parse_args(["demo", "--quick"]))
        0
    """
    settings(args)
    out = Path(args.out_dir)
    if args.intervention:
        parse_spec(args.intervention)  # a bad spec fails before anything heavy
    probe_settings(args)  # and so does a bad probe setting
    stories = _stories(args.ns_stories)
    effect_suites = [common.get_suite(s) for s in (args.suite or builtin_suites())]
    focus = first_items(common.get_suite(args.focus), args.items)
    human_suite = first_items(common.get_suite(args.compare_suite), args.items, per_construction=True)
    human_subset(human_suite)  # a suite without published human effects is refused before any work
    model = common.get_model(args, [*effect_suites, focus, human_suite])
    common.seed_everything(args.seed)
    corpus = load_natural_stories().subset(stories)
    cons = focus.constructions[0]
    sentences: dict[str, str] = {}

    with Stage(1, N_STAGES, "garden-path effects"):
        eff = stage_effects(args, model, out)
        sentences["effect"] = wb.effect_sentence(eff["summary"])
    with Stage(2, N_STAGES, f"patching {cons} ({len(focus.items)} items, resid_pre at every layer)"):
        patch = stage_patching(args, model, focus, out)
        sentences["where"] = wb.patching_sentence(patch["summary"])
    with Stage(3, N_STAGES, f"reading probes for {cons} (layers {args.probe_layers})"):
        probes = stage_probes(args, model, focus, out)
        sentences["hold"] = wb.probe_sentence(probes["result"].verdicts)
    spec_text = args.intervention or default_intervention(probes["result"].verdicts, model.n_layers, args.probe_sentences)
    with Stage(4, N_STAGES, f"collapse: {spec_text} on {human_suite.name} ({len(human_suite.items)} items)"):
        col = stage_collapse(args, model, human_suite, spec_text, corpus, out)
        sentences["forced"] = wb.collapse_sentence(col["summary"], col["result"].side_effects, col["name"],
                                                   efficacy=col["result"].efficacy)
    with Stage(5, N_STAGES, "human comparison (linking fit on Natural Stories, SAP effects)"):
        cmp = stage_compare(args, model, human_suite, col["result"], corpus, out)
        sentences["humans"] = wb.compare_sentence(cmp["comparison"].table(), cmp["comparison"].order,
                                                  cmp["fit"].ms_per_bit(), col["name"])
    with Stage(6, N_STAGES, "report"):
        summary = wb.summary_table(sentences)
        prov = common.provenance("demo", args, model, [*eff["suites"], focus, human_suite], intervention=spec_text)
        common.write(summary, out / "summary.csv", prov)
        blocks = report_blocks(model, eff, patch, probes, col, cmp, summary, focus, human_suite, spec_text)
        path = write_report(out / "report.html", f"The ambiguity workbench \u2014 {model.spec.display_name}", blocks,
                            prov.to_json())
    for r in summary.itertuples():
        print(f"{r.question} {r.answer}")
    print(f"report: {path}")
    return 0


def report_blocks(model: Any, eff: dict, patch: dict, probes: dict, col: dict, cmp: dict, summary: pd.DataFrame,
                  focus: Any, human_suite: Any, spec_text: str) -> list[tuple[str, Any]]:
    """The report: the summary, then one part per stage.

    Args:
        model: The loaded model.
        eff, patch, probes, col, cmp: What :func:`stage_effects`, :func:`stage_patching`, :func:`stage_probes`,
            :func:`stage_collapse` and :func:`stage_compare` returned.
        summary: :func:`mechinterp.reports.workbench.summary_table` output.
        focus: The suite of parts 2 and 3; human_suite: the suite of parts 4 and 5.
        spec_text: The intervention.

    Returns:
        (heading, block) pairs for :func:`mechinterp.reports.html.write_report`.

    Example:
        >>> write_report(path, title, report_blocks(model, eff, patch, probes, col, cmp, summary, focus, hs, spec))
    """
    cons = focus.constructions[0]
    suites = ", ".join(f"{s.name} ({len(s.items)} items)" for s in eff["suites"])
    per_cons = len(human_suite.items) // max(1, len(human_suite.constructions))
    items_df = eff["items"]
    blocks: list[tuple[str, Any]] = [
        ("Summary", wb.summary_html(summary, model.spec.display_name)),
        ("", (f"<p>Model: <b>{model.spec.display_name}</b> (weights sha256 {model.weights_sha256[:16]}\u2026). "
              "Every sentence above is computed from the tables written beside this report.</p>")),
        ("1. Garden-path effects", ("<p>Ambiguous minus unambiguous surprisal (bits) at the disambiguating word "
                                    "(ROI 0) and the two words after it, 95% percentile-bootstrap intervals over "
                                    "items. Suites: " + suites + ".</p>")),
        ("", effects_figure(eff["summary"])),
        ("", eff["summary"]),
        ("", item_effects_figure(items_df, roi=0)),
    ]
    fig = heatmaps(patch["summary"], cons, "clean_to_corrupt") if len(patch["summary"]) else None
    blocks.append((f"2. Where: patching {cons} ({len(focus.items)} items)", NOTES))
    if fig is not None:
        blocks += [("", fig), ("", curves(patch["summary"], cons, "clean_to_corrupt", "resid_pre"))]
    else:
        blocks.append(("", "<p class='warn'>No item had a clear garden-path gap: nothing to locate.</p>"))
    res = probes["result"]
    blocks += [
        (f"3. Which reading: probes on the ambiguous word ({cons})",
         ("<p>Probes are trained on generated unambiguous sentences whose structure fixes the reading (never on "
          "the minimal pairs) and read out at the last token of the ambiguous region. Verdict rule: "
          "mechinterp/probes/README.md.</p>")),
        ("", readout_figure(res.verdicts)),
        ("", res.verdicts[["layer", "accuracy", "accuracy_low", "p_ambiguous", "p_unambiguous", "p_preferred_anchor",
                           "p_other_anchor", "z", "z_low", "z_high", "verdict"]]),
        (f"4. Forcing one reading: {spec_text}",
         (f"<p>Items: the first {per_cons} of each construction of {human_suite.name}. Side effects: Natural "
          "Stories perplexity and the unambiguous sentences.</p>")),
        ("", col["summary"]),
        ("", col["result"].side_effects),
        ("5. Against people (SAP Benchmark)", (f"<p>Link: {cmp['fit'].ms_per_bit():.2f} ms per bit, R\u00b2 = "
                                               f"{cmp['fit'].r2:.3f} on {cmp['fit'].n} Natural Stories words.</p>")),
        ("", headline_table(cmp["comparison"])),
        ("", compare_figure(cmp["comparison"])),
        ("Construction order", cmp["comparison"].order),
    ]
    if len(cmp["comparison"].correlations):
        blocks.append(("Item-level correlation with human by-item effects", cmp["comparison"].correlations.round(3)))
    return blocks

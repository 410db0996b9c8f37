"""`mechinterp sae`: sparse autoencoders trained offline with SAE-Lens, and the features of each reading.

    mechinterp sae corpus [--sources wordnet[,fortunes|templates]] [--force] [--deb-dir DIR]
    mechinterp sae train --layer 6 [--n-tokens 200000 --width 2048 --k 32 --steps 600] --out-dir DIR
    mechinterp sae quality --sae DIR [--report quality.html]
    mechinterp sae features --sae DIR [--suite npz ...] --out features.csv [--report features.html]
    mechinterp sae card --sae DIR --feature 123 [--probe DIR_OR_NPY ...] --report card.html
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from mechinterp.cli import common
from mechinterp.cli.options import add_config_options, config_fields, config_from_args
from mechinterp.errors import ConfigError
from mechinterp.layers import check_layer_text, check_layers
from mechinterp.reports.html import write_report
from mechinterp.saes.cards import CardConfig, build_card, stimulus_activations
from mechinterp.saes.corpus import load_corpus, prepare_corpus
from mechinterp.saes.features import FeatureConfig, suite_features
from mechinterp.saes.figures import card_blocks, features_blocks, quality_blocks
from mechinterp.saes.load import load_sae
from mechinterp.saes.readings import ReadingFeatureConfig, reading_features
from mechinterp.saes.train import TrainConfig, train_sae
from mechinterp.stimuli import builtin_suites
from mechinterp.tables import check_out_path

log = logging.getLogger(__name__)


SAE_COMPONENTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")

# `sae train` options generated from TrainConfig (layer and component are parsed by the command)
TRAIN_FIELDS = ["n_tokens", "n_holdout_tokens", "d_sae", "k", "steps", "batch_size", "lr", "lr_end_fraction",
                "lr_warm_up_steps", "dead_feature_window", "context_size", "holdout_fraction", "sources",
                "model_batch_size", "seed"]
TRAIN_NAMES = {"d_sae": "width"}
TRAIN_HELPS = {
    "d_sae": "number of latents", "k": "active latents per token (TopK)", "steps": "optimiser steps",
    "batch_size": "activations per optimiser step", "lr_end_fraction": "final learning rate as a fraction of --lr (cosine decay)",
    "lr_warm_up_steps": "learning-rate warm-up steps", "sources": "corpus sources (see `sae corpus`)",
    "model_batch_size": "documents per forward pass while caching activations", "seed": "random seed",
    "holdout_fraction": "fraction of the corpus documents held out for the quality measures",
}
TRAIN_DEFAULTS = {name: f.default for name, f in config_fields(TrainConfig).items()}

# `sae card` options generated from CardConfig
CARD_FIELDS = ["n_top", "n_docs", "n_top_tokens", "sources", "context_size"]
CARD_HELPS = {
    "n_top": "top contexts shown per feature", "n_docs": "corpus documents to scan if the SAE has no stored examples",
    "n_top_tokens": "top output tokens shown", "sources": "corpus sources (default: those it was trained on)",
    "context_size": "tokens per corpus document (default: the SAE's training context size)",
}


def _sources(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def one_layer(text: str, n_layers: int | None, option: str) -> int | None:
    """The single layer an option names, in the layer-list grammar (:mod:`mechinterp.layers`).

    Args:
        text: The option's value.
        n_layers: The model's layer count; None before the model is loaded (only the grammar and the sign
            are checked then, and None is returned).
        option: The option, for messages.

    Returns:
        The layer, or None when ``n_layers`` is None.

    Raises:
        ConfigError: Not exactly one layer, a negative one, or one out of range.
    """
    try:
        if n_layers is None:
            check_layer_text(text)
            return None
        layers = check_layers(text, n_layers)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if len(layers) != 1:
        raise ConfigError(f"{option} {text!r}: give one layer, not {len(layers)}")
    return layers[0]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sae", help="sparse autoencoders: training corpus, training, quality, features, cards")
    ssub = p.add_subparsers(dest="sae_command", metavar="SAE_COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    c = ssub.add_parser("corpus", help="fetch and prepare the SAE training text (Debian packages, offline after)")
    c.add_argument("--sources", type=_sources, default=("wordnet",),
                   help="comma-separated: wordnet (default; WordNet 3.0 licence), fortunes (opt-in, mixed "
                        "licences), templates (built-in, small)")
    c.add_argument("--force", action="store_true", help="fetch and parse again")
    c.add_argument("--deb-dir", default=None, help="directory holding already downloaded .deb files")
    c.set_defaults(func=run_corpus)

    t = ssub.add_parser("train", help="train a TopK SAE with SAE-Lens on one site of the model (CPU)")
    common.add_model(t, backend=False)
    t.add_argument("--layer", required=True, help="the block to train on: one layer (layer-list grammar, e.g. 6)")
    t.add_argument("--component", default=TRAIN_DEFAULTS["component"], choices=list(SAE_COMPONENTS),
                   help=f"site component (default {TRAIN_DEFAULTS['component']})")
    add_config_options(t, TrainConfig, TRAIN_FIELDS, names=TRAIN_NAMES, helps=TRAIN_HELPS)
    t.add_argument("--n-ce-docs", type=common.positive_int, default=128, help="held-out documents for the spliced CE loss (default 128)")
    common.add_out_dir(t, help_="output directory (SAE-Lens format)")
    t.set_defaults(func=run_train)

    q = ssub.add_parser("quality", help="print (and plot) an SAE's quality record")
    q.add_argument("--sae", required=True, help="SAE directory")
    q.add_argument("--report", default=None, help="write an HTML report here")
    q.set_defaults(func=run_quality)

    f = ssub.add_parser("features", help="features whose activation differs between the readings, with attribution")
    common.add_model(f, backend=False)
    common.add_suite(f, many=True)
    f.add_argument("--sae", required=True, help="SAE directory (trained here or any SAE-Lens SAE)")
    f.add_argument("--layer", default=None, help="override the SAE's layer: one layer (layer-list grammar)")
    f.add_argument("--component", default=None, choices=list(SAE_COMPONENTS), help="override the SAE's component")
    f.add_argument("--permutations", type=common.positive_int, default=20_000, help="sign-flip permutations per test (default 20000)")
    f.add_argument("--alpha", type=common.positive_float, default=0.05, help="false discovery rate (BH) and baseline threshold (default 0.05)")
    f.add_argument("--min-active", type=common.nonnegative_int, default=3, help="test features active in at least this many items (default 3)")
    f.add_argument("--ablate-top", type=common.nonnegative_int, default=5, help="verify the top-N attributed features by ablation (default 5)")
    f.add_argument("--no-attribution", action="store_true", help="skip gradients and ablations")
    f.add_argument("--batch-size", type=common.positive_int, default=8, help="sequences per forward pass (default 8)")
    common.add_seed(f)
    common.add_out(f, help_="feature statistics table (.csv or .parquet); attribution and summary tables beside it")
    f.add_argument("--report", default=None, help="write an HTML report here")
    f.add_argument("--no-readings", action="store_true",
                   help="skip the features of each reading found on generated unambiguous sentences "
                        "(mechinterp.saes.readings; written as <out>.readings and <out>.readings_on_stimuli)")
    f.set_defaults(func=run_features)

    k = ssub.add_parser("card", help="a feature card: top contexts, activation along a sentence, probe cosines")
    common.add_model(k, backend=False)
    k.add_argument("--sae", required=True)
    k.add_argument("--feature", type=common.nonnegative_int, required=True, action="append", help="feature index (repeatable)")
    k.add_argument("--suite", action="append", default=None, help="stimulus suites to scan (default: all built-in)")
    k.add_argument("--sentence", default=None, help="example sentence (default: the stimulus where it fires most)")
    k.add_argument("--probe", action="append", default=[], help="probe artifact directory or .npy/.safetensors vector")
    add_config_options(k, CardConfig, CARD_FIELDS, helps=CARD_HELPS)
    k.add_argument("--report", required=True, help="HTML card")
    k.add_argument("--out", default=None, help="also write the card's contexts as a table (.csv/.parquet)")
    k.set_defaults(func=run_card)


def run_corpus(args: argparse.Namespace) -> int:
    path = prepare_corpus(args.sources, force=args.force, deb_dir=args.deb_dir)
    corpus = load_corpus(args.sources, fetch=False)
    info = corpus.identity()
    print(f"corpus {'+'.join(args.sources)}: {info['n_documents']} documents, {info['n_words']} words in {path}")
    for s in info["sources"]:
        print(f"  {s['name']}: {s['license']}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    one_layer(args.layer, None, "--layer")  # grammar and sign, before anything is loaded
    config_from_args(TrainConfig, args, TRAIN_FIELDS, TRAIN_NAMES, layer=0, component=args.component)
    common.seed_everything(args.seed)
    corpus = load_corpus(args.sources)
    model = common.get_model(args, [])  # trained on a text corpus, not a suite
    layer = one_layer(args.layer, model.n_layers, "--layer")
    cfg = config_from_args(TrainConfig, args, TRAIN_FIELDS, TRAIN_NAMES, layer=layer, component=args.component)
    res = train_sae(model, corpus, cfg, args.out_dir, n_ce_docs=args.n_ce_docs)
    _print_quality(res.quality)

    write_report(res.path / "quality.html", f"SAE quality: {res.quality.get('site')}", quality_blocks(res.quality),
                 provenance=res.sae.training.get("provenance"))
    print(f"wrote SAE to {res.path} (quality: {res.path / 'quality.json'}, {res.path / 'quality.html'})")
    return 0


def _print_quality(q: dict) -> None:
    h, s = q.get("heldout", {}), q.get("spliced") or {}
    print(f"site {q.get('site')}  width {q.get('d_sae')}  k {q.get('k')}  tokens seen {q.get('tokens_seen')}  "
          f"train {q.get('train_time_s')} s  cache {q.get('cache_time_s')} s")
    print(f"held-out ({h.get('n_tokens')} tokens): L0 {h.get('l0'):.1f}  FVE {h.get('fve'):.3f}  "
          f"dead {h.get('dead_fraction'):.1%}  dense {h.get('dense_fraction'):.1%}")
    if s:
        print(f"spliced ({s['n_tokens']} predictions): CE clean {s['ce_clean']:.3f}  SAE {s['ce_sae']:.3f}  "
              f"zero-abl {s['ce_zero']:.3f}  mean-abl {s['ce_mean']:.3f} nats; recovered vs zero "
              f"{s['ce_recovered_vs_zero']:.1%}, vs mean {s['ce_recovered_vs_mean']:.1%}; KL SAE {s['kl_sae']:.3f} "
              f"vs mean-abl {s['kl_mean']:.3f}")


def run_quality(args: argparse.Namespace) -> int:
    sae = load_sae(args.sae)
    q = sae.quality()
    if q is None:
        raise ConfigError(f"{args.sae} has no quality.json (SAEs trained with `mechinterp sae train` have one)")
    _print_quality(q)
    if args.report:
        write_report(args.report, f"SAE quality: {q.get('site')}", quality_blocks(q), provenance=sae.training.get("provenance"))
        print(f"wrote {args.report}")
    return 0


def run_features(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    if args.report and not args.report.endswith((".html", ".htm")):
        raise ConfigError(f"--report {args.report}: use an .html file name")
    if args.layer is not None:
        one_layer(args.layer, None, "--layer")
    cfg = FeatureConfig(n_permutations=args.permutations, alpha=args.alpha, min_active_items=args.min_active,
                        attribution=not args.no_attribution, ablate_top=args.ablate_top,
                        batch_size=args.batch_size, seed=args.seed)
    suites = [common.get_suite(s) for s in (args.suite or builtin_suites())]
    model = common.get_model(args, suites)
    layer = one_layer(args.layer, model.n_layers, "--layer") if args.layer is not None else None
    sae = load_sae(args.sae, layer=layer, component=args.component)
    common.seed_everything(args.seed)
    res = suite_features(model, sae, suites, cfg)
    prov = common.provenance("sae features", args, model, suites, sae=sae.identity(), feature_config=cfg.__dict__)
    common.write(res.stats, out, prov)
    for name, df in (("attribution", res.attribution), ("summary", res.summary), ("coactivation", res.coactivation)):
        if df is not None and len(df):
            path = out.with_name(f"{out.stem}.{name}{out.suffix}")
            common.write(df, path, prov)
    print(res.summary.to_string(index=False) if len(res.summary) else "no feature passed the tests")
    if not args.no_readings:
        rcfg = ReadingFeatureConfig(n_permutations=min(args.permutations, 10_000), alpha=args.alpha, seed=args.seed)
        parts = [(s.name, reading_features(model, sae, s, rcfg)) for s in suites if s.ambiguity is not None]
        for name in ("stats", "on_stimuli"):
            df = pd.concat([getattr(r, name).assign(suite=n) for n, r in parts], ignore_index=True)
            path = out.with_name(f"{out.stem}.readings{'' if name == 'stats' else '_on_stimuli'}{out.suffix}")
            common.write(df, path, prov)
        on = pd.concat([r.on_stimuli for _, r in parts], ignore_index=True)
        if len(on):
            print("\nfeatures of each reading (generated sentences) at the ambiguous word:")
            print(on.drop(columns=["features"]).to_string(index=False))
    if args.report:
        write_report(args.report, f"SAE features per reading ({sae.hook_name})", features_blocks(res, cfg),
                     provenance=prov.to_json())
        print(f"wrote {args.report}")
    return 0


def run_card(args: argparse.Namespace) -> int:
    out = check_out_path(args.out) if args.out else None
    if not args.report.endswith((".html", ".htm")):
        raise ConfigError(f"--report {args.report}: use an .html file name")
    sae = load_sae(args.sae)
    suites = [common.get_suite(s) for s in (args.suite or builtin_suites())]
    model = common.get_model(args, suites)
    cfg = config_from_args(CardConfig, args, CARD_FIELDS)
    scan = stimulus_activations(model, sae, suites)  # shared by all cards
    blocks = []
    tables = []
    for feat in args.feature:
        card = build_card(model, sae, feat, suites, probes=args.probe, sentence=args.sentence, cfg=cfg, stimuli=scan)
        blocks += card_blocks(card)
        tables.append(card.contexts)
    prov = common.provenance("sae card", args, model, suites, sae=sae.identity())
    write_report(args.report, f"SAE feature card(s) {', '.join(map(str, args.feature))} ({sae.hook_name})", blocks,
                 provenance=prov.to_json())
    print(f"wrote {args.report}")
    if out is not None:
        common.write(pd.concat(tables, ignore_index=True), out, prov)
    return 0


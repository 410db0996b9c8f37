"""`mechinterp collapse`: word surprisal, garden-path effects and side effects under interventions."""

from __future__ import annotations

import argparse
from pathlib import Path

from mechinterp.cli import common
from mechinterp.effects import summarise_effects
from mechinterp.errors import ConfigError
from mechinterp.interventions.collapse import run_collapse
from mechinterp.interventions.spec import build_all, parse_spec
from mechinterp.surprisal import SurprisalConfig

SPEC_HELP = ("intervention spec, repeatable: [NAME=]KIND:key=value,... with KIND leace (layers=6+9, a layer list), clamp (layer=9, "
             "target=ambiguous, shift=1), sae (sae=DIR, remove=ambiguous, mode=ablate), truncate (k=3); '+KIND:' composes "
             "parts; JSON or @file.json also work (see mechinterp.interventions.spec)")


#: Defaults of the options that matter only where the interventions are run (``compare --collapsed`` reads the
#: tables of a ``collapse`` run instead, so it refuses other values).
RUN_DEFAULTS = {"ns_words": 150, "readings": "exact", "samples": 10, "collapse_factor": 2.0}


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--intervention", action="append", default=[], metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--naturalstories", metavar="DIR", default="shipped",
                   help="Natural Stories directory (all_stories.tok, processed_wordinfo.tsv) for side effects and "
                        "the surprisal-to-ms link (default: the copy shipped with the package; 'none' to skip)")
    p.add_argument("--ns-words", type=common.positive_int, default=RUN_DEFAULTS["ns_words"],
                   help="side effects: first N words of each story (default 150, i.e. 1,500 words)")
    p.add_argument("--batch-size", type=common.positive_int, default=16)
    p.add_argument("--readings", default=RUN_DEFAULTS["readings"], choices=["exact", "sampled", "none"],
                   help="efficacy: reading probabilities before and after each intervention, exact (default), "
                        "exact and sampled (slow; --samples per item), or none")
    p.add_argument("--samples", type=common.positive_int, default=RUN_DEFAULTS["samples"],
                   help="samples per item and condition with --readings sampled")
    p.add_argument("--collapse-factor", type=common.positive_float, default=RUN_DEFAULTS["collapse_factor"],
                   help="an intervention collapsed the model if P(dispreferred reading) fell at least this many "
                        "times (default 2)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collapse", help="garden-path effects and side effects under interventions (erasure, clamp, SAE, truncation)")
    common.add_model(p)
    common.add_suite(p)
    common.add_out(p, help_="per-word surprisal table (.csv/.parquet); item effects and side effects are written "
                            "beside it as <name>.effects.<ext>, <name>.side_effects.<ext>, and the reading "
                            "probabilities and efficacy as <name>.readings.<ext> and <name>.efficacy.<ext>")
    common.add_seed(p)
    add_common(p)
    p.set_defaults(func=run)


def collapse_from_args(args: argparse.Namespace, model, suite):
    specs = [parse_spec(s) for s in args.intervention]  # fail on a bad spec before loading anything heavy
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"intervention names must differ: {names} (name them with NAME=...)")
    corpus = common.natural_stories_arg(args.naturalstories)
    if specs:
        print(f"fitting {', '.join(names)} ...")
    built = build_all(model, specs, suite, backend=args.backend)
    cfg = SurprisalConfig(backend=args.backend, batch_size=args.batch_size)
    opts = {"sampled": args.samples if args.readings == "sampled" else 0, "seed": args.seed,
            "factor": args.collapse_factor}
    return specs, run_collapse(model, suite, built, cfg, corpus, args.ns_words, log=print,
                               readings=args.readings != "none", readings_options=opts)


def write_efficacy(res, out: Path, prov) -> None:
    """Write ``<out>.readings.<ext>`` and ``<out>.efficacy.<ext>`` (if readings were computed) and print it."""
    if res.efficacy is None:
        return
    common.write(res.readings, common.sibling(out, "readings"), prov)
    common.write(res.efficacy, common.sibling(out, "efficacy"), prov)
    cols = ["intervention", "method", "construction", "condition", "p_dispreferred", "ratio", "collapsed"]
    print(res.efficacy[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    suite = common.get_suite(args.suite)
    model = common.get_model(args, [suite])
    common.seed_everything(args.seed)
    specs, res = collapse_from_args(args, model, suite)
    prov = common.provenance("collapse", args, model, [suite], interventions=res.descriptions,
                             specs=[s.model_dump() for s in specs], flagged_perplexity=res.flagged())
    common.write(res.words, out, prov)
    common.write(res.effects, common.sibling(out, "effects"), prov)
    common.write(res.side_effects, common.sibling(out, "side_effects"), prov)
    write_efficacy(res, out, prov)

    summ = summarise_effects(res.effects, by=("intervention", "construction", "roi"), seed=args.seed)
    print(summ.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print(res.side_effects.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    for name in res.flagged():
        print(f"WARNING: {name} raises Natural Stories perplexity by more than 5%")
    return 0

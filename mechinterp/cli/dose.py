"""`mechinterp dose`: the dose-response of the learned intervention (the strongest collapse a KL budget allows)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mechinterp.cli import common
from mechinterp.cli.options import add_config_options, config_fields
from mechinterp.compare.humans import load_sap_effects, noise_ceiling, published_effects
from mechinterp.errors import ConfigError
from mechinterp.interventions.dose import DEFAULT_BUDGETS, dose_figure, dose_response, write_figure
from mechinterp.interventions.learned import LearnedTraining
from mechinterp.interventions.spec import LearnedSpec, parse_spec
from mechinterp.lists import number_list
from mechinterp.provenance import write_provenance
from mechinterp.surprisal import SurprisalConfig

TRAINING_OPTIONS = ["steps", "lr", "prefixes", "windows", "window", "n_fit", "train_words", "heldout_words", "bisect",
                    "max_scale"]
HUMAN_SUBSET = "ClassicGP"


def budget_list(text: str) -> tuple[float, ...]:
    """argparse ``type=``: comma-separated positive numbers."""
    try:
        out = tuple(number_list(text, "--budgets"))
    except ConfigError:
        out = ()
    if not out or 0 in out:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive numbers (nats per token), got {text!r}")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dose", help="dose-response of the learned intervention: fit it at several KL budgets, then "
                                    "reading probabilities, garden-path effects, perplexity and human-likeness")
    common.add_model(p, backend=False)
    common.add_suite(p)
    common.add_out(p, help_="dose-response table (.csv/.parquet): one row per form, budget, construction and ROI; "
                            "beside it <name>.fits, <name>.readings, <name>.efficacy, <name>.effects and "
                            "<name>.side_effects tables and the figure <name>.html")
    common.add_out_dir(p, required=False, help_="directory to save every fitted intervention in (a subdirectory per "
                                                "form and budget with learned.safetensors and learned.json)")
    common.add_seed(p)
    p.add_argument("--intervention", action="append", default=[], metavar="SPEC",
                   help="a learned form, repeatable, e.g. learned:method=steer,layers=6 or "
                        "learned:method=subspace,layers=6,rank=2 (the budget comes from --budgets; default: both "
                        "forms at the middle layer)")
    p.add_argument("--budgets", type=budget_list, default=DEFAULT_BUDGETS, metavar="B,B,...",
                   help="KL budgets in nats per token on held-out Natural Stories text (default "
                        f"{','.join(map(str, DEFAULT_BUDGETS))})")
    p.add_argument("--naturalstories", metavar="DIR", default="shipped",
                   help="Natural Stories directory for training, the held-out budget check, perplexity and the "
                        "surprisal-to-ms link (default: the copy shipped with the package)")
    p.add_argument("--ns-words", type=common.positive_int, default=150,
                   help="perplexity side effect: first N words of each story (default 150)")
    p.add_argument("--batch-size", type=common.positive_int, default=SurprisalConfig().batch_size)
    p.add_argument("--linking", metavar="JSON", help="a saved linking fit to reuse (else fitted on Natural Stories)")
    p.add_argument("--link-stories", default=None,
                   help="Natural Stories stories to fit the link on, e.g. 1,2,3 (default: all 10)")
    p.add_argument("--n-boot", type=common.positive_int, default=1000, help="bootstrap resamples (default 1000)")
    add_config_options(p, LearnedTraining, TRAINING_OPTIONS)
    p.set_defaults(func=run)


def forms_from_args(args: argparse.Namespace, n_layers: int | None = None) -> list[LearnedSpec]:
    """The learned forms of ``--intervention`` (default: a steering vector and a rank-2 subspace at layer
    ``n_layers // 2``)."""
    texts = args.intervention or ([f"learned:method=steer,layers={n_layers // 2}",
                                   f"learned:method=subspace,layers={n_layers // 2},rank=2"] if n_layers else [])
    forms = []
    for text in texts:
        spec = parse_spec(text)
        if len(spec.parts) != 1 or not isinstance(spec.parts[0], LearnedSpec):
            raise ConfigError(f"--intervention {text!r}: dose takes learned forms (learned:method=...,layers=...)")
        forms.append(spec.parts[0])
    return forms


def training_overrides(args: argparse.Namespace) -> dict:
    """The training options given on the command line (a form's own keys take precedence)."""
    fields = config_fields(LearnedTraining)
    out = {name: getattr(args, name) for name in TRAINING_OPTIONS if getattr(args, name) != fields[name].default}
    out["seed"] = args.seed
    return out


def run(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    forms_from_args(args)  # a bad spec fails before anything heavy is loaded
    corpus = common.natural_stories_arg(args.naturalstories)
    if corpus is None:
        raise ConfigError("--naturalstories: the learned intervention needs Natural Stories (its KL budget is "
                          "measured there); give a directory or 'shipped'")
    suite = common.get_suite(args.suite)
    model = common.get_model(args, [suite])
    common.seed_everything(args.seed)
    forms = forms_from_args(args, model.n_layers)
    cfg = SurprisalConfig(batch_size=args.batch_size)
    link = common.linking_fit(args, model, corpus, cfg)
    sap = suite.name == f"items_{HUMAN_SUBSET}"  # by-item human effects exist for the SAP items only
    res = dose_response(model, suite, forms, args.budgets, corpus, link, published_effects(HUMAN_SUBSET),
                        load_sap_effects(None, HUMAN_SUBSET, "item") if sap else None,
                        noise_ceiling() if sap else None, training_overrides(args), cfg, args.ns_words, args.n_boot,
                        args.seed, log=print)
    if args.out_dir:
        for name, iv in res.interventions.items():
            d = Path(args.out_dir) / name.replace(" kl<=", "-kl").replace("@", "-L").replace("+", "_")
            iv.save(d)
            print(f"saved {name} to {d}")
    prov = common.provenance("dose", args, model, [suite], forms=[f.model_dump(mode="json") for f in forms],
                             fits={n: iv.describe() for n, iv in res.interventions.items()}, linking=link.to_json())
    common.write(res.table, out, prov)
    common.write(res.fits, common.sibling(out, "fits"), prov)
    if res.collapse.readings is not None and res.collapse.efficacy is not None:
        common.write(res.collapse.readings, common.sibling(out, "readings"), prov)
        common.write(res.collapse.efficacy, common.sibling(out, "efficacy"), prov)
    common.write(res.collapse.effects, common.sibling(out, "effects"), prov)
    common.write(res.collapse.side_effects, common.sibling(out, "side_effects"), prov)
    fig_path = out.with_suffix(".html")
    write_figure(dose_figure(res.table, title=f"Dose-response: {model.spec.display_name} on {suite.name}"), fig_path)
    write_provenance(fig_path, prov)
    print(f"wrote figure {fig_path} (provenance: {fig_path.name}.provenance.json)")
    print(res.fits[["intervention", "heldout_kl", "scale", "fit_seconds"]].to_string(index=False))
    cols = ["form", "budget", "heldout_kl", "roi", "p_dispreferred", "p_dispreferred_low", "p_dispreferred_high",
            "effect_bits", "predicted_ms", "human_ms", "ns_perplexity", "order_matches", "item_r"]
    with pd.option_context("display.width", 250):
        for cons, g in res.table.groupby("construction", sort=False):
            print(f"\n{cons}")
            print(g[cols].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    return 0

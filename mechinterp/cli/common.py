"""Options every command shares (--model, --suite, --out, --seed ...) and how results are written."""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from mechinterp.compare.humans import NaturalStories, load_natural_stories
from mechinterp.compare.linking import LinkingFit, fit_natural_stories
from mechinterp.errors import ConfigError
from mechinterp.models import BACKENDS, DEFAULT_MODEL, Model, load_model
from mechinterp.models.placement import DTYPES, check_device
from mechinterp.provenance import Provenance
from mechinterp.stimuli import Suite, load_suite
from mechinterp.surprisal import SurprisalConfig
from mechinterp.tables import check_out_path, write_table
from mechinterp.tokenization import check_context


def add_model(p: argparse.ArgumentParser, backend: bool = True) -> None:
    """Add ``--model`` and, for commands whose forward passes can run on any backend, ``--backend``.

    Args:
        p: The command's parser.
        backend: Whether the command offers ``--backend`` (only commands that use it do).
    """
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registry name or local HF directory (default {DEFAULT_MODEL})")
    add_placement(p)
    if backend:
        p.add_argument("--backend", default="hf", choices=list(BACKENDS),
                       help="forward backend: hf, transformer_lens or nnsight (same numbers; default hf)")


def add_placement(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype`` (grammar in :mod:`mechinterp.models.placement`), for every command that loads a
    model; both are recorded in the provenance of what it writes."""
    p.add_argument("--device", default="auto", type=_argtype(check_device), metavar="{auto,cpu,cuda,cuda:N}",
                   help="where the model runs: auto (a GPU when there is one, else the CPU), cpu, cuda or cuda:N "
                        "(default auto)")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES),
                   help="the weights' dtype (default float32; surprisal is computed in float32 whatever it is)")


def _argtype(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """A ConfigError-raising check as an argparse ``type=`` (its message becomes the usage error)."""

    def parse(text: str) -> Any:
        try:
            return check(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = check.__name__
    return parse


def add_suite(p: argparse.ArgumentParser, default: str | None = None, many: bool = False) -> None:
    help_ = "built-in suite name or path to a SyntaxGym .json / SAP .csv file"
    if many:
        p.add_argument("--suite", action="append", default=None, help=help_ + " (repeatable; default: all built-in)")
    else:
        p.add_argument("--suite", default=default, required=default is None, help=help_)


def add_out(p: argparse.ArgumentParser, required: bool = True, help_: str = "output table (.csv or .parquet)") -> None:
    """``--out``: always a table (.csv or .parquet), checked before any work by :func:`out_path`."""
    p.add_argument("--out", required=required, help=help_)


def add_out_dir(p: argparse.ArgumentParser, required: bool = True, default: str | None = None,
                help_: str = "output directory") -> None:
    """``--out-dir``: always a directory (commands that write several files and artifacts)."""
    p.add_argument("--out-dir", required=required and default is None, default=default, help=help_)


def _bounded(kind: type, low: float, strict: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{what} {kind.__name__}, got {text!r}") from None
        if kind is float and value != value:  # NaN
            raise argparse.ArgumentTypeError(f"{what} number, got {text!r}")
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"{what} {kind.__name__}, got {text!r}")
        return value

    return parse


positive_int = _bounded(int, 0, True, "must be a positive")
"""argparse ``type=``: a whole number >= 1 (``--batch-size``, ``--n-boot``, ``--items`` ...)."""
nonnegative_int = _bounded(int, 0, False, "must be a non-negative")
"""argparse ``type=``: a whole number >= 0."""
positive_float = _bounded(float, 0.0, True, "must be a positive")
"""argparse ``type=``: a number > 0."""
nonnegative_float = _bounded(float, 0.0, False, "must be a non-negative")
"""argparse ``type=``: a number >= 0."""


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")


def check_out_dirs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output directory option (``--out-dir``, ``--store``) that names a file."""
    for name in ("out_dir", "store"):
        value = getattr(args, name, None)
        if isinstance(value, str) and value and Path(value).exists() and not Path(value).is_dir():
            raise ConfigError(f"--{name.replace('_', '-')} {value} is a file: give a directory")


def sibling(path: Path, part: str) -> Path:
    """A table written beside another: ``out/words.parquet`` -> ``out/words.<part>.parquet``."""
    return path.with_name(f"{path.stem}.{part}{path.suffix}")


def natural_stories_arg(value: str | None):
    """The Natural Stories corpus named by a ``--naturalstories`` option: ``shipped`` (the package's copy), a
    directory, or ``none``/empty for no corpus."""
    if value is None or value.strip().lower() in ("", "none"):
        return None
    return load_natural_stories(None if value == "shipped" else value)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def out_path(args: argparse.Namespace) -> Path:
    """Check --out before any expensive work starts."""
    return check_out_path(args.out)


def get_model(args: argparse.Namespace, suites: Sequence[Suite], cached: bool = True) -> Model:
    """Load ``--model`` for a run over ``suites`` and refuse, before any forward pass, a suite with a sentence
    longer than the model's context length (:func:`mechinterp.tokenization.check_context`). Every command
    loads its model here, so every command makes that check, once; give ``[]`` for a command that runs the
    model over no suite.

    Args:
        args: The parsed command line (``--model``).
        suites: Every suite the command will run the model over.
        cached: Share the process's loaded copy (False: a copy of its own, for commands that edit the model's
            attention, which a copy some other backend has taken over would not honour).
    """
    model = load_model(args.model, device=getattr(args, "device", "auto"), dtype=getattr(args, "dtype", "float32"),
                       cached=cached)
    check_context(model, suites)
    return model


def get_suite(spec: str) -> Suite:
    return load_suite(spec)


def provenance(
    command: str, args: argparse.Namespace, model: Model | None = None, suites: list[Suite] | None = None, **extra: Any
) -> Provenance:
    config = {k: v for k, v in vars(args).items() if k not in {"func"} and not callable(v)}
    suite_ids = [s.identity() for s in suites or []]
    return Provenance(
        command=command,
        config=config,
        model=model.identity() if model is not None else None,
        suite=suite_ids[0] if len(suite_ids) == 1 else ({"suites": suite_ids} if suite_ids else None),
        seed=getattr(args, "seed", None),
        extra=extra,
    )


def write(df: pd.DataFrame, path: Path, prov: Provenance) -> None:
    write_table(df, path, prov)
    print(f"wrote {len(df)} rows to {path} (provenance: {path.name}.provenance.json)")


def linking_fit(args: argparse.Namespace, model: Model, corpus: "NaturalStories | None",
                config: SurprisalConfig) -> LinkingFit:
    """The surprisal-to-ms link of a run: ``--linking`` (a saved fit, refused when it was made for another
    model) or, without it, a fit on ``corpus`` (only the stories of ``--link-stories`` when given).

    Args:
        args: the command line (``--linking``, ``--link-stories``).
        model: the model the link is for.
        corpus: Natural Stories (needed when no saved fit is given).
        config: how to score the corpus.
    """
    if args.linking:
        fit = LinkingFit.load(args.linking)
        if fit.model and fit.model.get("weights_sha256") != model.weights_sha256:
            raise ConfigError(f"the linking fit {args.linking} was made for another model ({fit.model.get('name')})")
        return fit
    if corpus is None:
        raise ConfigError("the surprisal-to-ms link needs Natural Stories: give --naturalstories or --linking")
    print("fitting the surprisal-to-ms link on Natural Stories ...")
    if args.link_stories:
        try:
            stories = [int(x) for x in args.link_stories.split(",") if x.strip()]
        except ValueError as exc:
            raise ConfigError(f"--link-stories must be comma-separated story numbers, got {args.link_stories!r}") from exc
        corpus = corpus.subset(stories)
    fit, _ = fit_natural_stories(model, corpus, config)
    return fit

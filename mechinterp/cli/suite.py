"""`mechinterp suite check FILE` and `mechinterp suite convert IN OUT`: how a suite file will be read.

``check`` prints the format and spacing convention, then per item and condition the regions, the words (and,
with ``--model``, each region's tokens for that model) and the regions of interest from the ambiguity
annotation (the disambiguating region and the spillover after it), and finally every problem found, one per
line on stderr, each naming the item and the column or field at fault. It exits 2 if there is any problem.

``convert`` rewrites a suite as a spreadsheet (``.csv``/``.tsv``, with its ``.meta.json`` sidecar) or as a
SyntaxGym ``.json`` file, chosen by the output's extension.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mechinterp.cli import common
from mechinterp.errors import MechinterpError, SuiteError
from mechinterp.models import load_model
from mechinterp.stimuli.library import (
    BUILTIN_DIR,
    builtin_suites,
    load_suite,
    suite_format,
)
from mechinterp.stimuli.syntaxgym import write_syntaxgym
from mechinterp.stimuli.table import check_spreadsheet, write_spreadsheet
from mechinterp.stimuli.types import Suite
from mechinterp.tokenization import tokenize_condition

EXIT_PROBLEMS = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("suite", help="check how a stimulus suite is read, or convert it between formats")
    ssub = p.add_subparsers(dest="suite_command", required=True)
    c = ssub.add_parser("check", help="validate a suite and print its regions, words, tokens and ROIs")
    c.add_argument("file", help="built-in suite name, SyntaxGym .json, .csv/.tsv spreadsheet or SAP .csv")
    c.add_argument("--model", default=None, help="also show each region's tokens for this model")
    common.add_placement(c)
    c.add_argument("--max-items", type=common.positive_int, default=None, help="print at most this many items (all are checked)")
    c.set_defaults(func=run_check)
    v = ssub.add_parser("convert", help="convert a suite: spreadsheet (.csv/.tsv) <-> SyntaxGym .json")
    v.add_argument("input", help="the suite to read (any supported format)")
    v.add_argument("output", help="where to write: .json (SyntaxGym) or .csv/.tsv (spreadsheet)")
    v.add_argument("--inline", action="store_true", help="spreadsheet: regions in one '|'-separated column")
    v.set_defaults(func=run_convert)


def read_with_problems(spec: str) -> tuple[Suite | None, str, list[str]]:
    """Read a suite, collecting problems rather than raising.

    Args:
        spec: A built-in name or a file path.

    Returns:
        ``(suite or None, format, problems)``.
    """
    if spec in builtin_suites():
        fmt = "syntaxgym-json (built-in)"
        path = BUILTIN_DIR / f"{spec}.json"
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            return None, "?", [f"suite file {path} does not exist"]
        try:
            fmt = suite_format(path)
        except SuiteError as exc:
            return None, "?", [str(exc)]
    if fmt == "table":
        suite, problems = check_spreadsheet(path)
        return suite, fmt, problems
    try:
        return load_suite(spec), fmt, []
    except MechinterpError as exc:
        return None, fmt, str(exc).splitlines()


def describe(suite: Suite, model=None, max_items: int | None = None) -> list[str]:
    """Lines describing how each item and condition is read.

    Args:
        suite: The suite.
        model: A loaded model, to show each region's tokens; or None.
        max_items: Describe at most this many items.

    Returns:
        The lines to print.
    """
    lines = []
    amb = suite.ambiguity
    if amb is not None:
        spill = amb.disambiguating_region + 1
        lines.append(
            f"ROIs: disambiguating region {amb.disambiguating_region} ({suite.region_meta.get(amb.disambiguating_region, '-')}), "
            f"spillover region {spill} ({suite.region_meta.get(spill, '-')}); ambiguous region {amb.ambiguous_region}, "
            f"cue region {amb.cue_region}; conditions {amb.ambiguous_condition!r} vs {amb.unambiguous_condition!r}"
        )
    else:
        lines.append("ROIs: none (the suite has no ambiguity annotation)")
    for p in suite.predictions:
        lines.append(f"prediction: {p.formula}")
    for it in suite.items[: max_items if max_items is not None else len(suite.items)]:
        lines.append(f"item {it.key}" + (f" ({it.construction})" if it.construction else ""))
        for c in it.conditions:
            extra = "".join(f" {k}={v}" for k, v in (("ambiguous", c.ambiguous), ("reading", c.reading)) if v is not None)
            lines.append(f"  condition {c.name}{extra}: {c.text!r}")
            tt = tokenize_condition(model, c) if model is not None else None
            for r in c.regions:
                name = suite.region_meta.get(r.number, "")
                words = [w.text for w in c.region_words(r.number)]
                line = f"    region {r.number:>2} {name:<14} {r.content!r:<32} words={words}"
                if tt is not None and model is not None:
                    ids = [tt.input_ids[i] for i in tt.tokens_of_region(r.number)]
                    line += f" tokens={model.tokenizer.convert_ids_to_tokens(ids)}"
                lines.append(line)
    return lines


def run_check(args: argparse.Namespace) -> int:
    suite, fmt, problems = read_with_problems(args.file)
    print(f"file: {args.file}\nformat: {fmt}")
    if suite is not None:
        print(f"suite: {suite.name} ({len(suite.items)} items)\nspacing: {suite.spacing}")
        model = None
        if args.model:
            model = load_model(args.model, device=args.device, dtype=args.dtype)
        try:
            print("\n".join(describe(suite, model, args.max_items)))
        except MechinterpError as exc:
            problems.append(str(exc))
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(problems)} problem(s)" if problems else "ok: no problems found", file=sys.stderr if problems else sys.stdout)
    return EXIT_PROBLEMS if problems else 0


def run_convert(args: argparse.Namespace) -> int:
    suite = load_suite(args.input)
    out = Path(args.output)
    if out.suffix.lower() == ".json":
        write_syntaxgym(suite, out)
    elif out.suffix.lower() in (".csv", ".tsv"):
        write_spreadsheet(suite, out, inline=args.inline)
    else:
        raise SuiteError(f"{out}: the output must end in .json (SyntaxGym) or .csv/.tsv (spreadsheet)")
    print(f"wrote {suite.name} ({len(suite.items)} items, spacing {suite.spacing}) to {out}")
    return 0

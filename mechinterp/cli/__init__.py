"""The ``mechinterp`` command. Each subcommand lives in its own module of this package and defines
``register(subparsers)``; modules are discovered automatically."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from mechinterp.cli import common
from mechinterp.errors import MechinterpError


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (``mechinterp cmd: error: ...``, with a
    pointer to ``--help``) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mechinterp",
        description="Workbench for how language models hold the readings of garden-path sentences.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "register"):
            mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        common.check_out_dirs(args)
        return int(args.func(args) or 0)
    except MechinterpError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message's layout
        print(f"mechinterp {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mechinterp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Commands as sweep jobs: which ``mechinterp`` commands a sweep file can run, checking a ``[[command]]``
table's options against the real command-line parser, building the command line of one job, and running it
in this process with its output captured.

A command can be swept when it loads a model (``--model``) and writes a table (``--out``) or a directory
(``--out-dir``). The sweep sets ``--model``, ``--suite``, ``--seed``, ``--device``, ``--dtype``, ``--out``
and ``--out-dir`` itself; the options that name another file the command writes (``--report``,
``--items-out``, ``--save-linking``) take a file name inside the job's directory.

The parser is imported lazily (the command-line package imports the sweep package).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import re
from pathlib import Path, PurePosixPath
from typing import Any

from mechinterp.cli import build_parser, main
from mechinterp.errors import MechinterpError

#: Options a sweep sets for every command job (never given in ``[command.options]``).
SET_BY_SWEEP = ("out", "out-dir", "model", "suite", "seed", "device", "dtype")
#: Options naming another file the command writes: a relative file name inside the job's directory.
OUTPUT_FILES = ("report", "items-out", "save-linking")
#: Options that never change a command's results (left out of the job id).
NOT_IN_ID = ("batch-size", "model-batch-size")

OptionValue = str | int | float | bool | list[str | int | float]


class CommandFailed(MechinterpError):
    """A command job exited with a non-zero status; the message is the command's error line."""


@functools.lru_cache(maxsize=1)
def sweepable_commands() -> dict[str, dict[str, argparse.Action]]:
    """The commands a sweep file can run, by their words (``"sae train"``), each with its options by name
    without the leading dashes.

    Returns:
        ``{"patch": {"sweep": <argparse action>, ...}, ...}``, every command that takes ``--model`` and
        ``--out`` or ``--out-dir``.

    Example:
        >>> "readings" in sweepable_commands()
        True
    """
    out: dict[str, dict[str, argparse.Action]] = {}

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for action in subs:
            for name, child in action.choices.items():
                walk(child, [*words, name])
        if words and not subs:
            opts = {a.option_strings[-1].lstrip("-"): a for a in parser._actions
                    if a.option_strings and not isinstance(a, argparse._HelpAction)}
            if "model" in opts and ("out" in opts or "out-dir" in opts):
                out[" ".join(words)] = opts

    walk(build_parser(), [])
    return out


def takes(run: str, option: str) -> bool:
    """Whether the command ``run`` (its words) has the option ``option`` (name without dashes).

    Args:
        run: The command's words, e.g. ``"sae train"``.
        option: The option's name, e.g. ``"suite"``.

    Example:
        >>> takes("sae train", "suite")
        False
    """
    return option in sweepable_commands().get(run, {})


def requires(run: str, option: str) -> bool:
    """Whether the command ``run`` cannot run without the option ``option``.

    Example:
        >>> requires("patch", "suite")
        True
    """
    action = sweepable_commands().get(run, {}).get(option)
    return bool(action is not None and action.required)


def option_name(key: str) -> str:
    """The option name a ``[command.options]`` key stands for (``n_per_class`` and ``n-per-class`` alike).

    Example:
        >>> option_name("items_out")
        'items-out'
    """
    return key.lstrip("-").replace("_", "-")


def check_command(run: str, options: dict[str, Any]) -> list[tuple[str | None, str]]:
    """Every problem with one ``[[command]]`` table, as ``(options key or None, message)``.

    Checks that the command can be swept, that each option exists and is not one the sweep sets, that flags are
    ``true``/``false``, lists are given only for repeatable options, and output file names stay inside the job
    directory. Values are checked later by :func:`check_values` (the real parser).

    Args:
        run: The command's words.
        options: The ``[command.options]`` table as written.

    Example:
        >>> check_command("patch", {"out": "x.csv"})[0][1].startswith("--out is set by the sweep")
        True
    """
    commands = sweepable_commands()
    if run not in commands:
        return [(None, f"unknown command {run!r}: a sweep runs one of {', '.join(sorted(commands))}")]
    opts = commands[run]
    problems: list[tuple[str | None, str]] = []
    seen: dict[str, str] = {}
    for key, value in options.items():
        name = option_name(key)
        if name in seen:
            problems.append((key, f"--{name} is given twice (as {seen[name]!r} and {key!r})"))
            continue
        seen[name] = key
        if name in SET_BY_SWEEP:
            problems.append((key, f"--{name} is set by the sweep: give models, suites and seeds in [[command]] "
                                  "or [grid], device and dtype in [sweep]; tables and directories go into the "
                                  "results store"))
            continue
        action = opts.get(name)
        if action is None:
            problems.append((key, f"unknown option --{name} of mechinterp {run} "
                                  f"(options: {', '.join(sorted(n for n in opts if n not in SET_BY_SWEEP))})"))
            continue
        is_flag = action.nargs == 0
        if is_flag and not isinstance(value, bool):
            problems.append((key, f"--{name} is a flag: write true or false (got {value!r})"))
        elif not is_flag and isinstance(value, bool):
            problems.append((key, f"--{name} takes a value, not {str(value).lower()}"))
        elif isinstance(value, list) and not isinstance(action, argparse._AppendAction):
            problems.append((key, f"--{name} is not repeatable: give one value, not a list"))
        elif isinstance(value, list) and not value:
            problems.append((key, "the list is empty"))
        elif name in OUTPUT_FILES and not _inside(str(value)):
            problems.append((key, f"--{name} is written into the job's directory: give a relative file name "
                                  f"without '..' (got {value!r})"))
    return problems


def _inside(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return bool(name) and not p.is_absolute() and ".." not in p.parts


def command_argv(run: str, options: dict[str, Any], model: str, suite: str | None, seed: int | None,
                 out_dir: str | Path, device: str | None = None, dtype: str | None = None) -> list[str]:
    """The command line of one command job, its outputs inside ``out_dir``.

    Tables go to ``out_dir/<command-slug>.parquet`` (``--out``), directories to ``out_dir`` itself
    (``--out-dir``), and ``--report`` and the like to their file name inside ``out_dir``. A list value repeats
    its option; ``true`` passes a flag and ``false`` leaves it out.

    Args:
        run: The command's words, e.g. ``"sae train"``.
        options: Option values by name (without dashes).
        model: The ``--model`` value.
        suite: The ``--suite`` value, or None for none.
        seed: The ``--seed`` value, or None for none.
        out_dir: The job's output directory.
        device: The ``--device`` value, or None to leave the command's default.
        dtype: The ``--dtype`` value, or None to leave the command's default.

    Example:
        >>> command_argv("patch", {"items": 4, "no-heads": True}, "m", "npz", 0, "out/job")
        ['patch', '--model', 'm', '--suite', 'npz', '--seed', '0', '--out', 'out/job/patch.parquet', '--items', '4', '--no-heads']
    """
    out_dir = Path(out_dir)
    argv = [*run.split(), "--model", model]
    if suite is not None:
        argv += ["--suite", suite]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if device is not None:
        argv += ["--device", device]
    if dtype is not None:
        argv += ["--dtype", dtype]
    if takes(run, "out"):
        argv += ["--out", str(out_dir / f"{command_slug(run)}.parquet")]
    if takes(run, "out-dir"):
        argv += ["--out-dir", str(out_dir)]
    for key, value in options.items():
        name = option_name(key)
        if value is False:
            continue
        if value is True:
            argv.append(f"--{name}")
            continue
        for v in value if isinstance(value, list) else [value]:
            argv += [f"--{name}", str(out_dir / str(v)) if name in OUTPUT_FILES else str(v)]
    return argv


def command_slug(run: str) -> str:
    """A command's words as one file-name part (``"sae train"`` -> ``"sae-train"``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", run).strip("-")


def check_values(argv: list[str]) -> str | None:
    """What the real parser says about a command line (a bad value, a missing required option, a bad choice),
    or None when it parses. Nothing is run.

    Args:
        argv: The command line without the program name.

    Example:
        >>> check_values(["patch", "--model", "m", "--suite", "npz", "--out", "x.parquet", "--items", "x"])
        "mechinterp patch: error: argument --items: ..."
    """
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit:
        return last_error_line(err.getvalue()) or "the command line is refused"
    return None


def last_error_line(text: str) -> str:
    """The command's error line in its stderr (``mechinterp CMD: error: ...``), else its last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^mechinterp[\w\s-]*: (error|interrupted)", ln)]
    return (errors or lines or [""])[-1]


def run_command(argv: list[str]) -> tuple[str, str]:
    """Run ``mechinterp ARGV`` in this process, its stdout and stderr captured.

    Args:
        argv: The command line without the program name.

    Returns:
        The command's stdout and stderr.

    Raises:
        CommandFailed: The command exited with a non-zero status (the message is its error line).

    Example:
        >>> out, err = run_command(["surprisal", "--model", "m", "--suite", "npz", "--out", "out/s.parquet"])
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # a usage error
            rc = exc.code if isinstance(exc.code, int) else 2
    if rc != 0:
        raise CommandFailed(last_error_line(err.getvalue()) or f"mechinterp {argv[0]} exited with status {rc}")
    return out.getvalue(), err.getvalue()

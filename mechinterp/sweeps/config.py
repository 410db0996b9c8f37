"""Sweep files: a TOML file naming models x suites x sites x probe settings x seeds.

Example (``sweeps/readings.toml``)::

    [sweep]
    name = "readings"               # the results store defaults to out/sweeps/<name>
    executor = "local"              # or "ray"
    # ray_address = "auto"          # join a running Ray cluster; unset = start a local Ray instance
    # device = "auto"               # auto, cpu, cuda, cuda:N; dtype = "float32" (or "bfloat16", "float16")

    [grid]
    models = ["gemma3-270m", "smollm2-135m"]
    suites = ["npz", "nps", "mvrr", "lexcat"]
    seeds = [0, 1, 2]

    [sites]
    layers = "every 2"              # a layer list (mechinterp.layers): "*", "every N", "0-3+8"; or [0, 5, 9]
    components = ["resid_post"]

    [probe]                         # any field of ProbeSettings; a list sweeps over its values
    C = [0.1, 1.0]
    n_per_class = 150

    [[command]]                     # any command that loads a model and writes --out or --out-dir
    run = "patch"                   # its words: "collapse", "sae train", ...
    suites = ["npz"]                # models, suites, seeds: default to [grid]'s (a command without --suite
                                    # or --seed gets none)
    [command.options]               # its options by name without dashes; a list repeats the option
    sweep = "resid_post@*:region=np/last"
    items = 4

Probe jobs (one per model x suite x [probe] variant x seed) run when the file has a ``[probe]`` table (an empty
one will do) or no ``[[command]]``; ``[grid]`` is optional when every command names its models. Each
``[[command]]`` runs once per model x suite x seed into the same store, with ``--model``, ``--suite``,
``--seed``, ``--device``, ``--dtype``, ``--out`` and ``--out-dir`` set by the sweep (never in its options);
its command and option names are checked against the command-line parser, and its values too.

Errors name the bad key and its line: TOML syntax errors come with tomllib's position, validation errors
(pydantic) are mapped back to the line of the key they concern.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mechinterp.errors import ConfigError
from mechinterp.layers import check_layer_field, check_layers
from mechinterp.models.placement import check_device
from mechinterp.probes.train import ProbeSettings
from mechinterp.sweeps.commands import (
    OptionValue,
    check_command,
    command_argv,
    option_name,
    requires,
    takes,
)
from mechinterp.sweeps.commands import check_values as check_command_values

Executor = Literal["local", "ray"]
Component = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]



class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SweepSection(_Strict):
    name: str = Field(min_length=1, pattern=r"^[\w.\-]+$")
    store: str | None = None
    executor: Executor = "local"
    ray_address: str | None = None
    ray_cpus_per_job: float = Field(1.0, gt=0)
    ray_gpus_per_job: float | None = Field(default=None, ge=0)  # None: 1 when the device is not cpu and CUDA is there
    backend: Literal["hf", "transformer_lens", "nnsight"] = "hf"
    batch_size: int = Field(32, ge=1, le=1024)
    device: str = "auto"              # auto, cpu, cuda, cuda:N (mechinterp.models.placement)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    figures: bool = True

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        try:
            return check_device(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class GridSection(_Strict):
    models: list[str] | None = Field(default=None, min_length=1)  # required by probe jobs (checked by parse_sweep)
    suites: list[str] | None = Field(default=None, min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)


class CommandSection(_Strict):
    """One ``[[command]]`` table: a command run once per model x suite x seed."""

    run: str = Field(min_length=1)
    models: list[str] | None = Field(default=None, min_length=1)
    suites: list[str] | None = Field(default=None, min_length=1)
    seeds: list[int] | None = Field(default=None, min_length=1)
    options: dict[str, OptionValue] = Field(default_factory=dict)


class SitesSection(_Strict):
    layers: str | list[int] = "all"
    components: list[Component] = Field(default_factory=lambda: ["resid_post"], min_length=1)

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: str | list[int]) -> str | list[int]:
        """A layer list (:mod:`mechinterp.layers`) or layer numbers; checked against the model when it runs."""
        return check_layer_field(v)


class SweepConfig(_Strict):
    sweep: SweepSection
    grid: GridSection | None = None
    sites: SitesSection = Field(default_factory=SitesSection)
    probe: dict[str, Any] | None = None
    command: list[CommandSection] = Field(default_factory=list)

    @property
    def has_probe_jobs(self) -> bool:
        """Probe jobs run when the file has a [probe] table or no [[command]]."""
        return self.grid is not None and (self.probe is not None or not self.command)

    def probe_variants(self) -> list[ProbeSettings]:
        """Every combination of the [probe] values (a list sweeps over its values)."""
        probe = self.probe or {}
        keys = list(probe)
        values = [v if isinstance(v, list) else [v] for v in probe.values()]
        out = []
        for combo in itertools.product(*values):
            out.append(ProbeSettings(**dict(zip(keys, combo))))
        return out


def resolve_layers(spec: str | list[int], n_layers: int) -> list[int]:
    """Layer numbers for a model with ``n_layers`` blocks.

    Args:
        spec: A layer list in the grammar of :mod:`mechinterp.layers` (``"0-3+8"``, ``"*"``, ``"every 3"``) or
            layer numbers (negative numbers are refused).
        n_layers: The model's layer count.

    Returns:
        The layers, sorted and without duplicates.

    Raises:
        ConfigError: A malformed list or a layer out of range (the message gives the model's layer count).
    """
    return check_layers(spec, n_layers)


# ---- where keys are in the file ------------------------------------------------------------------------------
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_key(k: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in re.findall(r"""[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'""", k))


def key_lines(text: str) -> dict[tuple, int]:
    """Line number (1-based) of every table header and key, by dotted path (array-of-table entries get their
    index). Multi-line strings and arrays are skipped over, good enough for error messages."""
    lines: dict[tuple, int] = {}
    table: tuple = ()
    counts: dict[tuple, int] = {}
    depth = 0  # open brackets of a multi-line array
    for i, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("#", 1)[0] if '"' not in line and "'" not in line else line
        if depth > 0:
            depth += stripped.count("[") - stripped.count("]")
            continue
        h = _HEADER.match(line)
        if h:
            path = _split_key(h.group(2))
            if h.group(1) == "[[":
                idx = counts.get(path, 0)
                counts[path] = idx + 1
                lines.setdefault(path, i)
                table = (*path, idx)
            else:  # a sub-table of the latest entry of an array of tables ([command.options]) gets its index
                arrays = [n for n in range(len(path), 0, -1) if path[:n] in counts]
                table = (*path[:arrays[0]], counts[path[:arrays[0]]] - 1, *path[arrays[0]:]) if arrays else path
            lines.setdefault(table, i)
            continue
        k = _KEY.match(line)
        if k:
            path = (*table, *_split_key(k.group(1)))
            lines.setdefault(path, i)
            rest = stripped[k.end():]
            depth = max(0, rest.count("[") - rest.count("]"))
    return lines


def _line_of(loc: tuple, lines: dict[tuple, int]) -> tuple[int | None, tuple]:
    for n in range(len(loc), 0, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])], tuple(loc[:n])
    return None, ()


def _fmt_loc(loc: tuple) -> str:
    if not loc:
        return "(top level)"
    out = ""
    for x in loc:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out


def _validation_error(path: Path, text: str, exc: ValidationError, prefix: tuple = ()) -> ConfigError:
    lines = key_lines(text)
    msgs = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        line, _ = _line_of(loc, lines)
        where = f"{path}:{line}" if line else f"{path}"
        got = err.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
            shown = ""
        msgs.append(f"{where}: {_fmt_loc(loc)}: {msg}{shown}")
    return ConfigError("invalid sweep file:\n  " + "\n  ".join(msgs))


def _near_key(src: list[str], line_no: int) -> str:
    """The key a TOML syntax error at ``line_no`` belongs to: the key on that line, else a key above whose
    array or inline table is still open, else the nearest key or table above."""
    if 0 < line_no <= len(src):
        k = _KEY.match(src[line_no - 1])
        if k:
            return f" (key {'.'.join(_split_key(k.group(1)))!r})"
    nearest = ""
    for j in range(min(line_no, len(src) + 1) - 2, -1, -1):
        k = _KEY.match(src[j])
        if k:
            body = src[j][k.end():] + "".join(src[j + 1: line_no - 1])
            name = ".".join(_split_key(k.group(1)))
            if body.count("[") + body.count("{") > body.count("]") + body.count("}"):
                return f" (key {name!r}: its value is not closed)"
            nearest = nearest or f" (after key {name!r})"
        elif not nearest and (header := _HEADER.match(src[j])):
            nearest = f" (in table [{header.group(2)}])"
    return nearest


def parse_sweep(text: str, path: str | Path = "<sweep>") -> SweepConfig:
    """Parse and validate a sweep file's text. ConfigError names the file, line and key of every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            line_no, col = int(m.group(1)), int(m.group(2))
            near = _near_key(text.splitlines(), line_no)
            base = msg[: m.start()].strip()
            raise ConfigError(f"{path}:{line_no}:{col}: invalid TOML{near}: {base}") from None
        raise ConfigError(f"{path}: invalid TOML: {msg}") from None
    try:
        cfg = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(path, text, exc) from None
    for key, v in (cfg.probe or {}).items():
        if isinstance(v, list) and not v:
            line, _ = _line_of(("probe", key), key_lines(text))
            raise ConfigError(f"invalid sweep file:\n  {path}:{line}: probe.{key}: the list is empty")
    try:
        cfg.probe_variants()
    except ValidationError as exc:
        raise _validation_error(path, text, exc, prefix=("probe",)) from None
    problems = _grid_problems(cfg)
    for i, cmd in enumerate(cfg.command):
        problems += _command_problems(cfg, i, cmd)
    if problems:
        lines = key_lines(text)
        msgs = []
        for loc, msg in problems:
            line, _ = _line_of(loc, lines)
            msgs.append(f"{path}:{line}: {_fmt_loc(loc)}: {msg}" if line else f"{path}: {_fmt_loc(loc)}: {msg}")
        raise ConfigError("invalid sweep file:\n  " + "\n  ".join(msgs))
    return cfg


Problem = tuple[tuple, str]


def _grid_problems(cfg: SweepConfig) -> list[Problem]:
    if cfg.grid is None:
        return [] if cfg.command else [(("grid",), "required key is missing (or give [[command]] tables)")]
    if not cfg.has_probe_jobs:
        return []
    return [(("grid", key), "required key is missing") for key in ("models", "suites")
            if getattr(cfg.grid, key) is None]


def _command_problems(cfg: SweepConfig, i: int, cmd: CommandSection) -> list[Problem]:
    """What is wrong with ``[[command]]`` number ``i``: its command and option names, where its models, suites
    and seeds come from, and what the command's own parser says about its values."""
    loc: tuple = ("command", i)
    problems: list[Problem] = [((*loc, "run") if key is None else (*loc, "options", key), msg)
                               for key, msg in check_command(cmd.run, cmd.options)]
    if problems:
        return problems
    models, suites, seeds = command_grid(cfg, cmd)
    if not models:
        problems.append(((*loc, "models"), "no models: give models here or in [grid]"))
    for option, key in (("suite", "suites"), ("seed", "seeds")):
        if getattr(cmd, key) is not None and not takes(cmd.run, option):
            problems.append(((*loc, key), f"mechinterp {cmd.run} has no --{option}: leave {key} out"))
    if requires(cmd.run, "suite") and suites == [None]:
        problems.append(((*loc, "suites"), f"mechinterp {cmd.run} needs a suite: give suites here or in [grid]"))
    if problems:
        return problems
    argv = command_argv(cmd.run, cmd.options, models[0], suites[0], seeds[0], "job")
    error = check_command_values(argv)
    if error:
        named = re.search(r"argument --([\w-]+)", error)
        keys = [k for k in cmd.options if named and option_name(k) == named.group(1)]
        problems.append(((*loc, "options", *keys[:1]), error))
    return problems


def command_grid(cfg: SweepConfig, cmd: CommandSection) -> tuple[list[str], list[str | None], list[int | None]]:
    """The models, suites and seeds one ``[[command]]`` runs over: its own lists, else ``[grid]``'s; a command
    without ``--suite`` (``--seed``) gets the single suite (seed) None.

    Args:
        cfg: The sweep file.
        cmd: One of its ``[[command]]`` tables.

    Returns:
        ``(models, suites, seeds)``; models is empty when neither the command nor ``[grid]`` names any.

    Example:
        >>> command_grid(cfg, cfg.command[0])
        (['smollm2-135m'], ['npz'], [0])
    """
    grid = cfg.grid or GridSection()
    models = list(cmd.models or grid.models or [])
    suites: list[str | None] = list(cmd.suites or grid.suites or [None]) if takes(cmd.run, "suite") else [None]
    seeds: list[int | None] = list(cmd.seeds or grid.seeds) if takes(cmd.run, "seed") else [None]
    return models, suites, seeds


def load_sweep(path: str | Path) -> SweepConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"sweep file {path} does not exist")
    if path.suffix.lower() != ".toml":
        raise ConfigError(f"sweep file {path}: expected a .toml file")
    if path.is_dir():
        raise ConfigError(f"sweep file {path} is a directory: give a .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"sweep file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"sweep file {path} cannot be read: {exc.strerror or exc}") from None
    return parse_sweep(text, path)

"""Read and write researchers' own stimuli as a spreadsheet (CSV or TSV): one row per item and condition.

Columns:

* ``item`` (a whole number) and ``condition`` (a name: letters, digits, ``_``, ``-``) — required; an
  (item, condition) pair appears once.
* The regions, either as columns ``region_1``, ``region_2``, ... (or the names listed under ``regions`` in
  the sidecar, in order), one cell per region, or inline in one ``regions`` column, separated by ``|``
  (``While the man | hunted | | the deer | ran | into the woods.``). Empty cells are empty regions; every
  row has the same number of regions.
* Optional: ``ambiguous`` (true/false, yes/no, 1/0), ``reading``, ``construction``.

An optional sidecar ``<file>.meta.json`` (or ``<file>.meta.toml``) holds suite-level fields: ``name``,
``description``, ``spacing`` (see below), ``regions`` (region names, in order) or ``region_meta``
(``{number: name}``), ``predictions`` (formula strings), and ``ambiguity``: ``construction``, ``readings``
(``{name: description}``), ``preferred`` (a reading), ``ambiguous`` / ``disambiguating`` / ``cue`` (region
names or numbers), ``ambiguous_condition`` / ``unambiguous_condition``.

Spacing: spreadsheets default to ``"attach"`` (a region starting with punctuation attaches to the previous
word, which wins: the region scores as empty); a sidecar may say ``"spacing": "syntaxgym"`` to score every
region on its own tokens as SyntaxGym does. See :mod:`mechinterp.stimuli.types`.

Every problem is reported (not just the first), each naming the file, row, item, condition and column.

Example:
    >>> suite = read_spreadsheet("my_items.tsv")          # doctest: +SKIP
    >>> write_spreadsheet(suite, "copy.csv")              # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mechinterp.errors import SuiteError
from mechinterp.stimuli.types import (
    Ambiguity,
    Condition,
    Item,
    Prediction,
    Region,
    Suite,
    spacing_for,
)
from mechinterp.stimuli.validate import validate_suite

INLINE_COLUMN = "regions"
OPTIONAL_COLUMNS = ("ambiguous", "reading", "construction")
SIDECAR_SUFFIXES = (".meta.json", ".meta.toml")
_REGION_COLUMN = re.compile(r"region_(\d+)$")
_CONDITION_NAME = re.compile(r"[A-Za-z0-9_\-]+$")
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}
_ROLE_FIELDS = {"ambiguous": "ambiguous_region", "disambiguating": "disambiguating_region", "cue": "cue_region"}


def is_spreadsheet(columns: list[str]) -> bool:
    """Whether a CSV header is this module's layout (as opposed to a SAP Benchmark CSV).

    Args:
        columns: The header's column names.

    Returns:
        True if it has an ``item`` or ``condition`` column and none of the SAP Benchmark's sentence/position
        columns (``Sentence``, ``unambiguous``, ``disambPosition``...), so that a spreadsheet missing one
        column is still reported as a spreadsheet.
    """
    sap = {"Sentence", "disambPosition", "targetPosition", "disambPositionAmb", "disambPositionUnamb", "unambiguous"}
    cols = set(columns)
    return bool(cols & {"item", "condition"}) and not (cols & sap)


def sidecar_path(path: str | Path) -> Path | None:
    """The sidecar file of a spreadsheet, if one exists (``<file>.meta.json`` or ``<file>.meta.toml``)."""
    path = Path(path)
    for suffix in SIDECAR_SUFFIXES:
        cand = path.with_name(path.name + suffix)
        if cand.exists():
            return cand
    return None


def _read_sidecar(path: Path, problems: list[str]) -> dict[str, Any]:
    side = sidecar_path(path)
    if side is None:
        return {}
    try:
        text = side.read_text(encoding="utf-8")
        data = tomllib.loads(text) if side.suffix == ".toml" else json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"{side}: cannot read the sidecar: {exc}")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{side}: the sidecar must be a table of fields")
        return {}
    return data


def _read_rows(path: Path, problems: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise SuiteError(f"suite file {path} does not exist") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text (byte {exc.start}); save the spreadsheet as UTF-8 CSV/TSV")
        return [], []
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    rows = []
    for n, row in enumerate(reader, start=2):
        if None in row:
            problems.append(f"{path}, row {n}: {len(row[None])} more cells than the header has columns")
        rows.append({k: (v if v is not None else "") for k, v in row.items() if k is not None} | {"__row__": str(n)})
    return header, rows


def _region_columns(header: list[str], side: dict[str, Any], path: Path, problems: list[str]) -> tuple[str, list[tuple[int, str]], dict[int, str]]:
    """('inline' | 'columns', [(region number, column)], region_meta)."""
    region_meta: dict[int, str] = {}
    raw_meta = side.get("region_meta") or {}
    try:
        region_meta = {int(k): str(v) for k, v in raw_meta.items()}
    except (TypeError, ValueError, AttributeError):
        problems.append(f"{path}: sidecar field 'region_meta' must map region numbers to names")
    names = side.get("regions")
    if names:
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            problems.append(f"{path}: sidecar field 'regions' must be a list of column names")
            names = []
        region_meta = {i + 1: n for i, n in enumerate(names)}
        missing = [n for n in names if n not in header and INLINE_COLUMN not in header]
        if missing:
            problems.append(f"{path}: region columns {missing} named in the sidecar are missing from the header")
        if INLINE_COLUMN in header:
            return "inline", [], region_meta
        return "columns", [(i + 1, n) for i, n in enumerate(names) if n in header], region_meta
    numbered = sorted((int(m.group(1)), h) for h in header if (m := _REGION_COLUMN.match(h)))
    if INLINE_COLUMN in header:
        if numbered:
            problems.append(f"{path}: has both an inline '{INLINE_COLUMN}' column and region_N columns; use one")
        return "inline", [], region_meta
    if not numbered:
        problems.append(
            f"{path}: no region columns: expected region_1, region_2, ... or an inline '{INLINE_COLUMN}' column "
            f"with regions separated by '|' (columns: {header})"
        )
    nums = [n for n, _ in numbered]
    if nums and nums != list(range(1, len(nums) + 1)):
        problems.append(f"{path}: region columns must be region_1 .. region_{len(nums)} without gaps, found {nums}")
    return "columns", numbered, region_meta


def _bool(value: str, where: str, problems: list[str]) -> bool | None:
    v = value.strip().lower()
    if v == "":
        return None
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    problems.append(f"{where}, column 'ambiguous': {value!r} is not true/false")
    return None


def _ambiguity(side: dict[str, Any], region_meta: dict[int, str], path: Path, problems: list[str]) -> Ambiguity | None:
    raw = side.get("ambiguity")
    if not raw:
        return None
    if not isinstance(raw, dict):
        problems.append(f"{path}: sidecar field 'ambiguity' must be a table")
        return None
    fields: dict[str, Any] = {}
    by_name = {v: k for k, v in region_meta.items()}
    for key, value in raw.items():
        if key in _ROLE_FIELDS or key in _ROLE_FIELDS.values():
            target = _ROLE_FIELDS.get(key, key)
            if value is None:
                continue
            if isinstance(value, int) or str(value).isdigit():
                fields[target] = int(value)
            elif value in by_name:
                fields[target] = by_name[value]
            else:
                problems.append(f"{path}: sidecar field 'ambiguity.{key}': no region named {value!r} (regions: {region_meta})")
        elif key == "preferred":
            fields["preferred_reading"] = value
        else:
            fields[key] = value
    try:
        return Ambiguity(**fields)
    except (ValidationError, TypeError) as exc:
        problems.append(f"{path}: sidecar field 'ambiguity': {exc}".replace("\n", "; "))
        return None


def check_spreadsheet(path: str | Path) -> tuple[Suite | None, list[str]]:
    """Read a spreadsheet, collecting every problem instead of stopping at the first.

    Args:
        path: A ``.csv`` or ``.tsv`` file in this module's layout.

    Returns:
        ``(suite, problems)``: the suite (None if it could not be built) and one line per problem.

    Raises:
        SuiteError: The file does not exist.
    """
    path = Path(path)
    problems: list[str] = []
    side = _read_sidecar(path, problems)
    header, rows = _read_rows(path, problems)
    if not header:
        if not problems:
            problems.append(f"{path}: the file is empty")
        return None, problems
    for col in ("item", "condition"):
        if col not in header:
            problems.append(f"{path}: missing required column {col!r} (columns: {header})")
    mode, columns, region_meta = _region_columns(header, side, path, problems)
    known = {"item", "condition", INLINE_COLUMN, *OPTIONAL_COLUMNS, *(c for _, c in columns)}
    unknown = [h for h in header if h not in known]
    if unknown:
        problems.append(f"{path}: unknown columns {unknown} (known: item, condition, region columns, {', '.join(OPTIONAL_COLUMNS)})")
    try:
        spacing = spacing_for("table", side.get("spacing"))
    except SuiteError as exc:
        problems.append(f"{path}: sidecar: {exc}")
        spacing = spacing_for("table")
    if "item" not in header or "condition" not in header:
        return None, problems
    items: dict[int, dict[str, Any]] = {}
    n_inline: tuple[int, str] | None = None
    for row in rows:
        item_raw, cond = row.get("item", "").strip(), row.get("condition", "").strip()
        where = f"{path}, row {row['__row__']}, item {item_raw or '?'}, condition {cond or '?'}"
        try:
            number = int(item_raw)
        except ValueError:
            problems.append(f"{where}, column 'item': {item_raw!r} is not a whole number")
            continue
        if not _CONDITION_NAME.match(cond):
            problems.append(f"{where}, column 'condition': {cond!r} is not a condition name (letters, digits, _ and -)")
            continue
        if mode == "inline":
            cells = [c.strip() for c in row.get(INLINE_COLUMN, "").split("|")]
            if n_inline is None:
                n_inline = (len(cells), where)
            elif len(cells) != n_inline[0]:
                problems.append(
                    f"{where}, column '{INLINE_COLUMN}': {len(cells)} regions, but {n_inline[1]} has {n_inline[0]}"
                )
                continue
            contents = list(enumerate(cells, start=1))
        else:
            contents = [(n, row.get(col, "")) for n, col in columns]
        entry = items.setdefault(number, {"conditions": {}, "construction": None})
        if cond in entry["conditions"]:
            problems.append(f"{where}, columns 'item'/'condition': item {number} condition {cond!r} appears twice")
            continue
        construction = row.get("construction", "").strip() or None
        if construction:
            entry["construction"] = construction
        try:
            entry["conditions"][cond] = Condition(
                name=cond,
                regions=tuple(Region(number=n, content=c) for n, c in contents),
                ambiguous=_bool(row.get("ambiguous", ""), where, problems),
                reading=row.get("reading", "").strip() or None,
                spacing=spacing,
            )
        except ValidationError as exc:
            problems.append(f"{where}: {exc}".replace("\n", "; "))
    if not items and not problems:
        problems.append(f"{path}: no items (the file has a header but no rows)")
    ambiguity = _ambiguity(side, region_meta, path, problems)
    preds = side.get("predictions") or []
    if isinstance(preds, str):
        preds = [preds]
    predictions = []
    for p in preds:
        formula = p.get("formula") if isinstance(p, dict) else p
        if not isinstance(formula, str):
            problems.append(f"{path}: sidecar field 'predictions': {p!r} is not a formula")
            continue
        predictions.append(Prediction(formula=formula))
    if problems:
        return None, problems
    meta = {k: v for k, v in side.items() if k not in {"name", "spacing", "regions", "region_meta", "predictions", "ambiguity"}}
    try:
        suite = Suite(
            name=str(side.get("name") or path.stem),
            meta=meta,
            region_meta=region_meta,
            predictions=tuple(predictions),
            items=tuple(
                Item(number=n, conditions=tuple(e["conditions"].values()), construction=e["construction"])
                for n, e in items.items()
            ),
            ambiguity=ambiguity,
            source=str(path),
        )
        return validate_suite(suite), []
    except SuiteError as exc:
        return None, [str(exc)]
    except (ValidationError, TypeError) as exc:
        return None, [f"{path}: {exc}".replace("\n", "; ")]


def read_spreadsheet(path: str | Path) -> Suite:
    """Read a spreadsheet of stimuli into a :class:`Suite`.

    Args:
        path: A ``.csv`` or ``.tsv`` file in this module's layout (its sidecar is read if present).

    Returns:
        The validated suite.

    Raises:
        SuiteError: One line per problem found (file, row, item, condition, column).
    """
    suite, problems = check_spreadsheet(path)
    if problems or suite is None:
        raise SuiteError("\n".join(problems))
    return suite


def write_spreadsheet(suite: Suite, path: str | Path, inline: bool = False) -> Path:
    """Write a suite as a spreadsheet plus its ``<file>.meta.json`` sidecar.

    Args:
        suite: The suite (all conditions must have the same region numbers 1..N).
        path: Where to write; ``.tsv`` is tab-separated, anything else comma-separated.
        inline: Write the regions in one ``regions`` column separated by ``|`` instead of region_N columns.

    Returns:
        The spreadsheet's path.

    Raises:
        SuiteError: The suite's conditions do not share one set of region numbers 1..N.
    """
    path = Path(path)
    numbers = sorted({r.number for it in suite.items for c in it.conditions for r in c.regions})
    if numbers != list(range(1, len(numbers) + 1)):
        raise SuiteError(f"suite {suite.name!r}: regions {numbers} are not 1..N; a spreadsheet cannot hold them")
    cols = ["item", "condition"]
    opt = [c for c, present in (
        ("construction", any(it.construction for it in suite.items)),
        ("ambiguous", any(c.ambiguous is not None for it in suite.items for c in it.conditions)),
        ("reading", any(c.reading for it in suite.items for c in it.conditions)),
    ) if present]
    region_cols = [INLINE_COLUMN] if inline else [f"region_{n}" for n in numbers]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t" if path.suffix.lower() == ".tsv" else ",", lineterminator="\n")
    writer.writerow(cols + opt + region_cols)
    for it in suite.items:
        for c in it.conditions:
            cells = {r.number: r.content for r in c.regions}
            values = {"construction": it.construction or "", "reading": c.reading or "",
                      "ambiguous": "" if c.ambiguous is None else str(c.ambiguous).lower()}
            regions = [cells.get(n, "") for n in numbers]
            writer.writerow([it.number, c.name] + [values[o] for o in opt]
                            + ([" | ".join(regions)] if inline else regions))
    meta = {k: v for k, v in suite.meta.items() if k != "name" and not (k == "metric" and v == "sum")}
    side: dict[str, Any] = {"name": suite.name, **meta, "spacing": suite.spacing}
    if suite.region_meta:
        side["region_meta"] = {str(k): v for k, v in sorted(suite.region_meta.items())}
    if suite.predictions:
        side["predictions"] = [p.formula for p in suite.predictions]
    if suite.ambiguity is not None:
        side["ambiguity"] = suite.ambiguity.model_dump()
    path.write_text(buf.getvalue(), encoding="utf-8")
    path.with_name(path.name + ".meta.json").write_text(json.dumps(side, indent=2) + "\n", encoding="utf-8")
    return path

"""Read and write SyntaxGym test-suite JSON (with this package's ambiguity extensions).

Regions are read with SyntaxGym's own convention (spacing ``"syntaxgym"``, see
:mod:`mechinterp.stimuli.types`): a condition's sentence is its non-empty regions joined by single spaces, so
every region starts a word and a punctuation-only region (``"."``) is scored on its own tokens. A file may
declare ``"spacing": "attach"`` in its ``meta`` (the built-in suites do) to attach regions that start with
punctuation to the previous word instead; the writer records that key only for such suites, so files written
from SyntaxGym-convention suites are plain SyntaxGym files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mechinterp.errors import SuiteError
from mechinterp.io import write_json_atomic
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


def _require(d: dict, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise SuiteError(f"{where}: missing required field {key!r}")
    return d[key]


def whole_number(value: Any, where: str, field: str) -> int:
    """``value`` as an int: an int or a string of digits (``2``, ``"2"``); a fraction, bool or other text is
    refused (never truncated) with a SuiteError naming ``where`` and ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SuiteError(f"{where}: {field} must be a whole number, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise SuiteError(f"{where}: {field} must be a whole number, got {value!r}")
        return int(value)
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise SuiteError(f"{where}: {field} must be a whole number, got {value!r}")
    return int(text)


def _of_type(value: Any, kind: type, where: str, field: str) -> Any:
    if not isinstance(value, kind):
        what = {list: "a list", dict: "an object"}[kind]
        raise SuiteError(f"{where}: {field!r} must be {what}, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def _pydantic_reason(exc: Exception) -> str:
    """One line for a pydantic ValidationError (its field and message), else the exception's text."""
    if isinstance(exc, ValidationError):
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        return f"{loc}: {e['msg']}" if loc else e["msg"]
    return " ".join(str(exc).split())


def suite_from_dict(data: dict[str, Any], source: str | None = None) -> Suite:
    where = source or "suite"
    if not isinstance(data, dict):
        raise SuiteError(f"{where}: a SyntaxGym suite must be a JSON object")
    meta = dict(_of_type(data.get("meta") or {}, dict, where, "meta"))
    try:
        spacing = spacing_for("syntaxgym-json", meta.pop("spacing", None))
    except SuiteError as exc:
        raise SuiteError(f"{where}: {exc}") from exc
    name = meta.get("name") or (Path(source).stem if source else "suite")
    items_raw = _require(data, "items", where)
    if not isinstance(items_raw, list):
        raise SuiteError(f"{where}: 'items' must be a list")
    try:
        region_meta = {whole_number(k, where, "region_meta key"): str(v)
                        for k, v in _of_type(data.get("region_meta") or {}, dict, where, "region_meta").items()}
    except SuiteError as exc:
        raise SuiteError(f"{where}: region_meta keys must be region numbers ({exc})") from None
    except (TypeError, ValueError) as exc:
        raise SuiteError(f"{where}: region_meta keys must be region numbers ({exc})") from exc
    items = []
    for i, it in enumerate(items_raw):
        iw = f"{where}, items[{i}]"
        conds = []
        for j, c in enumerate(_of_type(_require(it, "conditions", iw), list, iw, "conditions")):
            cw = f"{iw}, conditions[{j}]"
            regions = []
            for k, r in enumerate(_of_type(_require(c, "regions", cw), list, cw, "regions")):
                rw = f"{cw}, regions[{k}]"
                content = _require(r, "content", rw)
                if not isinstance(content, str):
                    raise SuiteError(f"{rw}: content must be a string, got {content!r}")
                number = whole_number(_require(r, "region_number", rw), rw, "region_number")
                try:
                    regions.append(Region(number=number, content=content))
                except (ValidationError, ValueError, TypeError) as exc:
                    raise SuiteError(f"{rw}: {_pydantic_reason(exc)}") from None
            try:
                conds.append(
                    Condition(
                        name=str(_require(c, "condition_name", cw)),
                        regions=tuple(regions),
                        ambiguous=c.get("ambiguous"),
                        reading=c.get("reading"),
                        spacing=spacing,
                    )
                )
            except ValidationError as exc:
                raise SuiteError(f"{cw}: {_pydantic_reason(exc)}") from None
        number = whole_number(_require(it, "item_number", iw), iw, "item_number")
        lexical = _of_type(it.get("lexical") or {}, dict, iw, "lexical")
        try:
            items.append(
                Item(
                    number=number,
                    conditions=tuple(conds),
                    construction=it.get("construction"),
                    provenance=it.get("provenance"),
                    lexical={str(k): str(v) for k, v in lexical.items()},
                    meta={k: v for k, v in it.items() if k not in {"item_number", "conditions", "construction", "provenance", "lexical"}},
                )
            )
        except (ValidationError, ValueError, TypeError) as exc:
            raise SuiteError(f"{iw}: {_pydantic_reason(exc)}") from None
    try:
        ambiguity = Ambiguity(**data["ambiguity"]) if data.get("ambiguity") else None
        predictions = tuple(Prediction(**p) for p in (data.get("predictions") or []))
        suite = Suite(
            name=str(name),
            meta=meta,
            region_meta=region_meta,
            predictions=predictions,
            items=tuple(items),
            ambiguity=ambiguity,
            source=source,
        )
    except (ValidationError, TypeError, ValueError) as exc:
        raise SuiteError(f"{where}: {_pydantic_reason(exc)}") from None
    return validate_suite(suite)


def read_syntaxgym(path: str | Path) -> Suite:
    path = Path(path)
    if path.is_dir():
        raise SuiteError(f"suite file {path} is a directory: give a SyntaxGym .json file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"suite file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise SuiteError(f"{path} is nested too deeply to be a SyntaxGym suite") from None
    except OSError as exc:
        raise SuiteError(f"suite file {path} cannot be read: {exc.strerror or exc}") from None
    return suite_from_dict(data, source=str(path))


def suite_to_dict(suite: Suite) -> dict[str, Any]:
    out: dict[str, Any] = {
        "meta": {**suite.meta, "name": suite.name, "metric": suite.meta.get("metric", "sum")},
    }
    if suite.spacing != spacing_for("syntaxgym-json"):
        out["meta"]["spacing"] = suite.spacing
    out |= {
        "region_meta": {str(k): v for k, v in sorted(suite.region_meta.items())},
        "predictions": [p.model_dump() for p in suite.predictions],
    }
    if suite.ambiguity is not None:
        out["ambiguity"] = suite.ambiguity.model_dump()
    items = []
    for it in suite.items:
        d: dict[str, Any] = {"item_number": it.number}
        if it.construction:
            d["construction"] = it.construction
        if it.provenance:
            d["provenance"] = it.provenance
        if it.lexical:
            d["lexical"] = dict(it.lexical)
        d.update(it.meta)
        d["conditions"] = []
        for c in it.conditions:
            cd: dict[str, Any] = {"condition_name": c.name}
            if c.ambiguous is not None:
                cd["ambiguous"] = c.ambiguous
            if c.reading is not None:
                cd["reading"] = c.reading
            cd["regions"] = [{"region_number": r.number, "content": r.content} for r in c.regions]
            d["conditions"].append(cd)
        items.append(d)
    out["items"] = items
    return out


def write_syntaxgym(suite: Suite, path: str | Path) -> Path:
    return write_json_atomic(path, suite_to_dict(suite))

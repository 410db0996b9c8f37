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


def suite_from_dict(data: dict[str, Any], source: str | None = None) -> Suite:
    where = source or "suite"
    if not isinstance(data, dict):
        raise SuiteError(f"{where}: a SyntaxGym suite must be a JSON object")
    meta = dict(data.get("meta") or {})
    try:
        spacing = spacing_for("syntaxgym-json", meta.pop("spacing", None))
    except SuiteError as exc:
        raise SuiteError(f"{where}: {exc}") from exc
    name = meta.get("name") or (Path(source).stem if source else "suite")
    items_raw = _require(data, "items", where)
    if not isinstance(items_raw, list):
        raise SuiteError(f"{where}: 'items' must be a list")
    try:
        region_meta = {int(k): str(v) for k, v in (data.get("region_meta") or {}).items()}
    except (TypeError, ValueError) as exc:
        raise SuiteError(f"{where}: region_meta keys must be region numbers ({exc})") from exc
    items = []
    for i, it in enumerate(items_raw):
        iw = f"{where}, items[{i}]"
        conds = []
        for j, c in enumerate(_require(it, "conditions", iw)):
            cw = f"{iw}, conditions[{j}]"
            regions = []
            for k, r in enumerate(_require(c, "regions", cw)):
                rw = f"{cw}, regions[{k}]"
                content = _require(r, "content", rw)
                if not isinstance(content, str):
                    raise SuiteError(f"{rw}: content must be a string, got {content!r}")
                try:
                    regions.append(Region(number=int(_require(r, "region_number", rw)), content=content))
                except (ValidationError, ValueError, TypeError) as exc:
                    raise SuiteError(f"{rw}: {exc}") from exc
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
                raise SuiteError(f"{cw}: {exc}") from exc
        try:
            items.append(
                Item(
                    number=int(_require(it, "item_number", iw)),
                    conditions=tuple(conds),
                    construction=it.get("construction"),
                    provenance=it.get("provenance"),
                    lexical={str(k): str(v) for k, v in (it.get("lexical") or {}).items()},
                    meta={k: v for k, v in it.items() if k not in {"item_number", "conditions", "construction", "provenance", "lexical"}},
                )
            )
        except (ValidationError, ValueError, TypeError) as exc:
            raise SuiteError(f"{iw}: {exc}") from exc
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
    except (ValidationError, TypeError) as exc:
        raise SuiteError(f"{where}: {exc}") from exc
    return validate_suite(suite)


def read_syntaxgym(path: str | Path) -> Suite:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SuiteError(f"suite file {path} does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path} is not valid JSON: {exc}") from exc
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

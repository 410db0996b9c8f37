"""Read stimuli in the SAP Benchmark's CSV format (Huang et al. 2024).

Two layouts are read:

* **paired** (``items_ClassicGP.csv``): one row per item with ``ambiguous``/``unambiguous`` sentences and the
  1-indexed word position of the disambiguating word in each (``disambPositionAmb``/``disambPositionUnamb``);
  ``condition`` is e.g. ``NPZ_UAMB`` and gives the construction.
* **long** (``items_Agreement.csv``, ``items_RelativeClause.csv``...): one row per item and condition with a
  ``Sentence`` and a 1-indexed critical position (``disambPosition`` or ``targetPosition``).

Each sentence becomes five regions: 1 ``prefix`` (words before the critical word), 2 ``critical`` (the
disambiguating word, the SAP's ROI 0), 3 ``spillover1`` and 4 ``spillover2`` (ROI 1 and 2), 5 ``end``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mechinterp.errors import RegionError, SuiteError
from mechinterp.stimuli.constructions import CONSTRUCTIONS, canonical_construction
from mechinterp.stimuli.syntaxgym import whole_number
from mechinterp.stimuli.types import (
    Ambiguity,
    Condition,
    Item,
    Prediction,
    Region,
    Suite,
)
from mechinterp.stimuli.validate import validate_suite

REGION_META = {1: "prefix", 2: "critical", 3: "spillover1", 4: "spillover2", 5: "end"}


def _regions(sentence: str, position: object, where: str) -> tuple[Region, ...]:
    words = str(sentence).split()
    try:
        p = int(position)  # pyright: ignore[reportArgumentType]  # a table cell; a non-number is caught below
    except (TypeError, ValueError) as exc:
        raise RegionError(f"{where}: disambiguation position {position!r} is not a whole number") from exc
    if not 1 <= p <= len(words):
        raise RegionError(
            f"{where}: disambiguation position {p} is out of range for a sentence of {len(words)} words ({sentence!r})"
        )
    k = p - 1
    parts = [words[:k], words[k : k + 1], words[k + 1 : k + 2], words[k + 2 : k + 3], words[k + 3 :]]
    return tuple(Region(number=i + 1, content=" ".join(ws)) for i, ws in enumerate(parts))


def read_sap(path: str | Path, name: str | None = None) -> Suite:
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except FileNotFoundError as exc:
        raise SuiteError(f"suite file {path} does not exist") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, OSError) as exc:
        raise SuiteError(f"{path} is not a readable CSV file: {' '.join(str(exc).split())}") from None
    cols = set(df.columns)
    missing = [c for c in ("item", "condition") if c not in cols]
    if missing and ({"ambiguous", "unambiguous"} <= cols or "Sentence" in cols):
        raise SuiteError(f"{path}: SAP Benchmark file without the column(s) {', '.join(missing)} "
                         f"(found {', '.join(sorted(map(str, cols)))})")
    if {"ambiguous", "unambiguous", "disambPositionAmb", "disambPositionUnamb"} <= cols:
        suite = _read_paired(df, path, name)
    elif "Sentence" in cols and ({"disambPosition", "targetPosition"} & cols) and "condition" in cols:
        suite = _read_long(df, path, name)
    else:
        raise SuiteError(
            f"{path} is not in a SAP Benchmark layout: expected columns item, condition, ambiguous, unambiguous, "
            "disambPositionAmb, disambPositionUnamb (paired) or item, condition, Sentence, disambPosition (long); "
            f"found {sorted(map(str, cols))}"
        )
    return validate_suite(suite)


def _item_number(value: object, where: str) -> int:
    if hasattr(value, "item"):  # a numpy scalar from pandas
        value = value.item()  # pyright: ignore[reportAttributeAccessIssue]  # numpy scalar
    return whole_number(value, where, "item")


def _read_paired(df: pd.DataFrame, path: Path, name: str | None) -> Suite:
    items = []
    constructions = set()
    for row_idx, row in df.iterrows():
        where = f"{path}, row {int(row_idx) + 2}"
        if pd.isna(row["ambiguous"]) or pd.isna(row["unambiguous"]):  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: pd.isna of a cell typed as Series | ndarray
            raise SuiteError(f"{where}: a sentence is missing")
        label = str(row["condition"]).split("_")[0]
        construction = canonical_construction(label)
        constructions.add(construction)
        info = CONSTRUCTIONS.get(construction)
        reading = info.true_reading if info else None
        amb = _regions(row["ambiguous"], row["disambPositionAmb"], f"{where} (ambiguous)")
        unamb = _regions(row["unambiguous"], row["disambPositionUnamb"], f"{where} (unambiguous)")
        if amb[1].content.strip(",.;:!?").lower() != unamb[1].content.strip(",.;:!?").lower():
            raise RegionError(
                f"{where}: the disambiguating words differ between versions ({amb[1].content!r} in the ambiguous, "
                f"{unamb[1].content!r} in the unambiguous sentence); check disambPositionAmb/disambPositionUnamb"
            )
        items.append(
            Item(
                number=_item_number(row["item"], where),
                construction=construction,
                provenance=f"SAP Benchmark {path.name}",
                conditions=(
                    Condition(name="ambiguous", regions=amb, ambiguous=True, reading=reading),
                    Condition(name="unambiguous", regions=unamb, ambiguous=False, reading=reading),
                ),
            )
        )
    if not items:
        raise SuiteError(f"{path} is empty: it has no items")
    first = sorted(constructions)[0]
    return Suite(
        name=name or path.stem,
        meta={"name": name or path.stem, "metric": "sum", "format": "sap-paired", "reference": "Huang et al. (2024), SAP Benchmark"},
        region_meta=dict(REGION_META),
        predictions=(Prediction(formula="(2;%ambiguous%) > (2;%unambiguous%)"),),
        items=tuple(items),
        ambiguity=Ambiguity(
            construction=first if len(constructions) == 1 else "mixed",
            readings={},
            disambiguating_region=2,
        ),
        source=str(path),
    )


def _read_long(df: pd.DataFrame, path: Path, name: str | None) -> Suite:
    pos_col = "disambPosition" if "disambPosition" in df.columns else "targetPosition"
    construction = path.stem.replace("items_", "")
    grouped: dict[int, list[Condition]] = {}
    for row_idx, row in df.iterrows():
        where = f"{path}, row {int(row_idx) + 2}"
        if pd.isna(row["Sentence"]):  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: pd.isna of a cell typed as Series | ndarray
            raise SuiteError(f"{where}: the sentence is missing")
        num = _item_number(row["item"], where)
        regions = _regions(row["Sentence"], row[pos_col], where)
        grouped.setdefault(num, []).append(Condition(name=str(row["condition"]), regions=regions))
    items = tuple(Item(number=n, conditions=tuple(cs), construction=construction) for n, cs in grouped.items())
    if not items:
        raise SuiteError(f"{path} is empty: it has no items")
    return Suite(
        name=name or path.stem,
        meta={"name": name or path.stem, "metric": "sum", "format": "sap-long"},
        region_meta=dict(REGION_META),
        items=items,
        source=str(path),
    )

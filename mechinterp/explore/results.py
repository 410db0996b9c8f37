"""Find what the workbench already wrote under a results directory, so the explorer can show it.

:func:`scan` walks the directory (not too deep, hidden folders and half-written ``.tmp`` folders left out)
and sorts what it finds by what it is, from the files themselves, never from their names:

* result tables (``.csv`` / ``.parquet``), classified by their columns (:data:`TABLE_KINDS`; a table whose
  provenance records the command ``ladder`` is a memory-ladder table, kind ``ladder``), with the
  model and suites of their provenance JSON when there is one (a table whose provenance does not match it,
  see :func:`mechinterp.tables.provenance_problem`, is left out with a note that says so);
* sweep results stores (:class:`mechinterp.sweeps.ResultsStore`: ``jobs/<id>/job.json``) and the probe
  artifacts in them;
* SAE directories (SAE-Lens layout: ``cfg.json`` + ``sae_weights.safetensors``);
* saved surprisal-to-ms links (:class:`mechinterp.compare.linking.LinkingFit` JSON).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow.parquet as pq

from mechinterp.errors import ConfigError
from mechinterp.tables import provenance_problem

#: kind -> columns a table must have (checked in order; the first match wins).
TABLE_KINDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("patching", frozenset({"direction", "method", "layer", "component", "position", "normalised", "clean_value",
                            "corrupt_value"})),
    ("compare_items", frozenset({"intervention", "construction", "item", "roi", "effect_ms"})),
    ("compare", frozenset({"intervention", "construction", "roi", "predicted_ms", "human_ms"})),
    ("side_effects", frozenset({"intervention", "unamb_roi_delta_bits"})),
    ("collapse_effects", frozenset({"intervention", "construction", "item", "roi", "effect_bits"})),
    ("collapse_words", frozenset({"intervention", "construction", "item", "condition", "word_index",
                                  "surprisal_bits"})),
    ("item_effects", frozenset({"construction", "item", "roi", "effect_bits", "surprisal_ambiguous"})),
    ("words", frozenset({"construction", "item", "condition", "word_index", "surprisal_bits", "entropy_bits"})),
    ("probe_readout", frozenset({"construction", "layer", "component", "item", "condition", "p_preferred"})),
    ("probe_verdicts", frozenset({"construction", "layer", "component", "seed", "verdict", "z"})),
    ("sae_features", frozenset({"suite", "position", "feature", "cohen_dz", "q", "kind"})),
    ("sae_summary", frozenset({"suite", "reading", "rank", "feature", "kind"})),
)
LADDER = "ladder"  # tables whose provenance says `mechinterp ladder` wrote them (memory-ladder tables)
SKIP_DIRS = {".tmp", "__pycache__", "failed", ".git", ".venv", "node_modules", "figures"}
MAX_DEPTH = 6
MAX_FILES = 5000
_NOT_LINKS = {"job.json", "probe.json", "cfg.json", "quality.json", "training.json", "sweep.json"}


@dataclass(frozen=True)
class ResultTable:
    """One result table on disk and what it holds."""

    path: Path
    kind: str
    columns: tuple[str, ...]
    command: str | None = None
    model: str | None = None
    weights_sha256: str | None = None
    suites: tuple[str, ...] = ()

    def read(self, columns: Iterable[str] | None = None) -> pd.DataFrame:
        cols = list(columns) if columns is not None else None
        if self.path.suffix.lower() == ".csv":
            return pd.read_csv(self.path, usecols=cols)
        return pd.read_parquet(self.path, columns=cols)

    def matches_model(self, weights_sha256: str | None, name: str | None = None) -> bool:
        """True when the table records the same weights (or, with no hash recorded, the same model name)."""
        if self.weights_sha256 and weights_sha256:
            return self.weights_sha256 == weights_sha256
        return self.model is None or name is None or self.model == name

    @property
    def label(self) -> str:
        who = f" · {self.model}" if self.model else ""
        return f"{self.path.name}{who}"


@dataclass(frozen=True)
class ProbeRef:
    """A saved probe artifact inside a sweep store."""

    path: Path
    job: str
    construction: str
    layer: int
    component: str
    model: str | None
    weights_sha256: str | None
    seed: int | None


@dataclass(frozen=True)
class Catalogue:
    """Everything :func:`scan` found under ``root``."""

    root: Path
    tables: tuple[ResultTable, ...] = ()
    stores: tuple[Path, ...] = ()
    probes: tuple[ProbeRef, ...] = ()
    saes: tuple[Path, ...] = ()
    linking: tuple[Path, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def of_kind(self, *kinds: str) -> list[ResultTable]:
        return [t for t in self.tables if t.kind in kinds]

    def summary(self) -> pd.DataFrame:
        rows = [{"what": f"table: {t.kind}", "path": str(t.path.relative_to(self.root)), "model": t.model or "",
                 "suites": ", ".join(t.suites)} for t in self.tables]
        rows += [{"what": "sweep store", "path": str(p.relative_to(self.root)), "model": "", "suites": ""}
                 for p in self.stores]
        rows += [{"what": "probe", "path": str(p.path.relative_to(self.root)), "model": p.model or "",
                  "suites": ""} for p in self.probes]
        rows += [{"what": "SAE", "path": str(p.relative_to(self.root)), "model": "", "suites": ""} for p in self.saes]
        rows += [{"what": "linking fit", "path": str(p.relative_to(self.root)), "model": "", "suites": ""}
                 for p in self.linking]
        return pd.DataFrame(rows, columns=["what", "path", "model", "suites"])

    @property
    def empty(self) -> bool:
        return not (self.tables or self.stores or self.saes or self.linking)


def table_columns(path: Path) -> list[str]:
    """Column names of a CSV or Parquet file without reading its rows."""
    if path.suffix.lower() == ".csv":
        return list(pd.read_csv(path, nrows=0).columns)

    return list(pq.read_schema(path).names)


def classify(columns: Iterable[str]) -> str | None:
    cols = set(columns)
    for kind, need in TABLE_KINDS:
        if need <= cols:
            return kind
    return None


def _provenance(path: Path) -> dict[str, Any]:
    prov = path.with_name(path.name + ".provenance.json")
    try:
        return json.loads(prov.read_text()) if prov.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _suite_names(prov: dict[str, Any]) -> tuple[str, ...]:
    s = prov.get("suite")
    if not isinstance(s, dict):
        return ()
    if "suites" in s:
        return tuple(str(x.get("name")) for x in s["suites"] if isinstance(x, dict))
    return (str(s.get("name")),) if s.get("name") else ()


def _table(path: Path) -> ResultTable | None:
    try:
        cols = table_columns(path)
    except Exception:  # unreadable or not a table: not ours to show
        return None
    prov = _provenance(path)
    kind = LADDER if prov.get("command") == LADDER else classify(cols)  # a ladder is told by what wrote it
    if kind is None:
        return None
    model = prov.get("model")
    model = model if isinstance(model, dict) else {}
    return ResultTable(path=path, kind=kind, columns=tuple(cols), command=prov.get("command"),
                       model=model.get("name"), weights_sha256=model.get("weights_sha256"), suites=_suite_names(prov))


def _is_linking(path: Path) -> bool:
    if path.name in _NOT_LINKS or path.name.endswith(".provenance.json") or path.stat().st_size > 1_000_000:
        return False
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(d, dict) and {"feature_set", "features", "coef", "cov"} <= set(d)


def _probe_ref(directory: Path, job: str = "") -> ProbeRef | None:
    """A saved probe artifact (``probe.json`` + ``probe.safetensors``), described from its own metadata."""
    try:
        meta = json.loads((directory / "probe.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("kind") != "mechinterp.probes.ProbeArtifact" or not (directory / "probe.safetensors").exists():
        return None
    site = meta.get("site") or {}
    model = meta.get("model") or {}
    seed = (meta.get("training") or {}).get("seed")
    return ProbeRef(path=directory, job=job, construction=str(meta.get("construction")),
                    layer=int(site.get("layer", -1)), component=str(site.get("component")), model=model.get("name"),
                    weights_sha256=model.get("weights_sha256"), seed=None if seed is None else int(seed))


def _store_probes(store: Path) -> list[ProbeRef]:
    out = []
    for job in sorted((store / "jobs").iterdir()):
        if (job / "job.json").exists():
            out += [r for pj in sorted(job.glob("probes/*/*/probe.json")) if (r := _probe_ref(pj.parent, job.name))]
    return out


def scan(root: str | Path, max_depth: int = MAX_DEPTH, max_files: int = MAX_FILES) -> Catalogue:
    """Catalogue the results under ``root`` (ConfigError if it is not a directory)."""
    root = Path(root).expanduser()
    if not str(root).strip() or not root.is_dir():
        raise ConfigError(f"results directory {str(root)!r} does not exist (point the explorer at a folder that "
                          "mechinterp commands or sweeps wrote into)")
    root = root.resolve()
    tables: list[ResultTable] = []
    stores: list[Path] = []
    probes: list[ProbeRef] = []
    saes: list[Path] = []
    links: list[Path] = []
    notes: list[str] = []
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        depth = len(d.relative_to(root).parts)
        names = set(filenames)
        if "cfg.json" in names and any(f.endswith(".safetensors") for f in filenames):
            saes.append(d)
            dirnames[:] = []
            continue
        if "probe.json" in names:  # a probe artifact saved outside a sweep store
            ref = _probe_ref(d)
            if ref is not None:
                probes.append(ref)
            dirnames[:] = []
            continue
        if (d / "jobs").is_dir() and ("sweep.json" in names or "sweep.toml" in names
                                      or any((j / "job.json").exists() for j in (d / "jobs").iterdir())):
            stores.append(d)
            probes += _store_probes(d)
            dirnames[:] = [n for n in dirnames if n != "jobs"]  # combined tables sit at the store's top
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and n not in SKIP_DIRS) \
            if depth < max_depth else []
        for f in sorted(filenames):
            p = d / f
            seen += 1
            if seen > max_files:
                notes.append(f"stopped after {max_files} files; point at a smaller folder to see everything")
                break
            if f.startswith("."):
                continue
            low = f.lower()
            if low.endswith((".csv", ".parquet", ".pq")):
                problem = provenance_problem(p)
                if problem is not None:  # shown, never used: its model and suite cannot be believed
                    notes.append(f"{problem}. Not used here; rerun the command that wrote it.")
                    continue
                t = _table(p)
                if t is not None:
                    tables.append(t)
            elif low.endswith(".json") and _is_linking(p):
                links.append(p)
        if seen > max_files:
            break
    return Catalogue(root=root, tables=tuple(tables), stores=tuple(stores), probes=tuple(probes), saes=tuple(saes),
                     linking=tuple(links), notes=tuple(notes))


def read_kind(cat: Catalogue, kind: str, weights_sha256: str | None = None, model: str | None = None,
              suite: str | None = None) -> tuple[pd.DataFrame, list[ResultTable]]:
    """All tables of one kind (optionally only those of the given model and suite) concatenated, and the
    tables used. A table without a ``suite`` column keeps its rows when its provenance names the suite."""
    used, frames = [], []
    for t in cat.of_kind(kind):
        if not t.matches_model(weights_sha256, model):
            continue
        df = t.read()
        if suite is not None:
            if "suite" in df.columns:
                df = df[df["suite"].astype(str) == suite]
            elif t.suites and suite not in t.suites:
                continue
        if len(df):
            frames.append(df.assign(_source=str(t.path)))
            used.append(t)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), used

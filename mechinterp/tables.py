"""Tidy result tables on disk: CSV or Parquet by extension, written atomically, provenance beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mechinterp.errors import CacheError, ConfigError
from mechinterp.io import atomic_path, is_temporary, sha256_file, temporary_owner_alive, write_json_atomic
from mechinterp.provenance import Provenance, provenance_path

FORMATS = (".csv", ".parquet", ".pq")


def check_out_path(path: str | Path) -> Path:
    """Check an output table's name before any work: a .csv or .parquet file, not an existing directory."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"output {path}: use a .csv or .parquet file name")
    if path.is_dir():
        raise ConfigError(f"output {path} is a directory: give a file name")
    return path


def write_table(df: pd.DataFrame, path: str | Path, prov: Provenance | None = None) -> Path:
    """Write ``df`` to ``path`` via a temporary file and a rename, so a crash never leaves half a file and a
    failure never destroys a result that was already there.

    The provenance (``<path>.provenance.json``) records the table's sha256 (``table_sha256``). Both are written
    in full to temporaries first; the provenance is renamed into place and the table last, so a run that fails
    while writing leaves the old pair untouched, and the only other state (killed between the two renames) is
    detected by :func:`check_provenance` (the provenance's hash does not match the table)."""
    path = check_out_path(path)
    for left in path.parent.glob(f".{path.name}.*"):  # what killed runs left of this table and its provenance
        if is_temporary(left) and not temporary_owner_alive(left):
            left.unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        if prov is not None:
            record = prov.to_json()
            record["table_sha256"] = sha256_file(tmp)
            write_json_atomic(provenance_path(path), record)
    return path


def check_provenance(path: str | Path) -> dict:
    """The provenance of a result table, checked against the table: CacheError if it is missing or records
    another table's sha256 (a run killed between writing the two)."""
    path = Path(path)
    ppath = provenance_path(path)
    if not ppath.exists():
        raise CacheError(f"{path} has no provenance ({ppath.name}); rerun the command that wrote it")
    try:
        record = json.loads(ppath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CacheError(f"{ppath} is unreadable ({exc}); rerun the command that wrote {path.name}") from None
    want = record.get("table_sha256") if isinstance(record, dict) else None
    if want is not None and want != sha256_file(path):
        raise CacheError(f"{ppath.name} does not describe {path} (sha256 differs: a run was interrupted); "
                         "rerun the command that wrote it")
    return record


def read_table(path: str | Path) -> pd.DataFrame:
    path = check_out_path(path)
    if not path.exists():
        raise ConfigError(f"result table {path} does not exist")
    return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)

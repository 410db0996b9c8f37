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


def provenance_problem(path: str | Path) -> str | None:
    """Why the provenance file beside the result table ``path`` cannot be believed, in one line; None when it
    matches the table, or when there is none (a table made elsewhere, which readers accept as it is).

    A provenance file that records another table's sha256 (``table_sha256``: the table was edited or replaced
    after it was written, or a run was killed between the two renames of :func:`write_table`) or that cannot be
    read is a problem. The message names both files, never what they hold.
    """
    path = Path(path)
    ppath = provenance_path(path)
    if not ppath.exists():
        return None
    try:
        record = json.loads(ppath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"the provenance {ppath.name} beside {path} is unreadable ({type(exc).__name__})"
    if not isinstance(record, dict):
        return f"the provenance {ppath.name} beside {path} is not a provenance record"
    want = record.get("table_sha256")
    if want is not None and want != sha256_file(path):
        return (f"the provenance {ppath.name} does not describe {path}: the table's sha256 differs from the one it "
                "records (the table was changed after it was written, or a run was interrupted)")
    return None


def check_provenance(path: str | Path) -> dict:
    """The provenance of a result table, checked against the table: CacheError if it is missing, unreadable or
    records another table's sha256 (a run killed between writing the two, or a table edited since)."""
    path = Path(path)
    ppath = provenance_path(path)
    if not ppath.exists():
        raise CacheError(f"{path} has no provenance ({ppath.name}); rerun the command that wrote it")
    problem = provenance_problem(path)
    if problem is not None:
        raise CacheError(f"{problem}; rerun the command that wrote it")
    return json.loads(ppath.read_text(encoding="utf-8"))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a result table (CSV or Parquet by extension), refusing one whose provenance does not match it.

    The rule every reader of result tables follows: a table with no ``<path>.provenance.json`` is a table made
    elsewhere and is read as it is; a table with one must be the table that file describes (its recorded
    sha256), else CacheError names both files and the fix (rerun the command that wrote it, or delete the
    provenance file to use the table as one made elsewhere). The explorer, which only shows results, warns
    instead of refusing (:func:`provenance_problem`).

    Example:
        >>> words = read_table("out/collapse/words.parquet")
    """
    path = check_out_path(path)
    if not path.exists():
        raise ConfigError(f"result table {path} does not exist")
    problem = provenance_problem(path)
    if problem is not None:
        raise CacheError(f"{problem}; rerun the command that wrote it, or delete {provenance_path(path).name} to "
                         "use the table as one made elsewhere")
    return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)

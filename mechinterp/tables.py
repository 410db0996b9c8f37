"""Tidy result tables on disk: CSV or Parquet by extension, written atomically, provenance beside them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mechinterp.errors import ConfigError
from mechinterp.io import atomic_path
from mechinterp.provenance import Provenance, write_provenance

FORMATS = (".csv", ".parquet", ".pq")


def check_out_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"output {path}: use a .csv or .parquet file name")
    return path


def write_table(df: pd.DataFrame, path: str | Path, prov: Provenance | None = None) -> Path:
    """Write ``df`` to ``path`` via a temporary file and a rename, so a crash never leaves half a file and a
    failure never destroys a result that was already there."""
    path = check_out_path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        if prov is not None:
            write_provenance(path, prov)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    path = check_out_path(path)
    if not path.exists():
        raise ConfigError(f"result table {path} does not exist")
    return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)

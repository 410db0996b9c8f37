"""Writing files so that a crash never leaves half a file, and hashing files.

Every file the workbench writes is first written under a temporary name in the same directory and then
renamed over the target (a rename within one file system is atomic): a reader sees the old file or the new
one, never a mix, and a failed run never destroys a result that was already there. The temporary name is
ONE scheme everywhere, ``.<name>.<pid>.tmp`` beside the target, so that concurrent processes never share a
temporary file and leftovers of an interrupted run are easy to recognise (:func:`is_temporary`).

Example::

    write_text_atomic(out / "fit.json", json.dumps(fit))
    with atomic_path(out / "table.parquet") as tmp:
        df.to_parquet(tmp)
    with atomic_dir(out / "probe") as tmp:      # a directory replaced as a whole
        (tmp / "probe.json").write_text(meta)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from safetensors.torch import load_file

from mechinterp.errors import CacheError

TMP_SUFFIX = ".tmp"


def temporary_path(path: str | Path, kind: str = "tmp") -> Path:
    """The temporary name for ``path``: ``.<name>.<pid>.<kind>`` in the same directory."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{kind}")


def is_temporary(path: str | Path) -> bool:
    """Whether ``path`` is a temporary file or directory left by :func:`atomic_path` / :func:`atomic_dir`."""
    name = Path(path).name
    parts = name.split(".")
    return name.startswith(".") and len(parts) >= 4 and parts[-2].isdigit() and parts[-1] in ("tmp", "old")


def temporary_owner_alive(path: str | Path) -> bool:
    """Whether the process that made the temporary ``path`` (its pid is in the name) is still running."""
    pid = int(Path(path).name.split(".")[-2])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(directory: str | Path) -> int:
    """Remove the temporaries in ``directory`` left by runs that are no longer running (never those of a live
    process, which may be writing them now). Returns how many were removed."""
    n = 0
    for p in Path(directory).glob(".*"):
        if is_temporary(p) and not temporary_owner_alive(p):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            n += 1
    return n


@contextmanager
def atomic_path(path: str | Path, mkdir: bool = True, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``, on error it is removed and
    ``path`` is left as it was.

    Args:
        path: the file to write.
        mkdir: create the parent directory first.
        fsync: flush the temporary file to disk before the rename (for large files other runs resume from).
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_json_atomic(path: str | Path, obj: Any, **dumps: Any) -> Path:
    """``json.dumps(obj, **dumps)`` written atomically (``indent=2, default=str`` unless given)."""
    dumps.setdefault("default", str)
    if "separators" not in dumps:
        dumps.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(obj, **dumps))


@contextmanager
def atomic_dir(directory: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory to fill; on success it replaces ``directory`` as a whole (an existing
    one is moved aside first and removed after), on error it is removed and ``directory`` is left as it was."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(directory)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if directory.exists():
            old = temporary_path(directory, "old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_saved_tensors(directory: "str | Path", what: str, tensors_file: str, meta_file: str,
                       format_version: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a fitted object saved as a safetensors file plus a JSON metadata file in ``directory``.

    Args:
        directory: where :func:`atomic_dir` wrote it.
        what: what it is, for the error messages ("probe", "learned intervention").
        tensors_file: the safetensors file's name.
        meta_file: the JSON file's name (its ``format_version`` must equal ``format_version``).
        format_version: the version this code reads.

    Returns:
        ``(metadata, tensors)``. CacheError (one line, naming the directory) when a file is missing or unreadable
        or the version differs.
    """
    directory = Path(directory)
    tfile, mfile = directory / tensors_file, directory / meta_file
    if not tfile.exists() or not mfile.exists():
        raise CacheError(f"{directory} is not a saved {what} (needs {tensors_file} and {meta_file})")
    try:
        meta = json.loads(mfile.read_text())
        tensors = load_file(str(tfile))
    except (OSError, ValueError) as exc:
        raise CacheError(f"{what} in {directory} is unreadable: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != format_version:
        found = meta.get("format_version") if isinstance(meta, dict) else None
        raise CacheError(f"{what} in {directory} has format version {found}, expected {format_version}")
    return meta, tensors

"""Atomic writes and file hashes (mechinterp.io)."""

from __future__ import annotations

import hashlib
import os

import pytest

from mechinterp.io import atomic_dir, atomic_path, is_temporary, sha256_file, temporary_path, write_json_atomic


def test_temporary_name_is_beside_the_target_and_carries_the_pid(tmp_path):
    tmp = temporary_path(tmp_path / "table.parquet")
    assert tmp.parent == tmp_path and tmp.name == f".table.parquet.{os.getpid()}.tmp"
    assert is_temporary(tmp) and not is_temporary(tmp_path / "table.parquet")


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert path.read_text() == '{\n  "a": 1\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_dir_replaces_a_directory_whole(tmp_path):
    d = tmp_path / "probe"
    with atomic_dir(d) as tmp:
        (tmp / "a.txt").write_text("1")
    with atomic_dir(d) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in d.iterdir()) == ["b.txt"]
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as tmp:
            (tmp / "c.txt").write_text("3")
            raise RuntimeError("crash")
    assert sorted(p.name for p in d.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe"]


def test_sha256_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc" * 1000)
    assert sha256_file(path, chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()

"""Hostile inputs: every malformed suite, CSV, TOML, site spec, intervention spec or option value is refused
with exactly one line on stderr, a non-zero exit, no traceback, and the result already at ``--out`` intact.

The cases run in-process through ``mechinterp.cli.main`` (stderr captured), so the table stays fast; the
concurrency and hash-seed checks at the end use real subprocesses (``sys.executable -m mechinterp.cli``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mechinterp.cli import main
from mechinterp.locate.cache import ActivationCache

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTINEL = "sentinel result\n"
PROGRESS = re.compile(r"\d+/\d+ \[[\d:<?]+")
GOOD_ITEM = {"item_number": 1, "conditions": [
    {"condition_name": "a", "regions": [{"region_number": 1, "content": "The horse"},
                                        {"region_number": 2, "content": "raced past the barn."}]}]}


def _suite(**top):
    return json.dumps({"meta": {"name": "bad"}, "items": [GOOD_ITEM], **top})


def _item(**fields):
    return json.dumps({"items": [{**GOOD_ITEM, **fields}]})


def _region(**fields):
    cond = {"condition_name": "a", "regions": [{"region_number": 1, "content": "x"} | fields]}
    return json.dumps({"items": [{"item_number": 1, "conditions": [cond]}]})


# name -> (file name, bytes) of a malformed suite; each is run as `effects --suite FILE --out SENTINEL`
BAD_SUITES: dict[str, tuple[str, bytes]] = {
    "conditions-string": ("s.json", _item(conditions="abc").encode()),
    "conditions-int": ("s.json", _item(conditions=5).encode()),
    "regions-string": ("s.json", _item(conditions=[{"condition_name": "a", "regions": "xyz"}]).encode()),
    "regions-dict": ("s.json", _item(conditions=[{"condition_name": "a", "regions": {"a": 1}}]).encode()),
    "meta-string": ("s.json", _suite(meta="hello").encode()),
    "meta-list": ("s.json", _suite(meta=[1, 2]).encode()),
    "region_meta-list": ("s.json", _suite(region_meta=["a", "b"]).encode()),
    "region_meta-bad-key": ("s.json", _suite(region_meta={"first": "x"}).encode()),
    "lexical-list": ("s.json", _item(lexical=["a"]).encode()),
    "items-dict": ("s.json", json.dumps({"items": {"1": 2}}).encode()),
    "items-missing": ("s.json", b"{}"),
    "top-list": ("s.json", b"[1, 2, 3]"),
    "item-number-fraction": ("s.json", _item(item_number=1.5).encode()),
    "item-number-text": ("s.json", _item(item_number="one").encode()),
    "item-number-bool": ("s.json", _item(item_number=True).encode()),
    "region-number-fraction": ("s.json", _region(region_number=1.5).encode()),
    "region-number-text": ("s.json", _region(region_number="x").encode()),
    "region-number-zero": ("s.json", _region(region_number=0).encode()),
    "region-content-int": ("s.json", _region(content=5).encode()),
    "ambiguity-string": ("s.json", _suite(ambiguity="yes").encode()),
    "predictions-ints": ("s.json", _suite(predictions=[1]).encode()),
    "latin-1": ("s.json", _suite(meta={"name": "caf\u00e9"}).encode("latin-1")),
    "invalid-utf8": ("s.json", b'{"items": [\xff\xfe]}'),
    "deep-nesting": ("s.json", b"[" * 200_000 + b"]" * 200_000),
    "empty-json": ("s.json", b""),
    "truncated-json": ("s.json", _suite()[:40].encode()),
    "sap-no-item": ("s.csv", b"condition,ambiguous,unambiguous,disambPositionAmb,disambPositionUnamb\n"
                             b"NPS_a,The man knew the answer was,The man knew that the answer was,6,7\n"),
    "sap-no-condition": ("s.csv", b"item,ambiguous,unambiguous,disambPositionAmb,disambPositionUnamb\n"
                                  b"1,The man knew the answer was,The man knew that the answer was,6,7\n"),
    "sap-item-fraction": ("s.csv", b"item,condition,ambiguous,unambiguous,disambPositionAmb,disambPositionUnamb\n"
                                   b"1.5,NPS_a,The man knew the answer was,The man knew that the answer was,6,7\n"),
    "csv-latin-1": ("s.csv", "item,condition,Sentence,disambPosition\n1,a,caf\u00e9 ol\u00e9,1\n".encode("latin-1")),
    "csv-empty": ("s.csv", b""),
    "unknown-suffix": ("s.txt", b"hello"),
}

# name -> arguments after the command's own required ones; {model}, {out}, {tmp} are filled in
BAD_OPTIONS: dict[str, list[str]] = {
    "effects-rois-99": ["effects", "--model", "{model}", "--suite", "mvrr", "--out", "{out}", "--rois", "99"],
    "effects-rois-minus-50": ["effects", "--model", "{model}", "--suite", "mvrr", "--out", "{out}", "--rois", "-50"],
    "effects-rois-text": ["effects", "--suite", "mvrr", "--out", "{out}", "--rois", "a,b"],
    "effects-rois-empty": ["effects", "--suite", "mvrr", "--out", "{out}", "--rois", ","],
    "effects-n-boot-0": ["effects", "--suite", "mvrr", "--out", "{out}", "--n-boot", "0"],
    "effects-n-boot-text": ["effects", "--suite", "mvrr", "--out", "{out}", "--n-boot", "many"],
    "effects-batch-size-0": ["effects", "--suite", "mvrr", "--out", "{out}", "--batch-size", "0"],
    "effects-batch-size-negative": ["effects", "--suite", "mvrr", "--out", "{out}", "--batch-size", "-3"],
    "effects-seed-negative": ["effects", "--suite", "mvrr", "--out", "{out}", "--seed", "-1"],
    "effects-out-directory": ["effects", "--suite", "mvrr", "--out", "{tmp}/dir.csv"],
    "effects-out-suffix": ["effects", "--suite", "mvrr", "--out", "{tmp}/x.txt"],
    "effects-items-out-directory": ["effects", "--suite", "mvrr", "--out", "{out}", "--items-out", "{tmp}/dir.csv"],
    "effects-unknown-suite": ["effects", "--suite", "no-such-suite", "--out", "{out}"],
    "effects-suite-directory": ["effects", "--suite", "{tmp}/dir.json", "--out", "{out}"],
    "effects-suite-missing": ["effects", "--suite", "{tmp}/missing.json", "--out", "{out}"],
    "patch-items-0": ["patch", "--model", "{model}", "--suite", "mvrr", "--out", "{out}", "--items", "0"],
    "patch-items-minus-1": ["patch", "--model", "{model}", "--suite", "mvrr", "--out", "{out}", "--items", "-1"],
    "patch-report-suffix": ["patch", "--suite", "mvrr", "--out", "{out}", "--report", "{tmp}/r.txt"],
    "cache-region-name": ["cache", "--model", "{model}", "--suite", "mvrr", "--out-dir", "{tmp}/cache",
                          "--sites", "resid_post@0:region=nope/last"],
    "cache-region-99": ["cache", "--model", "{model}", "--suite", "mvrr", "--out-dir", "{tmp}/cache",
                        "--sites", "resid_post@0:region=99/last"],
    "cache-token-999": ["cache", "--model", "{model}", "--suite", "mvrr", "--out-dir", "{tmp}/cache",
                        "--sites", "resid_post@0:token=999"],
    "cache-token-minus-999": ["cache", "--model", "{model}", "--suite", "mvrr", "--out-dir", "{tmp}/cache",
                              "--sites", "resid_post@0:token=-999"],
    "cache-layer-99": ["cache", "--model", "{model}", "--suite", "mvrr", "--out-dir", "{tmp}/cache",
                       "--sites", "resid_post@99"],
    "cache-garbage-site": ["cache", "--model", "{model}", "--suite", "mvrr", "--out-dir", "{tmp}/cache",
                           "--sites", "@@@"],
    "cache-out-dir-file": ["cache", "--model", "{model}", "--suite", "mvrr", "--out-dir", "{out}",
                           "--sites", "resid_post@0:token=-1"],
    "cache-shard-size-0": ["cache", "--suite", "mvrr", "--out-dir", "{tmp}/cache", "--sites", "resid_post@0",
                           "--shard-size", "0"],
    "collapse-intervention-list-of-ints": ["collapse", "--model", "{model}", "--suite", "mvrr", "--out", "{out}",
                                           "--intervention", "[1,2]"],
    "collapse-intervention-parts-int": ["collapse", "--model", "{model}", "--suite", "mvrr", "--out", "{out}",
                                        "--intervention", '{"parts": 5}'],
    "collapse-intervention-garbage": ["collapse", "--model", "{model}", "--suite", "mvrr", "--out", "{out}",
                                      "--intervention", "nonsense"],
    "collapse-intervention-bad-json": ["collapse", "--model", "{model}", "--suite", "mvrr", "--out", "{out}",
                                       "--intervention", "{oops"],
    "sweep-latin-1": ["sweep", "{tmp}/latin.toml"],
    "sweep-directory": ["sweep", "{tmp}/dir.toml"],
    "sweep-missing": ["sweep", "{tmp}/missing.toml"],
    "sweep-syntax": ["sweep", "{tmp}/syntax.toml"],
    "sweep-num-cpus-0": ["sweep", "{tmp}/syntax.toml", "--num-cpus", "0"],
    "probe-train-out-dir-file": ["probe", "train", "--model", "{model}", "--suite", "mvrr", "--out-dir", "{out}"],
    "probe-train-folds-0": ["probe", "train", "--suite", "mvrr", "--out-dir", "{tmp}/p", "--folds", "0"],
    "probe-train-C-0": ["probe", "train", "--suite", "mvrr", "--out-dir", "{tmp}/p", "--C", "0"],
    "sweep-store-file": ["sweep", "{tmp}/syntax.toml", "--store", "{out}"],
    "unknown-command": ["no-such-command"],
    "unknown-option": ["effects", "--suite", "mvrr", "--out", "{out}", "--bogus"],
}


@pytest.fixture
def sandbox(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text(SENTINEL)
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "latin.toml").write_bytes("[sweep]\nname = 'caf\u00e9'\n".encode("latin-1"))
    (tmp_path / "syntax.toml").write_text("[sweep\nname = \n")
    return tmp_path, out


def refused(argv: list[str], capsys, out: Path) -> str:
    """Run the CLI and check the hardening contract; returns the one stderr line."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    # progress bars of the model loader (carriage-return lines) are not part of the error report
    lines = [ln for ln in err.splitlines() if ln.strip() and not PROGRESS.search(ln)]
    assert rc not in (0, None), f"exit {rc} for {argv}"
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert out.read_text() == SENTINEL
    return lines[0]


@pytest.mark.parametrize("case", sorted(BAD_SUITES))
def test_malformed_suite_is_one_line(case, sandbox, capsys):
    tmp, out = sandbox
    name, data = BAD_SUITES[case]
    path = tmp / name
    path.write_bytes(data)
    line = refused(["effects", "--suite", str(path), "--out", str(out)], capsys, out)
    assert "error:" in line


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_option_is_one_line(case, sandbox, capsys, tiny_dirs):
    tmp, out = sandbox
    fill = {"{model}": str(tiny_dirs["llama"]), "{out}": str(out), "{tmp}": str(tmp)}
    argv = [fill.get(a, a).replace("{tmp}", str(tmp)) for a in BAD_OPTIONS[case]]
    refused(argv, capsys, out)
    assert not any(p.name == "manifest.json" for p in (tmp / "cache").rglob("*")) if (tmp / "cache").exists() else True


def test_error_names_item_and_field_once(sandbox, capsys):
    tmp, out = sandbox
    path = tmp / "s.json"
    path.write_text(_item(item_number=1.5))
    line = refused(["effects", "--suite", str(path), "--out", str(out)], capsys, out)
    assert line.count("item_number") == 1 and "items[0]" in line and "1.5" in line


def test_cache_site_error_names_item_and_site(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "sentinel.csv"
    out.write_text(SENTINEL)
    line = refused(["cache", "--model", str(tiny_dirs["llama"]), "--suite", "mvrr", "--out-dir", str(tmp_path / "c"),
                    "--sites", "resid_post@0:region=99/last"], capsys, out)
    assert "item 1" in line and "region=99" in line
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_effects_items_out_written_after_summary(tiny_dirs, tmp_path, capsys, monkeypatch):
    import mechinterp.cli.effects as effects_cli

    out, items = tmp_path / "e.csv", tmp_path / "items.csv"
    out.write_text(SENTINEL)
    items.write_text(SENTINEL)

    def boom(*a, **k):
        raise effects_cli.ConfigError("summary failed")

    monkeypatch.setattr(effects_cli, "summarise_effects", boom)
    refused(["effects", "--model", str(tiny_dirs["llama"]), "--suite", "mvrr", "--out", str(out),
             "--items-out", str(items), "--n-boot", "10"], capsys, out)
    assert items.read_text() == SENTINEL


def test_concurrent_cache_runs_verify_clean(tiny_dirs, tmp_path):
    """Two `mechinterp cache` processes into the same directory: both succeed and the cache verifies."""
    args = [sys.executable, "-m", "mechinterp.cli", "cache", "--model", str(tiny_dirs["llama"]), "--suite", "mvrr",
            "--sites", "resid_post@0+1:region=verb/last", "--out-dir", str(tmp_path / "c"), "--shard-size", "4"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_out, e) in zip(procs, results):
        assert p.returncode == 0, e
    (root,) = [p for p in (tmp_path / "c").iterdir() if p.is_dir()]
    cache = ActivationCache.open(root)
    cache.verify()
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_table_and_provenance_stay_a_pair(tmp_path, monkeypatch):
    """A write that fails leaves the old table and provenance; a provenance that does not match its table
    (a run killed between the two renames) is detected; leftovers of dead runs are removed."""
    import pandas as pd

    import mechinterp.tables as tables
    from mechinterp.errors import CacheError
    from mechinterp.provenance import Provenance, provenance_path

    out = tmp_path / "t.csv"
    tables.write_table(pd.DataFrame({"a": [1]}), out, Provenance(command="one", config={}))
    old_table, old_prov = out.read_bytes(), provenance_path(out).read_bytes()
    assert tables.check_provenance(out)["command"] == "one"

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)
    with pytest.raises(OSError):
        tables.write_table(pd.DataFrame({"a": [2]}), out, Provenance(command="two", config={}))
    monkeypatch.undo()
    assert out.read_bytes() == old_table and provenance_path(out).read_bytes() == old_prov
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".t.csv.{int(dead.stdout)}.tmp"
    leftover.write_text("half")
    out.write_text("a\n3\n")  # the table changed without its provenance
    with pytest.raises(CacheError, match="sha256"):
        tables.check_provenance(out)
    tables.write_table(pd.DataFrame({"a": [4]}), out, Provenance(command="four", config={}))
    assert not leftover.exists() and tables.check_provenance(out)["command"] == "four"


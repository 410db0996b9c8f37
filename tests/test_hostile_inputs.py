"""Hostile inputs: every malformed suite, spreadsheet, CSV, sweep TOML, site spec, intervention spec, option value
or suite too long for the model is refused with exactly one line on stderr, a non-zero exit, no traceback, and
the result already at ``--out`` intact (and no cache or sweep store started).

The hostile inputs are data at the top of this module: :func:`cli_cases` (every case as a command line),
:func:`make_sandbox` (the files they name) and :func:`violations` (the contract). The tests run each case
in-process through ``mechinterp.cli.main`` (stderr captured), so the table stays fast; ``scripts/hostile_inputs.py``
runs the very same cases as real ``mechinterp`` processes and prints how many passed. The concurrency and
lock checks at the end use real subprocesses (``sys.executable -m mechinterp.cli``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import short_context_dir
from mechinterp.cli import main
from mechinterp.locate.cache import ActivationCache

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTINEL = "sentinel result\n"
PROGRESS = re.compile(r"\d+/\d+ \[[\d:<?]+")
N_CTX = 18  # the short-context model's limit: the longest built-in MV/RR sentence (item 24) is 19 tokens with BOS
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

# spreadsheets (one row per item and condition, regions as columns or inline '|'), with their sidecars
BAD_SUITES.update({
    "table-missing-condition": ("t.csv", b"item,region_1\n1,Hello.\n"),
    "table-duplicate-row": ("t.csv", b"item,condition,region_1\n1,a,Hi.\n1,a,Bye.\n"),
    "table-item-text": ("t.csv", b"item,condition,region_1\none,a,Hi.\n"),
    "table-ambiguous-maybe": ("t.csv", b"item,condition,ambiguous,region_1\n1,a,maybe,Hi.\n"),
    "table-ragged-inline": ("t.tsv", b"item\tcondition\tregions\n1\ta\tA | b | c\n1\tb\tA | b\n"),
    "table-latin-1": ("t.csv", "item,condition,region_1\n1,a,caf\u00e9\n".encode("latin-1")),
    "table-header-only": ("t.csv", b"item,condition,region_1\n"),
    "table-sidecar-bad-json": ("t.csv", b"item,condition,region_1\n1,a,Hi.\n"),
    "table-sidecar-bad-toml": ("t.csv", b"item,condition,region_1\n1,a,Hi.\n"),
    "table-sidecar-unknown-region": ("t.csv", b"item,condition,a,b\n1,ambiguous,x,y\n"),
    "table-sidecar-list": ("t.csv", b"item,condition,region_1\n1,a,Hi.\n"),
})
# case -> {suffix: bytes}: files written beside the suite file (``t.csv`` + ``.meta.json`` = ``t.csv.meta.json``)
SIDECARS: dict[str, dict[str, bytes]] = {
    "table-sidecar-bad-json": {".meta.json": b"{oops"},
    "table-sidecar-bad-toml": {".meta.toml": b"name = \n"},
    "table-sidecar-unknown-region": {".meta.json": json.dumps(
        {"regions": ["a", "b"], "ambiguity": {"construction": "X", "disambiguating": "c"}}).encode()},
    "table-sidecar-list": {".meta.json": b"[1, 2]"},
}

# name -> site spec, run as `cache --sites SPEC` on the tiny model and the MV/RR suite
BAD_SITE_SPECS: dict[str, str] = {
    "empty": "",
    "no-layers": "resid_post",
    "empty-layers": "resid_post@",
    "no-component": "@0",
    "open-range": "resid_post@0-",
    "reversed-range": "resid_post@3-1",
    "negative-layer": "resid_post@-1",
    "huge-layer": "resid_post@99999999999999999999",
    "fraction-layer": "resid_post@0.5",
    "slash-layers": "resid_post@0/1",
    "every-0": "resid_post@every 0",
    "unknown-component": "bogus@0",
    "trailing-comma": "resid_post@0,",
    "empty-region": "resid_post@0:region=",
    "token-text": "resid_post@0:token=abc",
    "token-fraction": "resid_post@0:token=1.5",
    "bad-choice": "resid_post@0:region=verb/sideways",
    "head-99": "head_out@0:region=verb/last:head=99",
    "head-on-resid": "resid_post@0:region=verb/last:head=1",
    "unknown-part": "resid_post@0:region=verb/last:extra=1",
    "region-0": "resid_post@0:region=0/last",
}

# name -> intervention spec, run as `collapse --intervention SPEC` on the tiny model and the MV/RR suite
BAD_INTERVENTION_SPECS: dict[str, str] = {
    "empty": "",
    "unknown-kind": "unknown:x=1",
    "json-string": '"clamp"',
    "json-null": "null",
    "negative-layer": "clamp:layer=-1",
    "layer-text": "clamp:layer=x",
    "layer-range-for-clamp": "clamp:layer=0-1",
    "empty-layers": "leace:layers=",
    "comma-layers": "leace:layers=0,1",
    "truncate-negative": "truncate:k=-3",
    "truncate-text": "truncate:k=abc",
    "shift-text": "clamp:layer=0,shift=abc",
    "unknown-where": "leace:layers=0,where=nowhere",
    "unknown-conditions": "leace:layers=0,conditions=some",
    "unknown-component": "leace:layers=0,component=bogus",
    "sae-without-sae": "sae:remove=ambiguous",
    "n-fit-0": "clamp:layer=0,n_fit=0",
    "dangling-plus": "a=clamp:layer=0+",
    "missing-file": "@{tmp}/missing-spec.json",
    "file-is-directory": "@{tmp}/dir.json",
    "file-latin-1": "@{tmp}/latin.json",
    "layer-99": "clamp:layer=99",
    "leace-layer-99": "leace:layers=99",
    "sae-missing-directory": "sae:sae={tmp}/no-sae,remove=ambiguous",
}

SWEEP_HEAD = '[sweep]\nname = "hostile"\nstore = "{tmp}/store"\n'
SWEEP_GRID = '[grid]\nmodels = ["{model}"]\nsuites = ["mvrr"]\n'
SWEEP_SMALL = '[sites]\nlayers = [0]\n[probe]\nn_per_class = 10\nfolds = 2\ncontrol = false\ntransfer = false\n'
GOOD_SWEEP = SWEEP_HEAD + SWEEP_GRID + SWEEP_SMALL
# name -> sweep file text ({model}, {tmp} filled in), run as `sweep FILE.toml`; none may start a job or a store
BAD_SWEEPS: dict[str, str] = {
    "unknown-key": SWEEP_HEAD + "bogus = 1\n" + SWEEP_GRID,
    "no-grid": SWEEP_HEAD,
    "models-empty": SWEEP_HEAD + '[grid]\nmodels = []\nsuites = ["mvrr"]\n',
    "seeds-text": SWEEP_HEAD + SWEEP_GRID + 'seeds = "many"\n',
    "layers-every-0": SWEEP_HEAD + SWEEP_GRID + '[sites]\nlayers = "every 0"\n',
    "layers-negative": SWEEP_HEAD + SWEEP_GRID + "[sites]\nlayers = [-1]\n",
    "component-unknown": SWEEP_HEAD + SWEEP_GRID + '[sites]\ncomponents = ["bogus"]\n',
    "batch-size-0": SWEEP_HEAD + "batch_size = 0\n" + SWEEP_GRID,
    "executor-unknown": SWEEP_HEAD + 'executor = "slurm"\n' + SWEEP_GRID,
    "probe-C-negative": SWEEP_HEAD + SWEEP_GRID + "[probe]\nC = -1\n",
    "probe-unknown-setting": SWEEP_HEAD + SWEEP_GRID + "[probe]\nbogus = 1\n",
    "name-with-slash": '[sweep]\nname = "../x"\nstore = "{tmp}/store"\n' + SWEEP_GRID,
    "suite-malformed": SWEEP_HEAD + '[grid]\nmodels = ["{model}"]\nsuites = ["mvrr", "{tmp}/bad-suite.json"]\n'
                       "seeds = [0, 1, 2]\n" + SWEEP_SMALL,
    "suite-missing": SWEEP_HEAD + '[grid]\nmodels = ["{model}"]\nsuites = ["{tmp}/missing-suite.json"]\n',
    "suite-unknown-name": SWEEP_HEAD + '[grid]\nmodels = ["{model}"]\nsuites = ["no-such-suite"]\n',
    "model-unknown": SWEEP_HEAD + '[grid]\nmodels = ["no-such-model"]\nsuites = ["mvrr"]\n',
    "store-is-file": '[sweep]\nname = "hostile"\nstore = "{out}"\n' + SWEEP_GRID,
    "command-unknown": SWEEP_HEAD + SWEEP_GRID + '[[command]]\nrun = "bogus"\n',
    "command-sets-out": SWEEP_HEAD + SWEEP_GRID + '[[command]]\nrun = "patch"\n[command.options]\nout = "{out}"\n',
    "command-option-unknown": SWEEP_HEAD + SWEEP_GRID + '[[command]]\nrun = "patch"\noptions = { bogus = 1 }\n',
    "command-value-bad": SWEEP_HEAD + SWEEP_GRID + '[[command]]\nrun = "patch"\noptions = { items = "many" }\n',
    "command-model-unknown": SWEEP_HEAD + '[[command]]\nrun = "surprisal"\nmodels = ["no-such-model"]\n'
                             'suites = ["mvrr"]\n',
}

# name -> command line of a command that runs the short-context model over MV/RR, whose item 24 is too long
TOO_LONG: dict[str, list[str]] = {
    "surprisal": ["surprisal", "--model", "{short}", "--suite", "mvrr", "--out", "{out}"],
    "effects": ["effects", "--model", "{short}", "--suite", "mvrr", "--out", "{out}"],
    "evaluate": ["evaluate", "--model", "{short}", "--suite", "mvrr", "--out", "{out}"],
    "cache": ["cache", "--model", "{short}", "--suite", "mvrr", "--out-dir", "{tmp}/cache", "--shard-size", "2",
              "--sites", "resid_post@0:region=verb/last"],
    "patch": ["patch", "--model", "{short}", "--suite", "mvrr", "--out", "{out}"],
    "readings": ["readings", "--model", "{short}", "--suite", "mvrr", "--out", "{out}"],
    "collapse": ["collapse", "--model", "{short}", "--suite", "mvrr", "--out", "{out}", "--naturalstories", "none"],
    "compare": ["compare", "--model", "{short}", "--suite", "mvrr", "--out", "{out}", "--linking", "{tmp}/link.json"],
    "probe-train": ["probe", "train", "--model", "{short}", "--suite", "mvrr", "--out-dir", "{tmp}/probe",
                    "--layers", "0"],
    "sae-features": ["sae", "features", "--model", "{short}", "--suite", "mvrr", "--sae", "{tmp}/no-sae",
                     "--out", "{out}"],
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
    "cache-shard-size-0": ["cache", "--model", "{model}", "--suite", "mvrr", "--out-dir", "{tmp}/cache", "--sites", "resid_post@0",
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
    "sweep-ray-missing": ["sweep", "{tmp}/sweeps/good.toml", "--executor", "ray"],
    "unknown-command": ["no-such-command"],
    "unknown-option": ["effects", "--suite", "mvrr", "--out", "{out}", "--bogus"],
}



# case -> modules that cannot be imported while it runs (the Ray executor without the Ray client)
BLOCKED_IMPORTS: dict[str, tuple[str, ...]] = {"option:sweep-ray-missing": ("ray",)}


def cli_cases() -> dict[str, list[str]]:
    """Every hostile case as ``kind:name`` -> its command line, with ``{model}``, ``{short}``, ``{out}`` and
    ``{tmp}`` to fill in (:func:`fill`) from :func:`make_sandbox`."""
    cases: dict[str, list[str]] = {}
    for name, (file, _) in BAD_SUITES.items():
        cases[f"suite:{name}"] = ["effects", "--suite", f"{{tmp}}/suites/{name}/{file}", "--out", "{out}"]
    for name, spec in BAD_SITE_SPECS.items():
        cases[f"site:{name}"] = ["cache", "--model", "{model}", "--suite", "mvrr", "--out-dir", "{tmp}/cache",
                                 "--sites", spec]
    for name, spec in BAD_INTERVENTION_SPECS.items():
        cases[f"intervention:{name}"] = ["collapse", "--model", "{model}", "--suite", "mvrr", "--out", "{out}",
                                         "--naturalstories", "none", "--intervention", spec]
    for name in BAD_SWEEPS:
        cases[f"sweep:{name}"] = ["sweep", f"{{tmp}}/sweeps/{name}.toml"]
    for name, argv in TOO_LONG.items():
        cases[f"context:{name}"] = argv
    for name, argv in BAD_OPTIONS.items():
        cases[f"option:{name}"] = argv
    return cases


def make_sandbox(tmp: Path, model: str | Path, short: str | Path) -> dict[str, str]:
    """Write under ``tmp`` every file the cases name (the sentinel ``out.csv``, the malformed suites and sweep
    files, directories named like files) and return the values of the placeholders."""
    tmp = Path(tmp)
    out = tmp / "out.csv"
    out.write_text(SENTINEL)
    values = {"{model}": str(model), "{short}": str(short), "{out}": str(out), "{tmp}": str(tmp)}
    for d in ("dir.csv", "dir.json", "dir.toml"):
        (tmp / d).mkdir(exist_ok=True)
    (tmp / "latin.toml").write_bytes("[sweep]\nname = 'caf\u00e9'\n".encode("latin-1"))
    (tmp / "latin.json").write_bytes('{"kind": "caf\u00e9"}'.encode("latin-1"))
    (tmp / "syntax.toml").write_text("[sweep\nname = \n")
    (tmp / "bad-suite.json").write_text(_item(conditions="abc"))
    for name, (file, data) in BAD_SUITES.items():
        folder = tmp / "suites" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / file).write_bytes(data)
        for suffix, side in SIDECARS.get(name, {}).items():
            (folder / (file + suffix)).write_bytes(side)
    (tmp / "sweeps").mkdir(exist_ok=True)
    for name, text in {**BAD_SWEEPS, "good": GOOD_SWEEP}.items():
        (tmp / "sweeps" / f"{name}.toml").write_text(fill([text], values)[0])
    return values


def fill(argv: list[str], values: dict[str, str]) -> list[str]:
    """``argv`` with the placeholders replaced by ``values``."""
    out = []
    for a in argv:
        for key, value in values.items():
            a = a.replace(key, value)
        out.append(a)
    return out


def violations(rc: int | None, err: str, out: Path) -> list[str]:
    """How a run of a hostile case broke the contract (empty: it kept it): a non-zero exit, exactly one line on
    stderr (progress bars of the model loader aside) saying ``error:``, no traceback, the sentinel ``out``
    unchanged, and no activation cache (``cache/``) or sweep store (``store/``) started beside it."""
    lines = [ln for ln in err.splitlines() if ln.strip() and not PROGRESS.search(ln)]
    problems = []
    if rc in (0, None):
        problems.append(f"exit status {rc}")
    if "Traceback" in err:
        problems.append("a traceback")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    elif "error:" not in lines[0]:
        problems.append("no 'error:' on stderr")
    if not out.is_file() or out.read_text() != SENTINEL:
        problems.append("--out changed")
    cache = out.parent / "cache"
    if cache.exists() and any(p.name == "manifest.json" for p in cache.rglob("*")):
        problems.append("a cache was written")
    if (out.parent / "store").exists():
        problems.append("a sweep store was started")
    return problems


@pytest.fixture(scope="session")
def short_ctx(tiny_dirs, tmp_path_factory) -> Path:
    """The tiny Llama, configured to read at most N_CTX tokens."""
    return short_context_dir(tiny_dirs["llama"], tmp_path_factory.mktemp("short-context"), N_CTX)


@pytest.fixture
def sandbox(tmp_path, tiny_dirs, short_ctx):
    values = make_sandbox(tmp_path, tiny_dirs["llama"], short_ctx)
    return tmp_path, Path(values["{out}"]), values


def run_main(argv: list[str], capsys) -> tuple[int | None, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) or exc.code is None else 1
    return rc, capsys.readouterr().err


def refused(argv: list[str], capsys, out: Path) -> str:
    """Run the CLI in-process and check the hardening contract; returns the one stderr line."""
    rc, err = run_main(argv, capsys)
    problems = violations(rc, err, out)
    assert not problems, f"{argv}: {', '.join(problems)}\n{err}"
    return next(ln for ln in err.splitlines() if ln.strip() and not PROGRESS.search(ln))


def _no_forward(*args, **kwargs):
    raise AssertionError("a forward pass ran before the suite was checked against the model's context length")


CASES = cli_cases()


def test_violations_names_each_breach_of_the_contract(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text(SENTINEL)
    assert violations(2, "mechinterp x: error: bad\n", out) == []
    assert violations(2, "Loading weights: 100%|##| 3/3 [00:00<00:00]\nmechinterp x: error: bad\n", out) == []
    assert violations(0, "mechinterp x: error: bad\n", out) == ["exit status 0"]
    assert "a traceback" in violations(1, "Traceback (most recent call last):\nValueError\n", out)
    assert violations(2, "warning: slow\nmechinterp x: error: bad\n", out) == ["2 lines on stderr"]
    assert violations(2, "something odd\n", out) == ["no 'error:' on stderr"]
    (tmp_path / "store").mkdir()
    (tmp_path / "cache" / "k").mkdir(parents=True)
    (tmp_path / "cache" / "k" / "manifest.json").write_text("{}")
    out.write_text("new result\n")
    assert violations(2, "mechinterp x: error: bad\n", out) == [
        "--out changed", "a cache was written", "a sweep store was started"]


@pytest.mark.slow
def test_script_runs_the_cases_through_the_command_line(tmp_path):
    """scripts/hostile_inputs.py runs the cases above as real processes and counts them (one case here)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "hostile_inputs.py"
    res = subprocess.run([sys.executable, str(script), "-k", "option:effects-rois-text"], capture_output=True,
                         text=True, timeout=600, env=_cli_env())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 tried, 1 passed (non-zero exit, one line on stderr" in res.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_is_one_line(case, sandbox, capsys, monkeypatch):
    tmp, out, values = sandbox
    for name in BLOCKED_IMPORTS.get(case, ()):
        monkeypatch.setitem(sys.modules, name, None)  # `import ray` raises ImportError
    if case.startswith("context:"):  # refused before the first batch: no forward pass at all
        from transformers import LlamaModel

        monkeypatch.setattr(LlamaModel, "forward", _no_forward)
    line = refused(fill(CASES[case], values), capsys, out)
    if case.startswith("context:"):
        assert f"context length of {N_CTX} tokens" in line and "item 24 condition 'unambiguous'" in line, line
    if case == "sweep:suite-malformed":  # once, up front, naming the suite file and its problem
        assert "bad-suite.json" in line and "conditions" in line and "no job was run" in line, line
    if case == "option:sweep-ray-missing":
        assert "Ray client" in line and "pip install" in line, line


def test_suite_that_fits_runs_on_the_short_model(sandbox, capsys):
    """The context check looks at the items a command runs: the first two MV/RR items fit the short model."""
    tmp, out, values = sandbox
    rc, err = run_main(fill(["patch", "--model", "{short}", "--suite", "mvrr", "--items", "2", "--out", "{tmp}/p.csv",
                             "--sweep", "resid_pre@0:region=verb/last"], values), capsys)
    assert rc == 0, err
    assert (tmp / "p.csv").exists()


def test_error_names_item_and_field_once(sandbox, capsys):
    tmp, out, _ = sandbox
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


def _cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}


def test_concurrent_cache_runs_verify_clean(tiny_dirs, tmp_path):
    """Two identical `mechinterp cache --verify` processes into the same directory at once: both succeed, both
    verify every shard's sha256, and the cache verifies afterwards."""
    args = [sys.executable, "-m", "mechinterp.cli", "cache", "--model", str(tiny_dirs["llama"]), "--suite", "mvrr",
            "--sites", "resid_post@0+1:region=verb/last", "--out-dir", str(tmp_path / "c"), "--shard-size", "4",
            "--verify"]
    procs = [subprocess.Popen(args, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_out, e) in zip(procs, results):
        assert p.returncode == 0, e
    (root,) = [p for p in (tmp_path / "c").iterdir() if p.is_dir()]
    cache = ActivationCache.open(root)
    cache.verify()
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


HOLD_LOCK = """import fcntl, os, sys
fh = open(sys.argv[1], "a+")
fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
fh.seek(0); fh.truncate(); fh.write(f"{os.getpid()}\\n"); fh.flush()
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes stdin
"""


def test_second_cache_run_waits_for_the_lock_and_says_who_holds_it(tiny_dirs, tmp_path, capsys):
    """While another process holds a cache's lock, `mechinterp cache` into the same cache prints one line naming
    the holder's pid and waits (it does not fail, and does not write); when the lock is released it reuses the
    cache and verifies it."""
    argv = ["cache", "--model", str(tiny_dirs["llama"]), "--suite", "mvrr", "--sites", "resid_post@0:region=verb/last",
            "--out-dir", str(tmp_path / "c")]
    assert main(argv) == 0
    capsys.readouterr()
    (root,) = [p for p in (tmp_path / "c").iterdir() if p.is_dir()]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(root / ".lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        second = subprocess.Popen([sys.executable, "-m", "mechinterp.cli", *argv, "--verify"], env=_cli_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(ln) for ln in second.stderr or []], daemon=True).start()
        line = ""
        while "waiting for the lock" not in line:
            line = lines.get(timeout=240)
        assert f"held by pid {holder.pid}" in line and str(root) in line, line
        assert second.poll() is None  # still waiting
    finally:
        holder.communicate(timeout=30)  # closing its stdin releases the lock
    out, _ = second.communicate(timeout=240)
    assert second.returncode == 0
    assert f"reused cache {root}" in out
    ActivationCache.open(root).verify()


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



def test_readers_refuse_a_table_its_provenance_does_not_describe(tiny_dirs, tmp_path, capsys):
    """The rule for reading result tables (mechinterp.tables.read_table): a table with no provenance is read as
    it is (made elsewhere); one whose provenance records another sha256, or cannot be read, is refused in one
    line that names both files and the fix."""
    import pandas as pd

    from mechinterp.errors import CacheError
    from mechinterp.provenance import Provenance, provenance_path
    from mechinterp.tables import provenance_problem, read_table, write_table

    words = tmp_path / "words.csv"
    write_table(pd.DataFrame({"intervention": ["original"], "item": [1]}), words, Provenance(command="collapse", config={}))
    assert provenance_problem(words) is None and len(read_table(words)) == 1
    words.write_text("intervention,item\noriginal,2\n")  # edited after it was written
    assert "does not describe" in (provenance_problem(words) or "")
    with pytest.raises(CacheError, match="delete words.csv.provenance.json"):
        read_table(words)
    out = tmp_path / "out.csv"
    out.write_text(SENTINEL)
    line = refused(["compare", "--model", str(tiny_dirs["llama"]), "--suite", "mvrr", "--out", str(out),
                    "--collapsed", str(words), "--linking", str(tmp_path / "link.json")], capsys, out)
    assert "words.csv.provenance.json does not describe" in line and str(words) in line
    provenance_path(words).write_bytes(b"\xff{")  # unreadable: refused too, its bytes never quoted
    with pytest.raises(CacheError, match="unreadable"):
        read_table(words)
    provenance_path(words).unlink()  # now a table made elsewhere: read as it is
    assert provenance_problem(words) is None and read_table(words)["item"].tolist() == [2]

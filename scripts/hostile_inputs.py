"""Run every hostile input the tests know through the ``mechinterp`` command line and count how many are refused
as they should be.

The cases are those of ``tests/test_hostile_inputs.py`` (``cli_cases()``): malformed SyntaxGym suites, SAP CSVs
and spreadsheets (with their sidecars), sweep TOML files, site specs, intervention specs, option values, and
suites longer than the model's context, each given to the command that reads it. Every case runs as its own
``python -m mechinterp.cli`` process in a fresh sandbox folder (the tiny random model of the tests, built once),
and passes when it keeps the contract the tests check in-process (``violations()``): a non-zero exit, one line
on stderr, no traceback, the sentinel ``--out`` file unchanged, and no activation cache or sweep store started.

Usage::

    python scripts/hostile_inputs.py                 # every case, two at a time
    python scripts/hostile_inputs.py -j 4 -k sweep:  # only the cases whose name contains "sweep:"
    python scripts/hostile_inputs.py --list          # the cases, without running them

Prints one line per case that broke the contract, the count per kind, and ``N tried, M passed (...)``; exits 1
if any case failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# the tests' catalogue of hostile inputs and their tiny models (tests/ is put on the path above)
import test_hostile_inputs as hostile  # noqa: E402  # pyright: ignore[reportMissingImports]
from conftest import short_context_dir, tiny_model_dir  # noqa: E402  # pyright: ignore[reportMissingImports]

CONTRACT = "non-zero exit, one line on stderr, no traceback, sentinel --out unchanged"
# run the CLI with some modules made unimportable (sys.modules[name] = None), as a missing package would be
BLOCKING_MAIN = ("import sys; sys.modules.update({n: None for n in sys.argv[1].split(',')}); "
                 "from mechinterp.cli import main; sys.exit(main(sys.argv[2:]))")


def run_case(name: str, argv: list[str], models: dict[str, Path], root: Path, timeout: int) -> list[str]:
    """Run one case in its own sandbox under ``root``; returns how it broke the contract (empty: it kept it)."""
    tmp = root / name.replace(":", "__")
    tmp.mkdir(parents=True)
    values = hostile.make_sandbox(tmp, models["llama"], models["short"])
    blocked = hostile.BLOCKED_IMPORTS.get(name, ())
    prefix = ["-c", BLOCKING_MAIN, ",".join(blocked)] if blocked else ["-m", "mechinterp.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MECHINTERP_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, *prefix, *hostile.fill(argv, values)], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [f"still running after {timeout} s"]
    problems = hostile.violations(proc.returncode, proc.stderr, Path(values["{out}"]))
    if problems:
        shown = " | ".join(ln for ln in proc.stderr.splitlines() if ln.strip())[-300:]
        problems.append(f"stderr: {shown!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-j", "--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("-k", dest="match", default="", help="only cases whose name contains this text")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per case (default 600)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    cases = {k: v for k, v in sorted(hostile.cli_cases().items()) if args.match in k}
    if args.list:
        for name, case in cases.items():
            print(f"{name}: mechinterp {' '.join(case)}")
        print(f"{len(cases)} cases")
        return 0
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mechinterp-hostile-") as work:
        root = Path(work)
        llama = tiny_model_dir(root / "models", "llama")
        models = {"llama": llama, "short": short_context_dir(llama, root / "models", hostile.N_CTX)}
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {name: pool.submit(run_case, name, argv_, models, root / "cases", args.timeout)
                       for name, argv_ in cases.items()}
            results = {name: f.result() for name, f in futures.items()}
    tried, passed = Counter(), Counter()
    for name, problems in results.items():
        kind = name.split(":")[0]
        tried[kind] += 1
        if problems:
            print(f"FAILED {name}: {'; '.join(problems)}")
        else:
            passed[kind] += 1
    print("by kind: " + ", ".join(f"{k} {passed[k]}/{tried[k]}" for k in sorted(tried)))
    n, m = sum(tried.values()), sum(passed.values())
    print(f"{n} tried, {m} passed ({CONTRACT}) in {time.time() - t0:.0f} s")
    return 0 if n == m else 1


if __name__ == "__main__":
    sys.exit(main())

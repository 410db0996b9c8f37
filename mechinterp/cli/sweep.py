"""`mechinterp sweep FILE.toml`: run a scripted sweep of probes and commands (resumable; local or Ray)."""

from __future__ import annotations

import argparse

from mechinterp.cli import common
from mechinterp.sweeps.runner import run_sweep


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run a sweep file (probes: models x suites x sites x settings x seeds; [[command]] "
                      "tables: any command that loads a model), resumably",
        description="Run the jobs of a sweep TOML file (see sweeps/*.toml) into a results store, skipping jobs "
                    "already finished. Safe to kill at any moment: run it again to resume.",
    )
    p.add_argument("file", help="sweep file (.toml)")
    p.add_argument("--store", default=None, help="results store directory (default: [sweep] store, or out/sweeps/NAME)")
    p.add_argument("--executor", choices=["local", "ray"], default=None, help="override [sweep] executor")
    p.add_argument("--ray-address", default=None, help="Ray cluster address ('auto', 'ray://HOST:10001'); default: a local instance")
    p.add_argument("--num-cpus", type=common.positive_int, default=None, help="CPUs for a local Ray instance")
    p.add_argument("--dry-run", action="store_true", help="list the jobs, whether they are done and each command job's command line; run nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = run_sweep(args.file, store=args.store, executor=args.executor, ray_address=args.ray_address,
                    num_cpus=args.num_cpus, dry_run=args.dry_run)
    if args.dry_run:
        print(f"{out.n_jobs} jobs, {out.skipped} done, {out.n_jobs - out.skipped} to run (store {out.store})")
        return 0
    print(f"sweep: {out.n_jobs} jobs: {out.skipped} already done, {len(out.ran)} run now, {len(out.failed)} failed")
    for jid, err in out.failed.items():
        print(f"  FAILED {jid}: {err}")
    if out.tables:
        print(f"tables in {out.store}: {', '.join(p.name for p in out.tables.values())}")
    if out.figures:
        print(f"figures: {', '.join(str(p) for p in out.figures)}")
    return 0 if out.ok else 1

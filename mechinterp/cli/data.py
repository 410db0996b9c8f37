"""`mechinterp data`: the human data shipped with the workbench, with licences and sizes."""

from __future__ import annotations

import argparse

from mechinterp.datasets import DATASETS, ENV_DATA, PACKAGE_DATA, data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list the shipped human data sets (licences, sizes, where they are)")
    p.add_argument("--files", action="store_true", help="also list every file of each data set")
    p.set_defaults(func=run)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def run(args: argparse.Namespace) -> int:
    root = data_dir()
    print(f"data folder: {root}" + (f" (from {ENV_DATA})" if root != PACKAGE_DATA else " (shipped with the package)"))
    for ds in DATASETS.values():
        if not ds.path.is_dir():
            print(f"\n{ds.name}: MISSING ({ds.path} does not exist)")
            continue
        files = ds.files()
        print(f"\n{ds.name}: {ds.title}")
        print(f"  licence:  {ds.license} (text in {ds.path / ds.license_file})")
        print(f"  cite:     {ds.citation}")
        print(f"  upstream: {ds.upstream}")
        print(f"  files:    {len(files)}, {_size(ds.size_bytes())}")
        if args.files:
            for f in files:
                print(f"    {f.relative_to(ds.path)}  {_size(f.stat().st_size)}")
    return 0

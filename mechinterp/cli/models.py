"""`mechinterp models`: list the registry (and convert/verify models)."""

from __future__ import annotations

import argparse

import pandas as pd

from mechinterp.errors import ConfigError
from mechinterp.models import REGISTRY, load_model
from mechinterp.models.registry import get_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the known models (parameters, layers, width, source)")
    p.add_argument("--rebuild", metavar="NAME", help="convert this registry model again from its GGUF")
    p.add_argument("--no-load", action="store_true", help="list the registry without loading (faster, fewer columns)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.rebuild:
        if get_spec(args.rebuild).source == "hf-dir":  # an unknown name is refused here too
            raise ConfigError(f"--rebuild {args.rebuild}: only registry models ({', '.join(sorted(REGISTRY))}) are "
                              "converted from a GGUF; a local Hugging Face directory is read as it is")
        m = load_model(args.rebuild, rebuild=True)
        print(f"rebuilt {m.name} in {m.path} (weights sha256 {m.weights_sha256[:16]})")
        return 0
    rows = []
    for name, spec in REGISTRY.items():
        row = {"name": name, "model": spec.display_name, "source": f"{spec.source}: {spec.package}", "license": spec.license}
        if not args.no_load:
            m = load_model(name)
            row.update({"params": f"{m.n_params / 1e6:.0f}M", "layers": m.n_layers, "d_model": m.d_model,
                        "heads": m.n_heads, "vocab": len(m.tokenizer), "weights_sha256": m.weights_sha256[:12],
                        "path": str(m.path)})
        rows.append(row)
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(pd.DataFrame(rows).to_string(index=False))
    print("\nAny local Hugging Face model directory also works: --model /path/to/dir")
    return 0

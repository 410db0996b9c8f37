"""`mechinterp cache`: stream activations at typed sites to sharded safetensors files plus a manifest."""

from __future__ import annotations

import argparse
import json

from mechinterp.cli import common
from mechinterp.locate.cache import CacheConfig, build_cache, parse_cache_sites
from mechinterp.progress import progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="cache activations at sites over a suite (sharded safetensors, resumable)")
    common.add_model(p)
    common.add_suite(p)
    p.add_argument("--sites", required=True,
                   help="site spec, e.g. 'resid_post@0-17:region=ambiguous/last,mlp_out@3:token=-1' "
                        "(region=* = every region; see mechinterp.locate.sites)")
    p.add_argument("--out", required=True, help="cache root directory; the cache goes in OUT/<content key>/")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--shard-size", type=int, default=64, help="sequences per shard (bounds memory; default 64)")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.add_argument("--conditions", help="comma-separated condition names (default: all)")
    p.add_argument("--verify", action="store_true", help="check every shard's sha256 after building or reusing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    suite = common.get_suite(args.suite)
    model = common.get_model(args)
    sites = parse_cache_sites(args.sites, model, suite)
    cfg = CacheConfig(shard_size=args.shard_size, batch_size=args.batch_size, dtype=args.dtype,
                      conditions=tuple(args.conditions.split(",")) if args.conditions else None, backend=args.backend)
    bar = progress(range(0), desc="shards", total=None)

    def tick(done: int, total: int) -> None:
        bar.total = total
        bar.update(1)

    cache, reused = build_cache(model, suite, sites, args.out, cfg, on_shard=tick)
    if args.verify:
        cache.verify()
    shapes = {str(s): list(cache.shape(s)) for s in cache.sites[:4]}
    print(f"{'reused' if reused else 'wrote'} cache {cache.root} ({len(cache.sites)} sites, "
          f"{len(cache.manifest['shards'])} shards); first shapes: {json.dumps(shapes)}")
    return 0

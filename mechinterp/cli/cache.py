"""`mechinterp cache`: stream activations at typed sites to sharded safetensors files plus a manifest."""

from __future__ import annotations

import argparse
import json

from mechinterp.cli import common
from mechinterp.cli.options import add_config_options, config_from_args
from mechinterp.locate.cache import CacheConfig, build_cache, parse_cache_sites
from mechinterp.progress import progress

CACHE_FIELDS = ["batch_size", "shard_size", "store_dtype", "conditions"]
CACHE_HELPS = {"batch_size": "sequences per forward pass", "shard_size": "sequences per shard (bounds memory)",
               "store_dtype": "stored precision (the model's own precision is --dtype)", "conditions": "comma-separated condition names (default: all)"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache", help="cache activations at sites over a suite (sharded safetensors, resumable)",
        description="Cache activations at typed sites over a suite into OUT_DIR/<content key>/ (sharded safetensors "
                    "and a manifest). Interrupted runs resume. Concurrent runs into the same cache are serialised "
                    "by a lock file: the second waits, printing 'waiting for the lock on DIR held by pid N', then "
                    "reuses (or resumes) what the first wrote, so both end with the same verified cache.",
    )
    common.add_model(p)
    common.add_suite(p)
    p.add_argument("--sites", required=True,
                   help="site spec, e.g. 'resid_post@0-17:region=ambiguous/last,mlp_out@3:token=-1' "
                        "(region=* = every region; see mechinterp.locate.sites)")
    common.add_out_dir(p, help_="cache root directory; the cache goes in OUT_DIR/<content key>/ (a second run into "
                                "the same cache waits for the first, see above)")
    add_config_options(p, CacheConfig, CACHE_FIELDS, helps=CACHE_HELPS)
    p.add_argument("--verify", action="store_true", help="check every shard's sha256 after building or reusing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    suite = common.get_suite(args.suite)
    model = common.get_model(args, [suite])
    sites = parse_cache_sites(args.sites, model, suite)
    cfg = config_from_args(CacheConfig, args, CACHE_FIELDS, backend=args.backend)
    bar = progress(range(0), desc="shards", total=None)

    def tick(done: int, total: int) -> None:
        bar.total = total
        bar.update(1)

    cache, reused = build_cache(model, suite, sites, args.out_dir, cfg, on_shard=tick)
    if args.verify:
        cache.verify()
    shapes = {str(s): list(cache.shape(s)) for s in cache.sites[:4]}
    print(f"{'reused' if reused else 'wrote'} cache {cache.root} ({len(cache.sites)} sites, "
          f"{len(cache.manifest['shards'])} shards); first shapes: {json.dumps(shapes)}")
    return 0

"""Batched activation patching against TransformerLens's ``generic_activation_patch`` on the same sweep.

Both patch clean (unambiguous) activations into the corrupt (ambiguous) run, one site at a time, at the same
sites (components x layers x region-last positions, plus every head), with the same aligned positions and
the same metric (surprisal of the disambiguating word, bits):

* ours: :func:`mechinterp.locate.patching.patch_suite` (``clean_to_corrupt``, exact only): many patched rows per
  forward pass, the unpatched prefix computed once, the sentence cut after the last token the metric reads,
  the LM head only where the metric needs it (identity patches at positions before the cue are run too,
  ``skip_identical=False``, so both sides do the same patches);
* baseline: ``transformer_lens.patching.generic_activation_patch`` on the TransformerLens bridge
  (``model.tl``, which has ``run_with_hooks``), one full forward pass with all logits per patch, hooks
  ``blocks.L.hook_resid_pre`` / ``hook_attn_out`` / ``hook_mlp_out`` and ``blocks.L.attn.hook_z`` (patching
  head h's z is patching its head_out), with a patch setter that maps each corrupt position to its aligned
  clean position.

The two must agree (max |difference| printed; the script fails if it exceeds ``--tol``).
Target: speedup >= 10x, on CPU and on CUDA (``--device cuda``; CUDA work is synchronised before each timer
is read).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from timing import sync

from mechinterp.locate.patching import PatchConfig, pair_context, parse_sweep, patch_suite
from mechinterp.models import load_model
from mechinterp.stimuli import load_suite

TL_ACT = {"resid_pre": "resid_pre", "attn_out": "attn_out", "mlp_out": "mlp_out", "head_out": "z"}


def tl_baseline(model, suite, items, sites, config) -> pd.DataFrame:
    from transformer_lens.patching import generic_activation_patch

    tl = model.tl
    rows = []
    for item in items:
        ctx = pair_context(model, suite, item, sites, config)
        spec = ctx.specs["corrupt"]
        corrupt = torch.tensor([ctx.pair.corrupt.input_ids], device=model.device)
        clean = torch.tensor([ctx.pair.clean.input_ids], device=model.device)
        _, clean_cache = tl.run_with_cache(clean)

        def metric(logits, spec=spec):
            return spec.from_logprobs(torch.log_softmax(logits[:, spec.reads].float(), -1))[0]

        def setter(act, index, clean_act):
            # index = [layer, corrupt position, clean position, head]
            _, pos, src, head = (int(i) for i in index)
            if head < 0:
                act[:, pos] = clean_act[:, src]
            else:
                act[:, pos, head] = clean_act[:, src, head]
            return act

        for comp, act_name in TL_ACT.items():
            planned = [p for p in ctx.planned if p.site.component == comp]
            if not planned:
                continue
            index_df = pd.DataFrame({
                "layer": [p.site.layer for p in planned],
                "pos": [p.corrupt_positions[0] for p in planned],
                "src": [p.clean_positions[0] for p in planned],
                "head": [-1 if p.site.head is None else p.site.head for p in planned],
            })
            out = generic_activation_patch(tl, corrupt, clean_cache, metric, setter, act_name, index_df=index_df)
            for p, v in zip(planned, out.tolist()):
                rows.append({"item": item.key, "layer": p.site.layer, "component": comp,
                             "head": -1 if p.site.head is None else p.site.head, "position": p.label, "tl": v})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--suite", default="npz")
    ap.add_argument("--items", type=int, default=2)
    ap.add_argument("--sweep", default=None, help="default: resid_pre|attn_out|mlp_out and heads at each region's last token")
    ap.add_argument("--rows-per-pass", type=int, default=64)
    ap.add_argument("--tol", type=float, default=1e-3, help="max |ours - TL| allowed (bits)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="torch device to run on, e.g. cuda (default: cpu)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    suite = load_suite(args.suite)
    items = list(suite.items[: args.items])
    sites = parse_sweep(args.sweep, model, suite)
    sites = [s for s in sites if s.component in TL_ACT and s.position.which == "last"]
    # skip_identical=False: run every patch, as the baseline does (no credit for skipping identity patches)
    cfg = PatchConfig(directions=("clean_to_corrupt",), rows_per_pass=args.rows_per_pass, skip_identical=False)
    _ = model.tl  # build the bridge before timing
    patch_suite(model, suite, sites[:4], cfg, items=items[:1])  # warm-up
    sync(args.device)

    t0 = time.perf_counter()
    ours = patch_suite(model, suite, sites, cfg, items=items)
    sync(args.device)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = tl_baseline(model, suite, items, sites, cfg)
    sync(args.device)
    t_tl = time.perf_counter() - t0

    ours = ours.assign(item=ours["item"].astype(str))
    j = ours.merge(base.assign(item=base["item"].astype(str)), on=["item", "layer", "component", "head", "position"])
    if len(j) != len(ours) or len(j) != len(base):
        raise SystemExit(f"row mismatch: ours {len(ours)}, TL {len(base)}, joined {len(j)}")
    diff = float(np.abs(j.raw - j.tl).max())
    n = len(j)
    print(f"model {args.model}; suite {args.suite}; {len(items)} items x {len(sites)} sites = {n} patches; "
          f"{torch.get_num_threads()} threads, device {args.device}")
    print(f"ours (batched, {args.rows_per_pass} rows/pass): {t_ours:.2f} s ({n / t_ours:.1f} patches/s)")
    print(f"TransformerLens generic_activation_patch (bridge): {t_tl:.2f} s ({n / t_tl:.1f} patches/s)")
    print(f"max |ours - TL| = {diff:.2e} bits over {n} patches (tolerance {args.tol})")
    if diff > args.tol:
        raise SystemExit(f"results differ by {diff} > {args.tol}")
    on = "" if args.device == "cpu" else f" device={args.device}"
    print(f"RESULT patch_speedup={t_tl / t_ours:.1f} target >=10{on}")


if __name__ == "__main__":
    main()

"""bfloat16 against float32 on the registry models: how far do the workbench's numbers move?

For each model, the same measurements in both dtypes on the CPU: per-word surprisal (every built-in suite and
the SAP ClassicGP items), garden-path effects per construction and ROI, activation-patching normalised
effects, and held-out probe accuracy (ambiguous vs unambiguous, grouped by item). Prints one table
(the tolerance users should expect; docs/precision.md) and writes it as CSV with ``--out``.

    python scripts/precision.py --models gemma3-270m,smollm2-135m --out precision.csv
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

import mechinterp as mi
from mechinterp.stimuli import builtin_suites


def measure(model_name: str, suites: list[str], patch_items: int, probe_items: int) -> list[dict]:
    m32 = mi.load_model(model_name, device="cpu", dtype="float32")
    m16 = mi.load_model(model_name, device="cpu", dtype="bfloat16")
    rows = []
    words, effects = [], []
    for name in suites:
        suite = mi.load_suite(name)
        w = [mi.suite_surprisal(m, suite, show_progress=False) for m in (m32, m16)]
        words.append((w[0]["surprisal_bits"] - w[1]["surprisal_bits"]).abs().dropna())
        e = [mi.garden_path_effects(x, suite).set_index(["construction", "roi"])["effect_bits"] for x in w]
        effects.append((e[0] - e[1]).abs())
    d = pd.concat(words)
    rows.append({"model": model_name, "measure": "word surprisal (bits)", "n": len(d), "max_abs_diff": d.max(),
                 "mean_abs_diff": d.mean()})
    d = pd.concat(effects)
    rows.append({"model": model_name, "measure": "garden-path effect per item and ROI (bits)", "n": len(d),
                 "max_abs_diff": d.max(), "mean_abs_diff": d.mean()})
    npz = mi.load_suite("npz").head(patch_items)
    sites = f"resid_post@every {max(1, m32.n_layers // 6)}:region=ambiguous/last"
    p = [mi.patch(m, npz, sites).set_index(["item", "direction", "layer"])["normalised"] for m in (m32, m16)]
    d = (p[0] - p[1]).abs().dropna()
    rows.append({"model": model_name, "measure": "patching normalised effect", "n": len(d), "max_abs_diff": d.max(),
                 "mean_abs_diff": d.mean()})
    site = mi.Site(m32.n_layers // 2, "resid_post")
    acc = []
    for m in (m32, m16):
        acts = mi.suite_activations(m, [mi.load_suite(s).head(probe_items) for s in ("npz", "mvrr")], [site])
        acc.append(mi.fit_probe(acts.x[site].float(), acts.labels, groups=acts.groups, site=site).metrics["cv_accuracy"])
    rows.append({"model": model_name, "measure": f"probe accuracy at {site} (fp32 {acc[0]:.3f}, bf16 {acc[1]:.3f})",
                 "n": 1, "max_abs_diff": abs(acc[0] - acc[1]), "mean_abs_diff": abs(acc[0] - acc[1])})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gemma3-270m,smollm2-135m")
    ap.add_argument("--suites", default=",".join([*builtin_suites(), "sap:ClassicGP"]))
    ap.add_argument("--patch-items", type=int, default=4)
    ap.add_argument("--probe-items", type=int, default=30)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    t0 = time.time()
    rows = []
    for name in args.models.split(","):
        rows += measure(name, args.suites.split(","), args.patch_items, args.probe_items)
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"({time.time() - t0:.0f} s; suites {args.suites})")


if __name__ == "__main__":
    main()

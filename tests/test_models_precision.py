"""bfloat16 against float32 on the registry models: the tolerance docs/precision.md tells users to expect."""

from __future__ import annotations

import pytest

import mechinterp as mi

# mean / max absolute difference in word surprisal (bits) on the built-in NP/Z suite, bfloat16 vs float32
# (docs/precision.md: measured 0.05 / 0.5 on Gemma-3-270M and 0.26 / 2.8 on SmolLM2-135M over all built-in suites
# and the SAP ClassicGP items)
TOLERANCE = {"gemma3-270m": (0.1, 1.0), "smollm2-135m": (0.4, 4.0)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_bfloat16_surprisal_and_effects_within_documented_tolerance(name):
    suite = mi.load_suite("npz")
    full = mi.load_model(name, device="cpu", dtype="float32")
    half = mi.load_model(name, device="cpu", dtype="bfloat16")
    assert half.dtype == mi.load_model(name, device="cpu", dtype="bfloat16").dtype
    w32 = mi.suite_surprisal(full, suite, show_progress=False)
    w16 = mi.suite_surprisal(half, suite, show_progress=False)
    assert w16["surprisal_bits"].dtype == w32["surprisal_bits"].dtype  # surprisal is float whatever the weights
    diff = (w32["surprisal_bits"] - w16["surprisal_bits"]).abs().dropna()
    mean_tol, max_tol = TOLERANCE[name]
    assert 0 < diff.mean() <= mean_tol and diff.max() <= max_tol, (diff.mean(), diff.max())
    # the garden-path effect at the disambiguator keeps its size to within the tolerance, item by item on average
    e32, e16 = (mi.garden_path_effects(w, suite).query("roi == 0").set_index("item")["effect_bits"] for w in (w32, w16))
    assert e16.mean() > 0 and abs(e16.mean() - e32.mean()) <= mean_tol

"""`mechinterp patch`: each option changes the table the way its help says."""

from __future__ import annotations

import pandas as pd
import pytest

from mechinterp.cli import main
from mechinterp.provenance import read_provenance

# many small forward passes of the tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEY = ["item", "layer", "component", "head", "position", "direction"]


def test_directions_methods_heads_and_rows_per_pass(tiny_dirs, tiny_suites, tmp_path):
    base = ["patch", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["npz2"]), "--items", "1"]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(base + ["--out", str(a), "--no-heads", "--direction", "clean_to_corrupt", "--method", "exact",
                        "--rows-per-pass", "1", "--seed", "7"]) == 0
    assert main(base + ["--out", str(b), "--direction", "clean_to_corrupt"]) == 0
    da, db = pd.read_csv(a), pd.read_csv(b)
    assert set(da["component"]) == {"resid_pre", "attn_out", "mlp_out"}  # --no-heads: the default sweep, no heads
    assert "head_out" in set(db["component"])
    assert set(da["method"]) == {"exact"} and set(db["method"]) == {"exact", "attribution"}
    assert set(da["direction"]) == set(db["direction"]) == {"clean_to_corrupt"}
    prov = read_provenance(a)
    assert prov["seed"] == 7 and prov["config"]["seed"] == 7
    assert prov["extra"]["patch_config"]["rows_per_pass"] == 1
    assert "attribution_vs_exact" not in prov["extra"] and "attribution_vs_exact" in read_provenance(b)["extra"]
    # one patched row per forward pass gives the numbers of 64 per pass
    exact_b = db[db["method"] == "exact"]
    merged = da.merge(exact_b, on=KEY, suffixes=("_a", "_b"))
    assert len(merged) == len(da) > 0
    assert float((merged["raw_a"] - merged["raw_b"]).abs().max()) < 1e-5


def test_metric_and_alternative(tiny_dirs, tiny_suites, tmp_path):
    base = ["patch", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["npz2"]),
            "--sweep", "resid_pre@1:region=np/last", "--method", "exact", "--items", "1"]
    runs = {"surprisal": [], "comma": ["--metric", "logprob_diff"], "period": ["--metric", "logprob_diff",
                                                                              "--alternative", "."]}
    tables = {}
    for name, extra in runs.items():
        assert main(base + ["--out", str(tmp_path / f"{name}.csv")] + extra) == 0
        tables[name] = pd.read_csv(tmp_path / f"{name}.csv").sort_values(KEY).reset_index(drop=True)
    assert set(tables["surprisal"]["metric"]) == {"surprisal"}
    assert set(tables["comma"]["metric"]) == set(tables["period"]["metric"]) == {"logprob_diff"}
    assert set(tables["comma"]["direction"]) == {"clean_to_corrupt", "corrupt_to_clean"}  # default: both
    # surprisal is positive bits; a log-probability difference against another continuation is not
    assert (tables["surprisal"]["clean_value"] > 0).all()
    assert not tables["comma"]["clean_value"].equals(tables["surprisal"]["clean_value"])
    # the alternative continuation ('.' instead of NP/Z's default ',') changes the metric's values
    assert (tables["comma"]["clean_value"] - tables["period"]["clean_value"]).abs().min() > 1e-4
    assert read_provenance(tmp_path / "period.csv")["extra"]["patch_config"]["alternative"] == "."
    assert read_provenance(tmp_path / "comma.csv")["extra"]["patch_config"]["metric"] == "logprob_diff"

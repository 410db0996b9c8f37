"""`mechinterp probe train` and `probe sentences`: the probe settings, components, backend, batch size and seed
reach the probes and the store."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mechinterp.cli import main
from mechinterp.probes import ProbeArtifact
from mechinterp.provenance import read_provenance

# many small forward passes of the tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _job(store) -> tuple[dict, dict[str, ProbeArtifact], pd.DataFrame]:
    """(job.json, probes by component, metrics) of the one job in a `probe train` store."""
    job = next(store.glob("jobs/*/job.json"))
    probes = {p.parent.name.split("-")[0]: ProbeArtifact.load(p.parent)
              for p in job.parent.glob("probes/*/*/probe.json")}
    return json.loads(job.read_text()), probes, pd.read_parquet(job.parent / "metrics.parquet")


def test_probe_train_options(tiny_dirs, tiny_suites, tmp_path):
    base = ["probe", "train", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["npz2"]), "--layers", "1",
            "--n-per-class", "10", "--folds", "2", "--random-directions", "0", "--no-transfer", "--seed", "4"]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main(base + ["--out-dir", str(a), "--components", "resid_post,mlp_out", "--which", "mean", "--C", "2.5",
                        "--no-control", "--batch-size", "3", "--backend", "nnsight"]) == 0
    assert main(base + ["--out-dir", str(b), "--which", "mean", "--C", "0.01"]) == 0
    assert main(base + ["--out-dir", str(c), "--C", "2.5"]) == 0
    (ja, pa, ma), (jb, pb, mb), (_, pc, _) = _job(a), _job(b), _job(c)
    # --components: one probe per component
    assert set(pa) == {"resid_post", "mlp_out"} and set(pb) == {"resid_post"}
    assert set(ma["component"]) == {"resid_post", "mlp_out"}
    # --no-control: no control task, so no selectivity
    assert not {"control_accuracy", "selectivity"} & set(ma["measure"])
    assert {"control_accuracy", "selectivity"} <= set(mb["measure"])
    # --C: a stronger L2 penalty (smaller C) gives a smaller probe on the same activations
    assert float(pa["resid_post"].coef.norm()) > 2 * float(pb["resid_post"].coef.norm())
    # --which: the mean over the target word's tokens is another training input than its last token
    assert pa["resid_post"].settings["which"] == "mean" and pc["resid_post"].settings["which"] == "last"
    assert float((pa["resid_post"].mean - pc["resid_post"].mean).abs().max()) > 1e-4
    # --backend, --batch-size and --seed reach the job
    assert ja["spec"]["backend"] == "nnsight" and ja["spec"]["batch_size"] == 3 and ja["spec"]["seed"] == 4
    assert jb["spec"]["backend"] == "hf" and jb["spec"]["batch_size"] == 32
    assert set(ma["seed"]) == {4} and ja["job_id"].split("__")[2] == "s4"


def test_probe_sentences_seed(tmp_path):
    base = ["probe", "sentences", "--construction", "NP/Z", "--n-per-class", "20"]
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(base + ["--seed", seed, "--out", str(tmp_path / f"{name}.csv")]) == 0
    a, b, c = (pd.read_csv(tmp_path / f"{n}.csv") for n in "abc")
    pd.testing.assert_frame_equal(a, b)
    assert list(a["text"]) != list(c["text"]) and len(c) == len(a) == 40
    assert read_provenance(tmp_path / "c.csv")["seed"] == 2

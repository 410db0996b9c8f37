"""`mechinterp fit` at scale: probe predictors from saved probe artifacts (--probes), Natural Stories in
overlapping context windows (--ns-window, --ns-context), and every SAP subset with published human effects."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import refused
from mechinterp.cli import main
from mechinterp.compare.predictors import probe_label
from mechinterp.explore.demo import first_items
from mechinterp.locate.sites import Site
from mechinterp.probes.artifact import ProbeArtifact
from mechinterp.provenance import read_provenance
from mechinterp.stimuli import load_suite, write_syntaxgym

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _probe(tmp_path, layer: int, name: str, d: int = 64) -> tuple[str, str]:
    g = torch.Generator().manual_seed(layer)
    p = ProbeArtifact(coef=torch.randn(d, generator=g), intercept=0.1, mean=torch.zeros(d), scale=torch.ones(d),
                      site=Site(layer, "resid_post"), construction="NP/Z", readings=("object", "subject"))
    return str(p.save(tmp_path / name)), probe_label(p)


def test_fit_with_probes_and_natural_stories_windows(tiny_dirs, tmp_path, capsys):
    (d0, lab0), (d1, lab1) = _probe(tmp_path, 0, "p0"), _probe(tmp_path, 1, "p1")
    suite = write_syntaxgym(first_items(load_suite("sap:ClassicGP"), 4, per_construction=True), tmp_path / "c12.json")
    out = tmp_path / "fit.csv"
    argv = ["fit", "--model", str(tiny_dirs["llama"]), "--suite", str(suite), "--out", str(out),
            "--predictors", "surprisal", "--probes", d0, d1, "--spillover", "0", "--folds", "2", "--n-boot", "20",
            "--naturalstories", "shipped", "--ns-words", "30", "--ns-window", "12", "--ns-context", "4",
            "--device", "cpu", "--dtype", "float32"]
    assert main(argv) == 0
    t = pd.read_csv(out)
    for dataset in ("naturalstories", "sap:" + load_suite(str(suite)).name):
        sets = set(t[t["dataset"] == dataset]["set"])
        assert {f"surprisal+probe_tv_{lab0}", f"surprisal+probe_tv_{lab1}", "surprisal+all"} <= sets, dataset
    prov = read_provenance(out)
    assert prov["extra"]["probes"] == {lab0: d0, lab1: d1}
    assert prov["config"]["ns_window"] == 12 and prov["config"]["ns_context"] == 4
    # naming one probe column: only that probe is used
    assert main([*argv[:7], "--out", str(tmp_path / "one.csv"), "--predictors", f"surprisal,probe_kl_bits_{lab1}",
                 "--probes", d0, d1, "--folds", "2", "--n-boot", "20", "--naturalstories", "none"]) == 0
    assert set(pd.read_csv(tmp_path / "one.csv")["set"]) == {"baseline", "surprisal", f"surprisal+probe_kl_bits_{lab1}"}
    base = argv[:7] + ["--naturalstories", "none"]
    assert "--probes" in refused(base + ["--predictors", "surprisal,probe_tv"], capsys)
    assert "--probes" in refused(base + ["--predictors", "surprisal,probe_tv_NPZ_resid_post_L9"], capsys)
    assert "labelled" in refused(base + ["--probes", d0, d0], capsys)
    assert "not a saved probe" in refused(base + ["--probes", str(tmp_path)], capsys)
    wide, _ = _probe(tmp_path, 0, "wide", d=32)
    assert "d_model" in refused(base + ["--probes", wide], capsys)
    assert "--ns-context" in refused(base + ["--ns-window", "10", "--ns-context", "10"], capsys)


@pytest.mark.parametrize("subset", ["RelativeClause", "AttachmentAmbiguity", "Agreement"])
def test_fit_runs_on_every_sap_subset(tiny_dirs, tmp_path, subset):
    """The long-layout SAP files are fitted against their by-item human effects (every item, ROI 0-2)."""
    out = tmp_path / "fit.csv"
    assert main(["fit", "--model", str(tiny_dirs["llama"]), "--suite", f"sap:{subset}", "--out", str(out),
                 "--predictors", "surprisal,entropy_change,reading_tv", "--spillover", "1", "--folds", "2",
                 "--n-boot", "20", "--naturalstories", "none", "--device", "cpu", "--dtype", "float32"]) == 0
    t = pd.read_csv(out)
    # reading_tv is NaN for constructions without continuation sets: that set is left out, the others fitted
    assert list(t["set"]) == ["baseline", "surprisal", "surprisal+entropy_change_bits"]
    n_items = {"RelativeClause": 24, "AttachmentAmbiguity": 24, "Agreement": 18}[subset]
    n_rows = {"RelativeClause": 72, "AttachmentAmbiguity": 144, "Agreement": 54}[subset]
    assert bool((t["n_items"] == n_items).all()) and bool((t["n"] == n_rows).all())
    assert read_provenance(out)["extra"]["human_subset"] == subset

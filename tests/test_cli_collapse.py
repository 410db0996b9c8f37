"""`mechinterp collapse` and `mechinterp compare`: the reading probabilities (exact, sampled or none), the
collapse factor, the construction order's ROI and the SAP subset change the tables as their help says."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import NATURAL_STORIES, refused
from mechinterp.cli import main
from mechinterp.compare.humans import load_natural_stories
from mechinterp.explore.demo import small_link
from mechinterp.provenance import read_provenance

# many small forward passes of the tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_collapse_readings_samples_and_factor(tiny_dirs, tiny_suites, tmp_path, capsys):
    base = ["collapse", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["npz2"]),
            "--naturalstories", "none"]
    out = tmp_path / "w.csv"
    assert main(base + ["--out", str(out), "--readings", "sampled", "--samples", "1", "--collapse-factor", "1",
                        "--seed", "3"]) == 0
    readings = pd.read_csv(tmp_path / "w.readings.csv")
    assert set(readings["method"]) == {"exact", "sampled"}
    assert bool((readings.loc[readings["method"] == "sampled", "n_samples"] == 1).all())  # default 10
    eff = pd.read_csv(tmp_path / "w.efficacy.csv")
    assert bool((eff["factor"] == 1.0).all())
    # a factor of 1 counts an unchanged P(dispreferred) (the original's ratio of exactly 1) as a collapse;
    # the default factor of 2 does not
    assert bool(eff["collapsed"].all()) and bool((eff["ratio"] == 1.0).all())
    assert read_provenance(out)["config"]["collapse_factor"] == 1.0

    none = tmp_path / "n.csv"
    assert main(base + ["--out", str(none), "--readings", "none"]) == 0
    assert none.exists() and not (tmp_path / "n.readings.csv").exists() and not (tmp_path / "n.efficacy.csv").exists()
    assert "--collapse-factor" in refused(base + ["--out", str(none), "--collapse-factor", "0"], capsys)
    assert "--samples" in refused(base + ["--out", str(none), "--samples", "0"], capsys)


def test_compare_order_roi_subset_and_readings(tiny_model, tiny_dirs, tiny_suites, tmp_path, capsys):
    # a link fitted on the first words of one story (fitting and saving it: tests/test_compare_likeness.py)
    link = tmp_path / "link.json"
    small_link(tiny_model, load_natural_stories(NATURAL_STORIES), [1], 40).save(link)
    base = ["compare", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["classic3"]),
            "--linking", str(link), "--naturalstories", "none", "--n-boot", "50"]
    a = tmp_path / "a.csv"
    assert main(base + ["--out", str(a), "--readings", "none", "--order-roi", "2", "--subset", "ClassicGP"]) == 0
    order = pd.read_csv(tmp_path / "a.order.csv")
    assert set(order["roi"]) == {0, 1, 2}
    assert list(order.loc[order["primary"], "roi"]) == [2]
    assert not (tmp_path / "a.efficacy.csv").exists()  # --readings none: no efficacy beside the table

    b = tmp_path / "b.csv"
    assert main(base + ["--out", str(b), "--readings", "exact", "--collapse-factor", "1"]) == 0
    eff = pd.read_csv(tmp_path / "b.efficacy.csv")  # the sampled estimator is checked on `collapse`, which shares it
    assert set(eff["method"]) == {"exact"} and set(eff["construction"]) == {"NP/S", "NP/Z", "MV/RR"}
    assert bool((eff["factor"] == 1.0).all()) and bool(eff["collapsed"].all())
    assert list(pd.read_csv(tmp_path / "b.order.csv").query("primary")["roi"]) == [1]  # the default order ROI

    # the human effects come from --subset: another SAP subset has none of these constructions
    line = refused(base + ["--out", str(b), "--subset", "RelativeClause", "--model", "not-loaded"], capsys)
    assert "(subset RelativeClause)" in line and "no effects for its constructions" in line and "NP/Z" in line
    assert "no subset 'Nope'" in refused(base + ["--out", str(b), "--subset", "Nope"], capsys)
    assert "--order-roi" in refused(base + ["--out", str(b), "--order-roi", "5"], capsys)
    assert "--samples" in refused(base + ["--out", str(b), "--samples", "0"], capsys)
    # with --collapsed tables the interventions are not run here: their options are refused, not ignored
    line = refused(base + ["--out", str(b), "--collapsed", str(a), "--readings", "sampled",
                           "--samples", "3", "--collapse-factor", "3"], capsys)
    assert "--readings, --samples, --collapse-factor" in line and "mechinterp collapse" in line

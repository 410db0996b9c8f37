"""`mechinterp ladder`: the memory ladder from the command line."""

from __future__ import annotations

import json

import pytest

from conftest import refused
from mechinterp.cli import main
from mechinterp.tables import read_table


def test_ladder_writes_a_table_with_provenance_and_a_report_with_both_models(tiny_dirs, tiny_suites, tmp_path, capsys):
    first, second = tmp_path / "a.parquet", tmp_path / "b.csv"
    base = ["ladder", "--model", str(tiny_dirs["llama"]), "--device", "cpu", "--dtype", "float32",
            "--suite", str(tiny_suites["classic3"]), "--naturalstories", "shipped", "--ns-words", "12",
            "--folds", "2", "--n-boot", "20", "--spillover", "1", "--batch-size", "8", "--seed", "1"]
    assert main([*base, "--out", str(first), "--truncate", "2,full", "--recency", "0.5"]) == 0
    table = read_table(first)
    assert table.drop_duplicates("step")["label"].tolist() == ["original", "truncate k=2", "truncate k=full",
                                                               "recency lam=0.5"]
    prov = json.loads(first.with_name(first.name + ".provenance.json").read_text())
    assert prov["command"] == "ladder" and prov["extra"]["steps"][1] == {"kind": "truncate", "param": 2.0}
    report = tmp_path / "ladder.html"
    capsys.readouterr()
    assert main([*base, "--model", str(tiny_dirs["gpt2"]), "--out", str(second), "--truncate", "",
                 "--keynoise", "1", "--keynoise-distance", "2", "--report", str(report), "--with", str(first)]) == 0
    out = capsys.readouterr().out
    assert "keynoise sigma=1 d>2" in out
    html = report.read_text()
    assert "tiny-gpt2" in html and "tiny-llama" in html  # both models on the figure
    assert "Memory ladder" in html and "truncate k=2" in html and "keynoise sigma=1 d&gt;2" in html


@pytest.mark.parametrize("extra, what", [
    (["--truncate", "2,x"], "not a number"),
    (["--recency", "-1"], "not a number"),
    (["--keynoise", "1,inf"], "not a number"),
    (["--truncate", "2.5"], "whole number"),
    (["--report", "ladder.txt"], ".html"),
    (["--folds", "11"], "between 2 and 10"),
    (["--ns-words", "0"], "positive"),
    (["--keynoise-distance", "-1"], "non-negative"),
    (["--with", "missing.parquet"], "no such table"),
])
def test_ladder_bad_input_is_one_line(extra, what, tiny_dirs, tiny_suites, tmp_path, capsys):
    line = refused(["ladder", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["classic3"]),
                    "--out", str(tmp_path / "t.csv"), *extra], capsys)
    assert what in line


def test_ladder_with_refuses_a_table_of_another_command(tiny_dirs, tiny_suites, tmp_path, capsys):
    import pandas as pd

    from mechinterp.provenance import Provenance
    from mechinterp.tables import write_table

    other = write_table(pd.DataFrame({"a": [1]}), tmp_path / "o.csv", Provenance(command="collapse", config={}))
    line = refused(["ladder", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["classic3"]),
                    "--out", str(tmp_path / "t.csv"), "--with", str(other)], capsys)
    assert "not a table written by `mechinterp ladder`" in line

"""The command line: outputs, provenance, and clear errors that never destroy earlier results."""

from __future__ import annotations

import json

import pandas as pd

from mechinterp.cli import main
from mechinterp.provenance import read_provenance


def test_surprisal_command(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "words.csv"
    assert main(["surprisal", "--model", str(tiny_dirs["llama"]), "--suite", "npz", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    for col in ["suite", "item", "condition", "region", "word_index", "word", "surprisal_bits", "entropy_bits"]:
        assert col in df.columns
    prov = read_provenance(out)
    assert prov["model"]["weights_sha256"] and prov["suite"]["sha256"] and prov["versions"]["torch"]
    assert prov["seed"] == 0 and prov["config"]["suite"] == "npz"


def test_effects_and_evaluate_commands(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "effects.parquet"
    items = tmp_path / "items.csv"
    assert main(["effects", "--model", str(tiny_dirs["llama"]), "--suite", "mvrr", "--out", str(out),
                 "--items-out", str(items), "--n-boot", "200"]) == 0
    s = pd.read_parquet(out)
    assert list(s.columns[:6]) == ["construction", "roi", "effect_bits", "ci_low", "ci_high", "n_items"]
    assert set(s["roi"]) == {0, 1, 2}
    assert len(pd.read_csv(items)) == 3 * s["n_items"].iloc[0]
    ev = tmp_path / "eval.csv"
    assert main(["evaluate", "--model", str(tiny_dirs["llama"]), "--suite", "mvrr", "--out", str(ev)]) == 0
    assert "accuracy:" in capsys.readouterr().out
    assert set(pd.read_csv(ev).columns) >= {"item", "prediction", "passed"}


def test_errors_are_clear_and_keep_old_results(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "words.csv"
    out.write_text("precious,results\n1,2\n")
    assert main(["surprisal", "--model", "no-such-model", "--suite", "npz", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'no-such-model'" in err and "gemma3-270m" in err
    assert main(["surprisal", "--model", str(tiny_dirs["llama"]), "--suite", "nosuite", "--out", str(out)]) == 2
    assert "unknown suite 'nosuite'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"meta": {"name": "x"}, "items": []}))
    assert main(["surprisal", "--model", str(tiny_dirs["llama"]), "--suite", str(bad), "--out", str(out)]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["surprisal", "--model", str(tiny_dirs["llama"]), "--suite", "npz", "--out", str(tmp_path / "x.txt")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err
    assert out.read_text() == "precious,results\n1,2\n"


def test_models_command_lists_registry(capsys):
    assert main(["models", "--no-load"]) == 0
    text = capsys.readouterr().out
    assert "gemma3-270m" in text and "smollm2-135m" in text

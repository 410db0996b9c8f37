"""The command line: outputs, provenance, and clear errors that never destroy earlier results."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from conftest import refused
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


@pytest.mark.usefixtures("one_torch_thread")
def test_surprisal_whitespace_trailing_moves_the_whitespace(tiny_dirs, tiny_suites, tmp_path):
    base = ["surprisal", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["npz2"])]
    assert main(base + ["--out", str(tmp_path / "lead.csv")]) == 0
    assert main(base + ["--out", str(tmp_path / "trail.csv"), "--whitespace", "trailing"]) == 0
    lead, trail = pd.read_csv(tmp_path / "lead.csv"), pd.read_csv(tmp_path / "trail.csv")
    assert list(lead["word"]) == list(trail["word"])
    # the correction moves the probability of a following word boundary between words: same words, other bits
    assert float((lead["surprisal_bits"] - trail["surprisal_bits"]).abs().max()) > 1e-3
    prov = read_provenance(tmp_path / "trail.csv")
    assert prov["extra"]["surprisal_config"]["whitespace"] == "trailing"
    assert read_provenance(tmp_path / "lead.csv")["extra"]["surprisal_config"]["whitespace"] == "leading"


@pytest.mark.usefixtures("one_torch_thread")
def test_effects_rois_choose_the_rows_and_are_range_checked(tiny_dirs, tiny_suites, tmp_path, capsys):
    argv = ["effects", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["npz2"]), "--n-boot", "50"]
    items = tmp_path / "items.csv"
    assert main(argv + ["--out", str(tmp_path / "e.csv"), "--rois", "0,2", "--items-out", str(items)]) == 0
    assert set(pd.read_csv(tmp_path / "e.csv")["roi"]) == {0, 2}
    assert set(pd.read_csv(items)["roi"]) == {0, 2}
    assert "--rois must be comma-separated whole numbers" in refused(argv + ["--out", str(tmp_path / "x.csv"),
                                                                              "--rois", "0,x"], capsys)
    line = refused(argv + ["--out", str(tmp_path / "x.csv"), "--rois", "40"], capsys)
    assert "40" in line and not (tmp_path / "x.csv").exists()


def test_models_rebuild_converts_that_registry_model_again(monkeypatch, tiny_dirs, capsys):
    import mechinterp.cli.models as models_cli

    calls = []

    def fake_load(name, **kw):
        calls.append((name, kw))
        return SimpleNamespace(name=name, path="/cache/models/x", weights_sha256="ab" * 32)

    monkeypatch.setattr(models_cli, "load_model", fake_load)
    assert main(["models", "--rebuild", "smollm2-135m"]) == 0
    assert calls == [("smollm2-135m", {"rebuild": True})]
    assert "rebuilt smollm2-135m" in capsys.readouterr().out
    monkeypatch.undo()
    assert "unknown model 'no-such-model'" in refused(["models", "--rebuild", "no-such-model"], capsys)
    # a local directory is read as it is: there is no GGUF to convert again
    assert "registry" in refused(["models", "--rebuild", str(tiny_dirs["llama"])], capsys)

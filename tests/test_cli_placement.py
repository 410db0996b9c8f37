"""--device and --dtype on every command that loads a model: each runs in bfloat16 on the CPU, loads its model
that way, and records it in its provenance; bad values are one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mechinterp.models.loaded as loaded
from conftest import NATURAL_STORIES
from mechinterp.cli import main
from mechinterp.errors import ConfigError
from mechinterp.models.placement import check_device, check_dtype, resolve


def _commands(model: str, tmp: Path) -> dict[str, list[str]]:
    """The smallest run of every command that loads a model (the command words, then its options), in bfloat16."""
    ns = ["--naturalstories", str(NATURAL_STORIES), "--link-stories", "1"]
    runs = {
        "surprisal": ["surprisal", "--model", model, "--suite", "npz", "--out", str(tmp / "s.csv")],
        "effects": ["effects", "--model", model, "--suite", "npz", "--out", str(tmp / "e.csv"), "--n-boot", "20"],
        "evaluate": ["evaluate", "--model", model, "--suite", "npz", "--out", str(tmp / "ev.csv")],
        "readings": ["readings", "--model", model, "--suite", "npz", "--out", str(tmp / "r.csv"), "--n-boot", "20"],
        "cache": ["cache", "--model", model, "--suite", "npz", "--sites", "resid_post@1:region=np/last",
                  "--out-dir", str(tmp / "cache")],
        "patch": ["patch", "--model", model, "--suite", "npz", "--items", "1", "--sweep", "resid_post@0:region=np/last",
                  "--out", str(tmp / "p.csv"), "--min-gap", "-1000"],
        "probe train": ["probe", "train", "--model", model, "--suite", "lexcat", "--layers", "1", "--n-per-class", "20",
                        "--folds", "3", "--random-directions", "1", "--no-transfer", "--out-dir", str(tmp / "probes")],
        "collapse": ["collapse", "--model", model, "--suite", "npz", "--out", str(tmp / "c.csv"),
                     "--intervention", "leace:layers=1", "--naturalstories", str(NATURAL_STORIES), "--ns-words", "10"],
        "compare": ["compare", "--model", model, "--suite", "npz", "--out", str(tmp / "cmp.csv"),
                    "--collapsed", str(tmp / "c.csv"), "--n-boot", "20", *ns],
        "dose": ["dose", "--model", model, "--suite", "npz", "--out", str(tmp / "d.csv"), "--budgets", "0.3",
                 "--intervention", "learned:method=steer,layers=1,heldout_stories=10,train_stories=1",
                 "--steps", "2", "--prefixes", "4", "--window", "12", "--n-fit", "12", "--train-words", "20",
                 "--heldout-words", "20", "--bisect", "1", "--max-scale", "1", "--n-boot", "20", "--ns-words", "10", *ns],
        "sae train": ["sae", "train", "--model", model, "--layer", "1", "--n-tokens", "512", "--n-holdout-tokens", "64",
                      "--width", "16", "--k", "4", "--steps", "3", "--batch-size", "64", "--sources", "templates",
                      "--n-ce-docs", "2", "--out-dir", str(tmp / "sae")],
        "sae features": ["sae", "features", "--model", model, "--suite", "npz", "--sae", str(tmp / "sae"),
                         "--permutations", "20", "--out", str(tmp / "f.csv")],
        "sae card": ["sae", "card", "--model", model, "--sae", str(tmp / "sae"), "--feature", "0", "--suite", "npz",
                     "--out", str(tmp / "card.csv"), "--report", str(tmp / "card.html")],
        "suite check": ["suite", "check", "npz", "--model", model, "--max-items", "1"],
        "fit": ["fit", "--model", model, "--suite", "sap:ClassicGP", "--out", str(tmp / "fit.csv"), "--predictors",
                "surprisal", "--folds", "2", "--n-boot", "20", "--naturalstories", "none"],
        "ladder": ["ladder", "--model", model, "--suite", "sap:ClassicGP", "--out", str(tmp / "ladder.csv"),
                   "--truncate", "2,full", "--recency", "0.5", "--keynoise", "1", "--ns-words", "10", "--folds", "2",
                   "--n-boot", "20"],
        "demo": ["demo", "--model", model, "--quick", "--items", "2", "--suite", "npz", "--probe-layers", "1",
                 "--ns-stories", "1", "--ns-words", "20", "--out-dir", str(tmp / "demo")],
        "explore": ["explore", "--dry-run", "--model", model, "--results", str(tmp)],
    }
    return {name: [*argv, "--device", "cpu", "--dtype", "bfloat16"] for name, argv in runs.items()}


def test_every_command_runs_in_bfloat16(tiny_dirs, tmp_path, monkeypatch, capsys):
    loads: list[tuple[str, torch.dtype]] = []
    real = loaded._load  # noqa: SLF001 - the one place a model is built: record each placement it is asked for

    def spy(name, placement, rebuild):
        loads.append((placement.device, placement.dtype))
        return real(name, placement, rebuild)

    monkeypatch.setattr(loaded, "_load", spy)
    loaded._load_cached.cache_clear()  # noqa: SLF001
    model = str(tiny_dirs["llama"])
    for name, argv in _commands(model, tmp_path).items():
        assert main(argv) == 0, name
        if name == "explore":
            out = capsys.readouterr().out
            assert "MECHINTERP_EXPLORER_DEVICE=cpu" in out and "MECHINTERP_EXPLORER_DTYPE=bfloat16" in out
    loaded._load_cached.cache_clear()  # noqa: SLF001
    assert loads and set(loads) == {("cpu", torch.bfloat16)}
    # every provenance record written says so, in its options and in the model's identity
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("*.provenance.json")]
    assert len(records) >= 10
    for r in records:
        if "dtype" in r["config"]:  # a command's own options (a store's tables record their jobs instead)
            assert r["config"]["dtype"] == "bfloat16" and r["config"]["device"] == "cpu"
        models = r["model"].get("models", [r["model"]]) if r.get("model") else []
        for m in (json.loads(m) if isinstance(m, str) else m for m in models):
            assert m["dtype"] == "bfloat16" and m["device"] == "cpu"
    assert sum("dtype" in r["config"] for r in records) >= 10


def test_bad_device_and_dtype_are_one_line(tiny_dirs, tmp_path, capsys):
    model = str(tiny_dirs["llama"])
    argv = ["surprisal", "--model", model, "--suite", "npz", "--out", str(tmp_path / "s.csv")]
    for bad in (["--device", "gpu"], ["--dtype", "float64"], ["--device", "cuda:x"]):
        with pytest.raises(SystemExit) as exc:
            main([*argv, *bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert bad[0] in err[-1] and "Traceback" not in "\n".join(err)
    if not torch.cuda.is_available():
        assert main([*argv, "--device", "cuda"]) == 2
        assert "no CUDA GPU is available" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_resolve():
    assert resolve("cpu", "bfloat16").dtype == torch.bfloat16
    assert resolve("auto").device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert check_dtype(torch.float16) == torch.float16 and check_device(" CUDA:1 ") == "cuda:1"
    for bad in ("tpu", "cuda:", "cuda:-1"):
        with pytest.raises(ConfigError, match="unknown device"):
            check_device(bad)
    with pytest.raises(ConfigError, match="unknown dtype"):
        check_dtype(torch.float64)

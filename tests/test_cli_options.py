"""Every option of every command is honoured: exercised by a test, with the same layer grammar everywhere,
tables always under --out and directories under --out-dir, and defaults taken from the config classes."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pandas as pd
import pytest

from mechinterp.cli import build_parser, main

TESTS = Path(__file__).parent


def commands() -> dict[str, dict[str, argparse.Action]]:
    """'sae train' -> {option string: action} for every leaf subcommand."""
    out: dict[str, dict[str, argparse.Action]] = {}

    def walk(p: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        for a in subs:
            for name, sp in a.choices.items():
                walk(sp, path + [name])
        if path and not subs:
            out[" ".join(path)] = {(a.option_strings[-1] if a.option_strings else a.dest): a for a in p._actions
                                   if not isinstance(a, argparse._HelpAction)}

    walk(build_parser(), [])
    return out


def _test_sources() -> list[str]:
    """The source of every test function of the suite."""
    out = []
    for f in TESTS.glob("test_*.py"):
        tree = ast.parse(f.read_text())
        src = f.read_text()
        out += [ast.get_source_segment(src, n) or "" for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    return out


def test_every_option_is_exercised_by_a_test():
    sources = _test_sources()
    gaps: dict[str, set[str]] = {}
    for cmd, opts in commands().items():
        words = cmd.split()
        users = [s for s in sources if all(f'"{w}"' in s for w in words)]
        for opt in opts:
            if opt.startswith("--") and not any(f'"{opt}"' in s for s in users):
                gaps.setdefault(cmd, set()).add(opt)
    assert not gaps, f"options no test passes (a test naming the command's words and the option): {gaps}"


def test_out_is_a_table_and_out_dir_a_directory():
    for cmd, opts in commands().items():
        if "--out" in opts:
            assert any(x in (opts["--out"].help or "") for x in (".csv", ".parquet")), cmd
        if "--out-dir" in opts:
            assert "director" in (opts["--out-dir"].help or ""), cmd


@pytest.mark.parametrize("cmd", ["surprisal", "effects", "evaluate", "collapse", "compare", "probe sentences",
                                 "patch", "sae features"])
def test_table_out_is_checked_before_any_work(cmd, tmp_path, capsys):
    argv = cmd.split() + ["--out", str(tmp_path / "x.txt"), "--model", "no-such-model", "--suite", "npz"]
    extra = {"sae features": ["--sae", str(tmp_path)], "probe sentences": ["--construction", "NP/Z"]}
    argv += extra.get(cmd, [])
    if cmd == "probe sentences":
        argv.remove("--model"), argv.remove("no-such-model")
    assert main(argv) == 2
    assert ".csv" in capsys.readouterr().err


def test_defaults_equal_the_config_defaults():
    from mechinterp.cli.options import config_fields
    from mechinterp.probes.train import ProbeSettings
    from mechinterp.saes.features import FeatureConfig
    from mechinterp.surprisal import SurprisalConfig
    from mechinterp.sweeps.jobs import JobSpec

    cmds = commands()
    checks = [
        ("sae features", {"--permutations": "n_permutations", "--alpha": "alpha", "--min-active": "min_active_items",
                          "--ablate-top": "ablate_top", "--batch-size": "batch_size", "--seed": "seed"}, FeatureConfig),
        ("probe train", {"--C": "C", "--n-per-class": "n_per_class", "--folds": "folds", "--which": "which",
                         "--random-directions": "random_directions"}, ProbeSettings),
        ("probe train", {"--batch-size": "batch_size"}, JobSpec),
    ] + [(c, {"--batch-size": "batch_size", "--backend": "backend"}, SurprisalConfig)
         for c in ("surprisal", "effects", "evaluate", "collapse", "compare")]
    for cmd, mapping, config in checks:
        fields = config_fields(config)
        for opt, field in mapping.items():
            assert cmds[cmd][opt].default == fields[field].default, (cmd, opt)
    assert cmds["sae features"]["--no-attribution"].default is (not FeatureConfig().attribution)
    assert cmds["probe train"]["--no-control"].default is (not ProbeSettings().control)


def test_backend_only_where_used():
    offered = {cmd for cmd, opts in commands().items() if "--backend" in opts}
    assert offered == {"cache", "collapse", "compare", "demo", "effects", "evaluate", "probe train", "readings", "surprisal"}


def test_surprisal_backend_and_batch_options(tiny_dirs, tmp_path):
    base = ["surprisal", "--model", str(tiny_dirs["llama"]), "--suite", "npz"]
    assert main(base + ["--out", str(tmp_path / "a.csv")]) == 0
    assert main(base + ["--out", str(tmp_path / "b.csv"), "--backend", "nnsight", "--batch-size", "1",
                        "--padding-side", "left"]) == 0
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert (a.surprisal_bits - b.surprisal_bits).abs().max() < 1e-4
    prov = json.loads((tmp_path / "b.csv.provenance.json").read_text())
    assert prov["config"]["backend"] == "nnsight" and prov["config"]["batch_size"] == 1
    assert prov["extra"]["surprisal_config"]["padding_side"] == "left"


# ---- the same layer grammar in every command ---------------------------------------------------------------
BAD_LAYERS = [("0/1", "not ',' or '/'"), ("-1", "negative layer"), ("9", "the model has 2 layers")]


@pytest.mark.parametrize("layers, message", BAD_LAYERS)
def test_layer_grammar_in_every_command(layers, message, tiny_dirs, tmp_path, capsys):
    m = str(tiny_dirs["llama"])
    runs = [
        ["cache", "--model", m, "--suite", "npz", "--sites", f"resid_post@{layers}", "--out-dir", str(tmp_path)],
        ["patch", "--model", m, "--suite", "npz", "--sweep", f"resid_pre@{layers}:region=np/last",
         "--out", str(tmp_path / "p.csv")],
        ["collapse", "--model", m, "--suite", "npz", "--intervention", f"leace:layers={layers},fit=npz",
         "--naturalstories", "none", "--out", str(tmp_path / "c.csv")],
        ["probe", "train", "--model", m, "--suite", "npz", "--layers", layers, "--out-dir", str(tmp_path / "pr")],
        ["sae", "train", "--model", m, "--layer", layers, "--sources", "templates", "--out-dir", str(tmp_path / "s")],
    ]
    if layers != "9":  # refused before the SAE or the model is loaded
        runs.append(["sae", "features", "--model", m, "--sae", str(tmp_path), "--layer", layers,
                     "--out", str(tmp_path / "f.csv")])
    for argv in runs:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_layer_grammar_in_sweep_files(tmp_path):
    from mechinterp.errors import ConfigError
    from mechinterp.sweeps.config import parse_sweep, resolve_layers

    base = '[sweep]\nname = "t"\n[grid]\nmodels = ["m"]\nsuites = ["npz"]\n[sites]\nlayers = {}\n'
    assert resolve_layers(parse_sweep(base.format('"0-1+3"'), "s.toml").sites.layers, 4) == [0, 1, 3]
    for bad, message in [('"0/1"', "not ',' or '/'"), ('"-1"', "negative"), ("[0, -1]", "negative")]:
        with pytest.raises(ConfigError, match=message):
            parse_sweep(base.format(bad), "s.toml")
    with pytest.raises(ConfigError, match="the model has 2 layers"):
        resolve_layers("9", 2)


def test_same_layers_accepted_everywhere(tiny_dirs, tmp_path):
    from mechinterp.interventions.spec import parse_spec
    from mechinterp.locate.sites import parse_sites

    for text, want in [("0+1", [0, 1]), ("0-1", [0, 1]), ("*", [0, 1]), ("every 1", [0, 1])]:
        assert [s.layer for s in parse_sites(f"resid_post@{text}", 2)] == want
        assert parse_spec(f"leace:layers={text}").parts[0].layer_numbers(2) == want
    m = str(tiny_dirs["llama"])
    assert main(["cache", "--model", m, "--suite", "npz", "--sites", "resid_post@0+1:region=np/last",
                 "--out-dir", str(tmp_path), "--batch-size", "2", "--store-dtype", "float16"]) == 0

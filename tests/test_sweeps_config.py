"""Sweep files: parsing, errors that name key and line, layer specs, job expansion and ids."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mechinterp.errors import ConfigError
from mechinterp.sweeps import expand, load_sweep, parse_sweep, resolve_layers
from mechinterp.sweeps.config import key_lines

GOOD = textwrap.dedent("""\
    [sweep]
    name = "demo"

    [grid]
    models = ["smollm2-135m", "gemma3-270m"]
    suites = ["npz", "nps"]
    seeds = [0, 1]

    [sites]
    layers = "every 3"
    components = ["resid_post", "mlp_out"]

    [probe]
    C = [0.1, 1.0]
    n_per_class = 100
    """)


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_sweep(text, "s.toml")
    return str(exc.value)


def test_good_file_expands_to_every_combination():
    cfg = parse_sweep(GOOD, "s.toml")
    jobs = expand(cfg)
    assert len(jobs) == 2 * 2 * 2 * 2
    assert {j.probe.C for j in jobs} == {0.1, 1.0}
    assert all(j.probe.n_per_class == 100 for j in jobs)
    assert len({j.job_id for j in jobs}) == len(jobs)


def test_job_ids_are_stable_and_follow_the_spec():
    a = expand(parse_sweep(GOOD, "s.toml"))
    b = expand(parse_sweep(GOOD.replace("batch_size", "x"), "s.toml"))
    assert [j.job_id for j in a] == [j.job_id for j in b]
    c = expand(parse_sweep(GOOD.replace("n_per_class = 100", "n_per_class = 120"), "s.toml"))
    assert not {j.job_id for j in a} & {j.job_id for j in c}
    d = expand(parse_sweep(GOOD.replace('name = "demo"', 'name = "demo"\nbatch_size = 4'), "s.toml"))
    assert [j.job_id for j in a] == [j.job_id for j in d]  # batch size never changes results
    e = expand(parse_sweep(GOOD.replace('name = "demo"', 'name = "demo"\ndevice = "cpu"\ndtype = "float32"'), "s.toml"))
    assert [j.job_id for j in a] == [j.job_id for j in e] and {j.device for j in e} == {"cpu"}
    f = expand(parse_sweep(GOOD.replace('name = "demo"', 'name = "demo"\ndtype = "bfloat16"'), "s.toml"))
    assert not {j.job_id for j in a} & {j.job_id for j in f} and {j.dtype for j in f} == {"bfloat16"}


def test_toml_syntax_error_names_line_and_key():
    bad = GOOD.replace("n_per_class = 100", "n_per_class = 100 200")
    msg = _err(bad)
    line = bad.splitlines().index("n_per_class = 100 200") + 1
    assert f"s.toml:{line}:" in msg and "n_per_class" in msg and "invalid TOML" in msg
    msg = _err(GOOD.replace('components = ["resid_post", "mlp_out"]', 'components = ["resid_post",'))
    assert "invalid TOML" in msg and "components" in msg


def test_validation_errors_name_key_and_line():
    lines = GOOD.splitlines()
    # a value out of range in [probe]
    msg = _err(GOOD.replace("n_per_class = 100", "n_per_class = 2"))
    assert f"s.toml:{lines.index('n_per_class = 100') + 1}: probe.n_per_class" in msg
    # an unknown key
    bad = GOOD.replace("C = [0.1, 1.0]", "C = [0.1, 1.0]\nfolds_typo = 3")
    msg = _err(bad)
    assert f"s.toml:{bad.splitlines().index('folds_typo = 3') + 1}: probe.folds_typo: unknown key" in msg
    # a wrong type inside a list
    bad = GOOD.replace("seeds = [0, 1]", 'seeds = [0, "one"]')
    msg = _err(bad)
    assert f"s.toml:{bad.splitlines().index('seeds = [0, ' + chr(34) + 'one' + chr(34) + ']') + 1}: grid.seeds[1]" in msg
    # a bad component and a bad layer spec
    msg = _err(GOOD.replace('"mlp_out"]', '"mlp_outt"]'))
    assert f"s.toml:{lines.index('components = [' + chr(34) + 'resid_post' + chr(34) + ', ' + chr(34) + 'mlp_out' + chr(34) + ']') + 1}: sites.components[1]" in msg
    msg = _err(GOOD.replace('"every 3"', '"sometimes"'))
    assert f"s.toml:{lines.index('layers = ' + chr(34) + 'every 3' + chr(34)) + 1}: sites.layers" in msg
    # a missing required key names its table
    msg = _err(GOOD.replace('models = ["smollm2-135m", "gemma3-270m"]\n', ""))
    assert "s.toml:4: grid.models: required key is missing" in msg
    # an unknown executor
    msg = _err(GOOD.replace('name = "demo"', 'name = "demo"\nexecutor = "spark"'))
    assert "s.toml:3: sweep.executor" in msg
    # a device or dtype outside the grammar
    msg = _err(GOOD.replace('name = "demo"', 'name = "demo"\ndevice = "gpu"'))
    assert "s.toml:3: sweep.device" in msg and "auto, cpu, cuda or cuda:N" in msg
    assert "s.toml:3: sweep.dtype" in _err(GOOD.replace('name = "demo"', 'name = "demo"\ndtype = "float64"'))
    # an empty list in [probe]
    msg = _err(GOOD.replace("C = [0.1, 1.0]", "C = []"))
    assert "probe.C: the list is empty" in msg


def test_key_lines_tracks_tables_and_multiline_arrays():
    text = '[a]\nx = [\n  1,\n  2,\n]\ny = 3\n[b.c]\nz = "q"\n'
    lines = key_lines(text)
    assert lines[("a", "x")] == 2 and lines[("a", "y")] == 6 and lines[("b", "c", "z")] == 8


def test_resolve_layers():
    assert resolve_layers("all", 4) == [0, 1, 2, 3]
    assert resolve_layers("every 3", 18) == [0, 3, 6, 9, 12, 15, 17]
    assert resolve_layers("2-4", 18) == [2, 3, 4]
    assert resolve_layers([5, 0], 18) == [0, 5]
    assert resolve_layers("0-3+8", 18) == [0, 1, 2, 3, 8]
    with pytest.raises(ConfigError, match="negative"):
        resolve_layers([0, -1, 5], 18)
    with pytest.raises(ConfigError, match="'\\+'"):
        resolve_layers("0,1", 18)
    with pytest.raises(ConfigError, match="out of range"):
        resolve_layers([18], 18)
    with pytest.raises(ConfigError, match="out of range"):
        resolve_layers("10-20", 18)


def test_checked_in_sweep_files_are_valid():
    root = Path(__file__).resolve().parents[1] / "sweeps"
    files = sorted(root.glob("*.toml"))
    assert files
    for f in files:
        assert expand(load_sweep(f))
    cfg = load_sweep(root / "readings.toml")
    assert cfg.grid is not None and cfg.grid.models and cfg.grid.suites
    assert set(cfg.grid.models) == {"gemma3-270m", "smollm2-135m"}
    assert set(cfg.grid.suites) == {"npz", "nps", "mvrr", "lexcat"}


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "nope.toml")

"""Commands in sweep files (``[[command]]``): parsing and error lines, job ids, a mixed sweep of probe and command
jobs run locally and on Ray (killed with SIGKILL and resumed), and a failing command job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from conftest import SMALL_PROBE_SWEEP
from mechinterp.errors import ConfigError
from mechinterp.sweeps import CommandJob, ResultsStore, expand, parse_sweep, run_sweep
from mechinterp.sweeps.config import key_lines
from mechinterp.sweeps.executors import gpus_per_job

# many small forward passes of the tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

FILE = textwrap.dedent("""\
    [sweep]
    name = "c"

    [grid]
    models = ["smollm2-135m"]
    suites = ["npz", "mvrr"]
    seeds = [0, 1]

    [[command]]
    run = "patch"
    suites = ["npz"]
    [command.options]
    sweep = "resid_post@*:region=np/last"
    items = 4

    [[command]]
    run = "sae train"
    options = { layer = 1, sources = "templates" }
    """)


def _err(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_sweep(text, "s.toml")
    return str(exc.value)


def _line(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), start=1) if needle in ln)


def test_commands_expand_over_their_own_or_the_grids_lists():
    cfg = parse_sweep(FILE, "s.toml")
    jobs = expand(cfg)
    assert all(isinstance(j, CommandJob) for j in jobs)  # no [probe] table and commands: no probe jobs
    patch = [j for j in jobs if isinstance(j, CommandJob) and j.run == "patch"]
    sae = [j for j in jobs if isinstance(j, CommandJob) and j.run == "sae train"]
    assert {(j.suite, j.seed) for j in patch} == {("npz", 0), ("npz", 1)}
    assert {(j.suite, j.seed) for j in sae} == {(None, 0), (None, 1)}  # sae train has no --suite
    assert patch[0].options == {"sweep": "resid_post@*:region=np/last", "items": 4}
    line = patch[0].command_line("D")
    assert "mechinterp patch --model smollm2-135m --suite npz --seed 0" in line and "--out D/patch.parquet" in line
    assert "--items 4" in line and "--out-dir" not in line
    assert "--out-dir D --layer 1 --sources templates" in sae[0].command_line("D")
    # an empty [probe] table asks for the probe jobs too
    with_probes = expand(parse_sweep(FILE.replace("[[command]]", "[probe]\n\n[[command]]", 1), "s.toml"))
    assert len(with_probes) == len(jobs) + 4
    # a command-only file needs no [grid] when its commands name their models
    alone = parse_sweep('[sweep]\nname = "x"\n[[command]]\nrun = "evaluate"\nmodels = ["m"]\nsuites = ["npz"]\n', "s")
    (job,) = expand(alone)
    assert job.seed is None and "--seed" not in job.command_line()  # evaluate has no --seed


def test_command_job_ids_are_stable_and_follow_the_options():
    ids = [j.job_id for j in expand(parse_sweep(FILE, "s.toml"))]
    assert ids == [j.job_id for j in expand(parse_sweep(FILE, "s.toml"))]
    assert len(set(ids)) == len(ids) and ids[0].startswith("patch__smollm2-135m__npz__s0__")
    assert any(i.startswith("sae-train__smollm2-135m__-__s0__") for i in ids)

    def patch_ids(text: str) -> set[str]:
        return {j.job_id for j in expand(parse_sweep(text, "s.toml")) if isinstance(j, CommandJob) and j.run == "patch"}

    a = patch_ids(FILE)
    assert not a & patch_ids(FILE.replace("items = 4", "items = 5"))
    assert not a & patch_ids(FILE.replace("items = 4", "items = 4\nno-heads = true"))
    assert not a & patch_ids(FILE.replace('name = "c"', 'name = "c"\ndtype = "bfloat16"'))
    # device, batch sizes, key spelling and key order never change a job
    assert a == patch_ids(FILE.replace('name = "c"', 'name = "c"\ndevice = "cpu"'))
    heads = patch_ids(FILE.replace("items = 4", "items = 4\nno-heads = true"))
    assert heads == patch_ids(FILE.replace("items = 4", "items = 4\nno_heads = true"))
    swapped = FILE.replace('sweep = "resid_post@*:region=np/last"\nitems = 4', 'items = 4\nsweep = "resid_post@*:region=np/last"')
    assert a == patch_ids(swapped)
    collapse = FILE.replace('run = "patch"', 'run = "collapse"').replace(
        'sweep = "resid_post@*:region=np/last"\nitems = 4', 'intervention = "leace:layers=1"')
    base = {j.job_id for j in expand(parse_sweep(collapse, "s.toml")) if j.job_id.startswith("collapse")}
    batch = {j.job_id for j in expand(parse_sweep(collapse.replace('layers=1"', 'layers=1"\nbatch-size = 2'), "s.toml"))
             if j.job_id.startswith("collapse")}
    assert base == batch and len(base) == 2


def test_command_errors_name_file_line_and_key():
    def at(bad: str, needle: str, key: str, words: str) -> None:
        msg = _err(bad)
        assert f"s.toml:{_line(bad, needle)}: {key}: " in msg and words in msg, msg

    at(FILE.replace("items = 4", "out = \"x.csv\""), "out = ", "command[0].options.out", "--out is set by the sweep")
    at(FILE.replace("items = 4", "seed = 3"), "seed = 3", "command[0].options.seed", "--seed is set by the sweep")
    at(FILE.replace("items = 4", "itemz = 4"), "itemz", "command[0].options.itemz", "unknown option --itemz of mechinterp patch")
    at(FILE.replace('run = "patch"', 'run = "pach"'), 'run = "pach"', "command[0].run", "unknown command 'pach'")
    at(FILE.replace('run = "patch"', 'run = "sweep"'), 'run = "sweep"', "command[0].run", "unknown command 'sweep'")
    # a bad value, as the command's own parser says it
    at(FILE.replace("items = 4", 'items = "four"'), "items = ", "command[0].options.items", "argument --items")
    at(FILE.replace("items = 4", "items = 4\nno-heads = 1"), "no-heads", "command[0].options.no-heads", "is a flag")
    at(FILE.replace("items = 4", "items = [4, 5]"), "items = [", "command[0].options.items", "not repeatable")
    at(FILE.replace("items = 4", 'report = "../r.html"'), "report", "command[0].options.report", "relative file name")
    bad = FILE.replace('run = "sae train"', 'run = "sae train"\nsuites = ["mvrr"]')
    at(bad, 'suites = ["mvrr"]', "command[1].suites", "mechinterp sae train has no --suite")
    at(FILE.replace("[[command]]", '[[command]]\nrun = "evaluate"\nseeds = [1]\n\n[[command]]', 1), "seeds = [1]",
       "command[0].seeds", "mechinterp evaluate has no --seed")
    # a required option missing: the parser's message, at the command's table
    bad = FILE.replace('options = { layer = 1, sources = "templates" }', 'options = { sources = "templates" }')
    msg = _err(bad)
    assert f"s.toml:{_line(bad, 'options = { sources')}: command[1].options: " in msg and "--layer" in msg
    # no models anywhere; no suite for a command that needs one
    bad = '[sweep]\nname = "x"\n[[command]]\nrun = "patch"\n'
    msg = _err(bad)
    assert "s.toml:3: command[0].models: no models" in msg and "s.toml:3: command[0].suites: mechinterp patch needs a suite" in msg
    # a file with neither [grid] nor [[command]]
    assert "grid: required key is missing" in _err('[sweep]\nname = "x"\n')


def test_key_lines_index_subtables_of_arrays_of_tables():
    lines = key_lines(FILE)
    assert lines[("command", 0, "options")] == _line(FILE, "[command.options]")
    assert lines[("command", 0, "options", "items")] == _line(FILE, "items = 4")
    assert lines[("command", 1, "run")] == _line(FILE, 'run = "sae train"')


def test_ray_gpus_per_job():
    assert gpus_per_job(None, "cpu") == 0.0 and gpus_per_job(0.5, "cpu") == 0.5
    import torch

    assert gpus_per_job(None, "auto") == (1.0 if torch.cuda.is_available() else 0.0)
    cfg = parse_sweep(FILE.replace('name = "c"', 'name = "c"\nray_gpus_per_job = 2'), "s.toml")
    assert cfg.sweep.ray_gpus_per_job == 2
    assert "sweep.ray_gpus_per_job" in _err(FILE.replace('name = "c"', 'name = "c"\nray_gpus_per_job = -1'))


# ---- running ---------------------------------------------------------------------------------------------
def _mixed_file(tmp_path: Path, model: Path, suite: Path, failing: bool = False) -> Path:
    bad = textwrap.dedent("""
        [[command]]
        run = "patch"
        [command.options]
        sweep = "resid_pre@9:region=np/last"
        """) if failing else ""
    probe_tables = textwrap.indent(SMALL_PROBE_SWEEP.strip(), " " * 8).lstrip()
    text = textwrap.dedent(f"""\
        [sweep]
        name = "mixed"
        store = "{tmp_path / 'store'}"
        figures = false
        device = "cpu"

        [grid]
        models = ["{model}"]
        suites = ["{suite}"]

        {probe_tables}

        [[command]]
        run = "patch"
        [command.options]
        sweep = "resid_post@*:region=np/last"
        items = 1
        report = "patch.html"
        min-gap = 0.0

        [[command]]
        run = "collapse"
        [command.options]
        intervention = "leace:layers=1,fit=npz"
        naturalstories = "none"
        """) + bad
    path = tmp_path / "mixed.toml"
    path.write_text(text)
    return path


def _check_mixed_store(root: Path, n_commands: int = 2) -> set[str]:
    """Every committed job is complete: probe jobs have their tables, command jobs every file they listed."""
    st = ResultsStore(root)
    done = st.done()
    for jid in done:
        info = st.job_info(jid)
        d = st.job_dir(jid)
        if info["kind"] == "command":
            assert info["files"] and sorted(str(p.relative_to(d)) for p in d.rglob("*")
                                            if p.is_file() and p.name != "job.json") == info["files"]
            table = d / f"{info['spec']['run']}.parquet"
            assert len(pd.read_parquet(table)) > 0 and (d / f"{table.name}.provenance.json").exists()
        else:
            assert info["kind"] == "probe"
            for t in info["tables"]:
                pd.read_parquet(d / f"{t}.parquet")
    return done


def test_mixed_sweep_runs_locally_and_a_failing_command_is_recorded(tiny_dirs, tiny_suites, tmp_path, capsys):
    from mechinterp.cli import main

    path = _mixed_file(tmp_path, tiny_dirs["llama"], tiny_suites["npz2"], failing=True)
    jobs = expand(parse_sweep(path.read_text(), path))
    assert len(jobs) == 4 and sum(isinstance(j, CommandJob) for j in jobs) == 3
    # the dry run lists the command jobs with their command lines
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("to do  patch__") == 2 and out.count("to do  collapse__") == 1
    assert "mechinterp collapse --model" in out and "--intervention leace:layers=1,fit=npz" in out

    out = run_sweep(path, show_progress=False)
    store = tmp_path / "store"
    # the failing job: one line, the command's own error; the others committed
    assert len(out.failed) == 1
    (bad_id,) = out.failed
    record = json.loads((store / "failed" / f"{bad_id}.json").read_text())
    assert record["error"].startswith("CommandFailed: mechinterp patch: error: ")
    assert "the model has 2 layers" in record["error"] and "\n" not in record["error"]
    done = _check_mixed_store(store)
    assert done == {j.job_id for j in jobs} - {bad_id} and not (store / "jobs" / bad_id).exists()

    # command jobs: their tables, side files and report, stdout kept in job.json
    patch_id = next(j for j in done if j.startswith("patch__"))
    collapse_id = next(j for j in done if j.startswith("collapse__"))
    files = ResultsStore(store).job_info(patch_id)["files"]
    assert {"patch.parquet", "patch.parquet.provenance.json", "patch.html"} <= set(files)
    collapse_files = ResultsStore(store).job_info(collapse_id)["files"]
    assert "collapse.parquet" in collapse_files and any("efficacy" in f for f in collapse_files), collapse_files
    patch = pd.read_parquet(store / "jobs" / patch_id / "patch.parquet")
    assert int(patch["item"].nunique()) == 1  # items = 1 reached the command (the suite has 2)
    prov = json.loads((store / "jobs" / patch_id / "patch.parquet.provenance.json").read_text())
    assert prov["seed"] == 0
    # the index of command jobs, and the probe tables over the probe job only
    index = pd.read_parquet(store / "commands.parquet")
    assert sorted(index.run) == ["collapse", "patch"] and set(index.job_id) == {patch_id, collapse_id}
    assert "patch.parquet" in list(index.set_index("job_id").files[patch_id])
    assert index.suite.tolist() == [str(tiny_suites["npz2"])] * 2 and index.seed.tolist() == [0, 0]
    probe_id = next(j for j in done if not j.startswith(("patch__", "collapse__")))
    assert set(pd.read_parquet(store / "metrics.parquet").job_id) == {probe_id}

    # a rerun skips what is done and retries only the failure
    stamps = {j: (store / "jobs" / j / "job.json").stat().st_mtime_ns for j in done}
    again = run_sweep(path, show_progress=False)
    assert again.skipped == 3 and again.ran == [] and list(again.failed) == [bad_id]
    assert {j: (store / "jobs" / j / "job.json").stat().st_mtime_ns for j in done} == stamps


@pytest.mark.slow
def test_mixed_sweep_on_ray_killed_with_sigkill_resumes_without_loss(tiny_dirs, tiny_suites, tmp_path):
    pytest.importorskip("ray")
    from test_sweeps_store import _wait_for

    path = _mixed_file(tmp_path, tiny_dirs["llama"], tiny_suites["npz2"])
    store = tmp_path / "store"
    ids = {j.job_id for j in expand(parse_sweep(path.read_text(), path))}
    assert len(ids) == 3
    env = {**os.environ, "MECHINTERP_NO_PROGRESS": "1"}
    argv = [sys.executable, "-m", "mechinterp.cli", "sweep", str(path), "--executor", "ray", "--num-cpus", "2"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        assert _wait_for(lambda: len(ResultsStore(store).done()) >= 1, proc), proc.stderr.read().decode()[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = _check_mixed_store(store)
    assert 1 <= len(first) < 3 and first <= ids
    stamps = {j: (store / "jobs" / j / "job.json").stat().st_mtime_ns for j in first}

    out = run_sweep(path, executor="ray", num_cpus=2, show_progress=False)
    assert out.ok, out.failed
    assert out.skipped == len(first) and sorted(out.ran) == sorted(ids - first)
    assert _check_mixed_store(store) == ids
    assert {j: (store / "jobs" / j / "job.json").stat().st_mtime_ns for j in first} == stamps
    assert list((store / ".tmp").iterdir()) == [] and list((store / "failed").iterdir()) == []
    assert sorted(pd.read_parquet(store / "commands.parquet").run) == ["collapse", "patch"]
    assert pd.read_parquet(store / "metrics.parquet").job_id.nunique() == 1

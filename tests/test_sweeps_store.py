"""The results store and the sweep runner: atomic commits, resume after SIGKILL, the Ray executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from mechinterp.probes import ProbeArtifact
from mechinterp.sweeps import ResultsStore, run_sweep
from mechinterp.sweeps.execute import JobResult
from mechinterp.sweeps.store import TABLES


def _fake_result(job_id: str = "job-a") -> JobResult:
    df = pd.DataFrame({"x": [1, 2], "job_id": job_id})
    return JobResult(job_id=job_id, spec={"seed": 0, "model": "m"}, tables={t: df for t in TABLES}, artifacts={},
                     model={"name": "m"}, suite={"name": "s"}, info={"seconds": 0.1})


def test_commit_is_all_or_nothing(tmp_path, monkeypatch):
    st = ResultsStore(tmp_path / "store")
    st.prepare()
    import mechinterp.sweeps.store as store_mod

    calls = {"n": 0}
    real = store_mod.write_table

    def failing(df, path, prov=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(df, path, prov)

    monkeypatch.setattr(store_mod, "write_table", failing)
    with pytest.raises(OSError):
        st.commit(_fake_result())
    assert st.done() == set() and list(st.jobs_dir.iterdir()) == [] and list(st.tmp_dir.iterdir()) == []
    monkeypatch.setattr(store_mod, "write_table", real)
    st.commit(_fake_result())
    assert st.done() == {"job-a"}
    assert len(st.table("metrics")) == 2


def test_prepare_removes_what_a_kill_left(tmp_path):
    st = ResultsStore(tmp_path / "store")
    st.prepare()
    (st.tmp_dir / "job-b.123").mkdir()
    (st.tmp_dir / "job-b.123" / "metrics.parquet").write_bytes(b"half")
    (st.jobs_dir / "junk").mkdir()  # no job.json: never a finished job
    removed = st.prepare()
    assert set(removed) == {"job-b.123", "junk"}
    assert st.done() == set()


def _sweep_file(tmp_path: Path, model_dir: Path, seeds: list[int], suites=("npz", "lexcat")) -> Path:
    text = textwrap.dedent(f"""\
        [sweep]
        name = "t"
        store = "{tmp_path / 'store'}"
        figures = false

        [grid]
        models = ["{model_dir}"]
        suites = {list(suites)!r}
        seeds = {seeds!r}

        [sites]
        layers = [1]

        [probe]
        n_per_class = 20
        folds = 3
        bootstrap = 100
        random_directions = 1
        transfer = false
        """).replace("'", '"')
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def _check_store_is_sound(root: Path) -> set[str]:
    st = ResultsStore(root)
    done = st.done()
    for jid in done:
        d = st.job_dir(jid)
        assert (d / "job.json").exists()
        for t in TABLES:
            pd.read_parquet(d / f"{t}.parquet")  # readable, complete
            assert (d / f"{t}.parquet.provenance.json").exists()
        for p in st.probe_dirs(jid):
            ProbeArtifact.load(p)
    return done


def _wait_for(pred, proc, timeout=600.0) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes_without_loss(tiny_dirs, tmp_path):
    path = _sweep_file(tmp_path, tiny_dirs["llama"], seeds=[0, 1])
    store = tmp_path / "store"
    exe = [sys.executable, "-m", "mechinterp.cli"]  # the checkout under test, not an installed script
    env = {**os.environ, "MECHINTERP_NO_PROGRESS": "1"}

    # 1) kill after the first job is committed, while the next one runs
    proc = subprocess.Popen([*exe, "sweep", str(path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert _wait_for(lambda: len(ResultsStore(store).done()) >= 1, proc), proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = _check_store_is_sound(store)
    assert 1 <= len(first) < 4
    stamps = {j: (store / "jobs" / j / "job.json").stat().st_mtime_ns for j in first}

    # 2) kill again the moment a job starts being written (mid-commit if we are quick enough)
    proc = subprocess.Popen([*exe, "sweep", str(path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tmp = store / ".tmp"
    _wait_for(lambda: tmp.exists() and any(tmp.iterdir()), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    second = _check_store_is_sound(store)
    assert first <= second

    # 3) resume to the end: nothing finished is redone, nothing is lost or duplicated
    out = run_sweep(path, show_progress=False)
    assert out.ok, out.failed
    assert out.skipped == len(second) and len(out.ran) == 4 - len(second)
    final = _check_store_is_sound(store)
    assert len(final) == 4
    assert {j: (store / "jobs" / j / "job.json").stat().st_mtime_ns for j in first} == stamps
    assert list((store / ".tmp").iterdir()) == []
    metrics = pd.read_parquet(store / "metrics.parquet")
    assert metrics.job_id.nunique() == 4
    assert not metrics.duplicated(["job_id", "construction", "layer", "component", "position", "measure",
                                   "target_construction"]).any()

    # a clean run of one of the jobs gives the same numbers as the interrupted-and-resumed store
    clean = tmp_path / "clean"
    run_sweep(path, store=clean, show_progress=False)
    a = pd.read_parquet(store / "metrics.parquet").sort_values(["job_id", "position", "measure"]).reset_index(drop=True)
    b = pd.read_parquet(clean / "metrics.parquet").sort_values(["job_id", "position", "measure"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_ray_executor_matches_local(tiny_dirs, tmp_path):
    pytest.importorskip("ray")
    path = _sweep_file(tmp_path, tiny_dirs["llama"], seeds=[0], suites=("npz", "mvrr"))
    out = run_sweep(path, store=tmp_path / "ray", executor="ray", num_cpus=2, show_progress=False)
    assert out.ok, out.failed
    assert len(out.ran) == 2
    local = run_sweep(path, store=tmp_path / "local", executor="local", show_progress=False)
    assert local.ok
    cols = ["job_id", "construction", "position", "measure"]
    a = pd.read_parquet(tmp_path / "ray" / "metrics.parquet").sort_values(cols).reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "local" / "metrics.parquet").sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # resuming on Ray skips everything
    again = run_sweep(path, store=tmp_path / "ray", executor="ray", num_cpus=2, show_progress=False)
    assert again.skipped == 2 and again.ran == []


def test_cli_reports_a_malformed_sweep_file(tmp_path, capsys):
    from mechinterp.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text('[sweep]\nname = "x"\n[grid]\nmodels = ["m"]\nsuites = ["npz"]\n[probe]\nC = -1\n')
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:7: probe.C" in err


def test_prepare_leaves_a_live_writer_alone(tmp_path):
    import subprocess as sp

    st = ResultsStore(tmp_path / "store")
    st.prepare()
    proc = sp.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (st.tmp_dir / f"job-c.{proc.pid}").mkdir()
        assert st.prepare() == [] and (st.tmp_dir / f"job-c.{proc.pid}").exists()
    finally:
        proc.kill()
        proc.wait()
    assert st.prepare() == [f"job-c.{proc.pid}"]

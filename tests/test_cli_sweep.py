"""`mechinterp sweep`: the store, the executor override, the Ray address and CPUs, and the dry run."""

from __future__ import annotations

import textwrap

import pytest

from conftest import SMALL_PROBE_SWEEP, refused
from mechinterp.cli import main
from mechinterp.sweeps import ResultsStore

# many small forward passes of the tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sweep_store_executor_ray_options_and_dry_run(tiny_dirs, tiny_suites, tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray")
    path = tmp_path / "t.toml"
    path.write_text(textwrap.dedent(f"""\
        [sweep]
        name = "t"
        store = "{tmp_path / 'file-store'}"
        executor = "ray"
        figures = false

        [grid]
        models = ["{tiny_dirs['llama']}"]
        suites = ["{tiny_suites['npz2']}"]
        """) + SMALL_PROBE_SWEEP)
    store = tmp_path / "store"
    # --dry-run lists the jobs and touches no store; --store replaces the file's store
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "to do" in out and f"1 jobs, 0 done, 1 to run (store {tmp_path / 'file-store'})" in out
    assert main(["sweep", str(path), "--dry-run", "--store", str(store)]) == 0
    assert f"(store {store})" in capsys.readouterr().out
    assert not (tmp_path / "file-store").exists() and not store.exists()

    # the file asks for Ray: where it would connect and with how many CPUs (no Ray is started here)
    inits = []

    def no_cluster(address=None, **kwargs):
        inits.append((address, kwargs.get("num_cpus")))
        raise ConnectionError("no cluster in the tests")

    monkeypatch.setattr(ray, "init", no_cluster)
    assert "cannot reach the Ray cluster at None" in refused(["sweep", str(path), "--store", str(store),
                                                              "--num-cpus", "3"], capsys)
    line = refused(["sweep", str(path), "--store", str(store), "--ray-address", "ray://head:10001",
                    "--num-cpus", "3"], capsys)
    assert "cannot reach the Ray cluster at 'ray://head:10001'" in line
    assert inits == [(None, 3), ("ray://head:10001", None)]  # --num-cpus sizes a local instance only

    # --executor local overrides the file: the job runs here, into --store
    assert main(["sweep", str(path), "--store", str(store), "--executor", "local"]) == 0
    assert len(inits) == 2 and len(ResultsStore(store).done()) == 1 and (store / "metrics.parquet").exists()
    capsys.readouterr()
    assert main(["sweep", str(path), "--dry-run", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "1 jobs, 1 done, 0 to run" in out and out.startswith("done ")
    assert not (tmp_path / "file-store").exists()

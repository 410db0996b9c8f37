"""`mechinterp cache` options not covered elsewhere: which conditions are cached."""

from __future__ import annotations

import pytest

from conftest import refused
from mechinterp.cli import main
from mechinterp.locate.cache import ActivationCache
from mechinterp.locate.sites import RegionPos, Site

# many small forward passes of the tiny models: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_conditions_limit_what_is_cached(tiny_dirs, tiny_suites, tmp_path, capsys):
    site = Site(1, "resid_post", RegionPos("np", "last"))
    base = ["cache", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["npz2"]),
            "--sites", "resid_post@1:region=np/last"]
    assert main(base + ["--out-dir", str(tmp_path / "all")]) == 0
    assert main(base + ["--out-dir", str(tmp_path / "amb"), "--conditions", "ambiguous"]) == 0
    every = ActivationCache.open(next((tmp_path / "all").iterdir()))
    amb = ActivationCache.open(next((tmp_path / "amb").iterdir()))
    assert set(every.rows(site)["condition"]) == {"ambiguous", "unambiguous"}
    assert set(amb.rows(site)["condition"]) == {"ambiguous"}
    assert amb.shape(site)[0] == every.shape(site)[0] // 2 == 2
    assert amb.key != every.key  # the conditions are part of the content key
    # the ambiguous rows are the same activations whichever conditions were cached with them
    rows = every.rows(site)
    assert (every.get(site)[rows.index[rows["condition"] == "ambiguous"]] - amb.get(site)).abs().max() < 1e-6
    line = refused(base + ["--out-dir", str(tmp_path / "x"), "--conditions", "nosuch"], capsys)
    assert "no condition named nosuch" in line

"""The shipped human data: present, licensed, listed, and the only data a bare clone reads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mechinterp.cli import main
from mechinterp.datasets import DATASETS, ENV_DATA, data_dir, dataset_dir, sap_stimuli, sap_subsets
from mechinterp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_every_dataset_ships_with_licence_and_readme():
    for ds in DATASETS.values():
        assert (ds.path / ds.license_file).is_file(), ds.name
        assert (ds.path / "README.md").is_file(), ds.name
        assert ds.size_bytes() > 100_000
    assert (dataset_dir("sap") / "trials" / "npz_agreement_trials.csv.gz").is_file()
    assert {"ClassicGP", "RelativeClause", "AttachmentAmbiguity", "Agreement"} <= set(sap_subsets())
    for sub in ("ClassicGP", "RelativeClause", "AttachmentAmbiguity", "Agreement"):
        for measure in ("spr", "logrt"):
            folder = dataset_dir("sap") / "effects" / measure / sub
            assert list(folder.glob("by_item*.csv")) and list(folder.glob("by_construction*.csv")), folder


def test_errors_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown data set 'x'"):
        dataset_dir("x")
    with pytest.raises(ConfigError, match="no stimulus subset 'Nope'"):
        sap_stimuli("Nope")
    monkeypatch.setenv(ENV_DATA, str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="is not a directory"):
        data_dir()
    monkeypatch.setenv(ENV_DATA, str(tmp_path))
    with pytest.raises(ConfigError, match="data set 'sap' is missing"):
        dataset_dir("sap")


def test_env_points_to_another_copy(tmp_path, monkeypatch):
    shutil.copytree(dataset_dir("naturalstories"), tmp_path / "naturalstories")
    monkeypatch.setenv(ENV_DATA, str(tmp_path))
    assert dataset_dir("naturalstories") == tmp_path / "naturalstories"


def test_data_command_lists_licences_and_sizes(capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "MIT" in out and "CC BY-NC-SA 4.0" in out and "MiB" in out
    assert "Huang" in out and "Futrell" in out
    assert "README.md" not in out  # the file list only with --files


def test_data_files_lists_every_file_of_each_data_set(capsys):
    assert main(["data", "--files"]) == 0
    out = capsys.readouterr().out
    for ds in DATASETS.values():
        files = ds.files()
        assert files, ds.name
        for f in files[:50]:
            assert f"    {f.relative_to(ds.path)}  " in out, f
    assert out.count("\n    ") == sum(len(ds.files()) for ds in DATASETS.values())


# Everything a run reads, traced with an audit hook: suites (built-in and every SAP subset), the human effect
# tables, trials, noise ceiling, Natural Stories, and the `data` and `suite`-loading CLI paths.
_WORKLOAD = r"""
import json, os, sys
opened = []
sys.addaudithook(lambda ev, args: opened.append(str(args[0])) if ev == "open" and isinstance(args[0], (str, bytes, os.PathLike)) else None)
import mechinterp
from mechinterp.cli import main
from mechinterp.datasets import sap_subsets
from mechinterp.compare.humans import load_natural_stories, load_sap_effects, load_sap_trials, noise_ceiling, published_effects
from mechinterp.stimuli import builtin_suites, load_suite
for name in builtin_suites():
    load_suite(name)
for sub in ("ClassicGP", "RelativeClause", "AttachmentAmbiguity", "Agreement"):
    load_suite("sap:" + sub)
    for measure in ("spr", "logrt"):
        load_sap_effects(None, sub, "item", measure=measure)
        load_sap_effects(None, sub, "construction", measure=measure)
load_sap_trials(); noise_ceiling(); published_effects(None, None); load_natural_stories()
assert main(["data"]) == 0
print("OPENED=" + json.dumps([os.path.abspath(p) for p in opened]))
print("PACKAGE=" + os.path.dirname(mechinterp.__file__))
"""


@pytest.mark.slow
def test_bare_clone_reads_only_its_own_files(tmp_path):
    """A clone with nothing beside it loads every shipped data set, and reads no file of the checkout it came
    from nor anything beside the clone (only the clone, the Python installation and system files)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to clone from")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # the working tree's uncommitted data and code would be missing from a clone of HEAD: copy the package over
    shutil.rmtree(clone / "mechinterp")
    shutil.copytree(ROOT / "mechinterp", clone / "mechinterp", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "tmp").mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(clone), "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
           "MECHINTERP_CACHE": str(tmp_path / "cache"), "MECHINTERP_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-c", _WORKLOAD], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split("=", 1) for line in proc.stdout.splitlines() if line.startswith(("OPENED=", "PACKAGE=")))
    assert Path(lines["PACKAGE"]).resolve() == (clone / "mechinterp").resolve()
    allowed = [clone.resolve(), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), tmp_path.resolve()]
    system = ("/usr/", "/etc/", "/proc/", "/dev/", "/sys/", "/lib")
    outside = []
    for p in json.loads(lines["OPENED"]):
        path = Path(p).resolve()
        if str(path).startswith(system) or any(path.is_relative_to(a) for a in allowed):
            continue
        outside.append(str(path))
    assert not outside, f"files read from outside the clone: {outside[:10]}"
    data_reads = [p for p in json.loads(lines["OPENED"]) if "mechinterp/data/" in p]
    assert data_reads and all(Path(p).resolve().is_relative_to(clone.resolve()) for p in data_reads)


def test_no_file_refers_to_data_outside_the_repository():
    """No tracked file names the folder beside the checkout or a path of one machine."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    sibling = ".." + "/shared"
    out = subprocess.run(["git", "grep", "-l", "-F", "-e", sibling, "-e", "/wor" + "k/", "--", ".", ":!mechinterp/data"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "", f"files naming paths outside the repository: {out.stdout.split()}"

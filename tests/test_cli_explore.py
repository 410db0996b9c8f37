"""`mechinterp explore`: what the command hands to Streamlit for each option (checked with --dry-run, or with the
launcher and the demo writer replaced), and what it refuses before starting anything."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

import mechinterp.cli.explore as explore_cli
from conftest import NATURAL_STORIES, refused
from mechinterp.cli import main
from mechinterp.datasets import naturalstories_dir


def _dry_run(argv: list[str], capsys) -> tuple[dict[str, str], list[str], str]:
    """(environment variables, streamlit argv, stderr) that ``argv`` (an ``explore --dry-run`` command) prints."""
    assert main(argv) == 0
    out, err = capsys.readouterr()
    words = shlex.split(out.strip().splitlines()[-1])
    env = dict(w.split("=", 1) for w in words if w.startswith("MECHINTERP_EXPLORER_"))
    return env, [w for w in words if not w.startswith("MECHINTERP_EXPLORER_")], err


def _option(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_address_port_headless_suite_and_allowed_paths(tmp_path, capsys):
    env, cmd, err = _dry_run(["explore", "--dry-run", "--model", "smollm2-135m", "--results", str(tmp_path)], capsys)
    assert _option(cmd, "--server.address") == "127.0.0.1" and _option(cmd, "--browser.serverAddress") == "127.0.0.1"
    assert _option(cmd, "--server.port") is None and _option(cmd, "--server.headless") is None
    assert env["MECHINTERP_EXPLORER_SUITE"] == "npz" and env["MECHINTERP_EXPLORER_ALLOW"] == ""
    assert "warning" not in err

    extra = tmp_path / "more"
    extra.mkdir()
    env, cmd, err = _dry_run(["explore", "--dry-run", "--model", "smollm2-135m", "--results", str(tmp_path),
                              "--address", "0.0.0.0", "--port", "8600", "--headless", "--suite", "mvrr",
                              "--allow-path", str(extra),
                              "--allow-path", str(tmp_path / "more" / ".." / "more")], capsys)
    assert _option(cmd, "--server.address") == "0.0.0.0"
    assert _option(cmd, "--browser.serverAddress") == "localhost"  # no lookup of this machine's address
    assert _option(cmd, "--server.port") == "8600" and _option(cmd, "--server.headless") == "true"
    assert env["MECHINTERP_EXPLORER_SUITE"] == "mvrr"
    assert env["MECHINTERP_EXPLORER_ALLOW"].split(os.pathsep) == [str(extra.resolve())] * 2
    assert "warning: serving on 0.0.0.0" in err and "no login" in err


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "--port 70000 is not a port number"),
    (["--port", "0"], "--port: must be a positive int"),
    (["--allow-path", "/no/such/folder"], "--allow-path /no/such/folder: not a directory"),
    (["--naturalstories", "none"], "used only with --demo"),
])
def test_bad_explore_options_are_refused(argv, message, capsys):
    assert message in refused(["explore", "--dry-run", "--model", "smollm2-135m", *argv], capsys)


def test_demo_and_naturalstories(tiny_dirs, tmp_path, capsys, monkeypatch):
    built, launched = [], []
    monkeypatch.setattr(explore_cli, "build_demo", lambda model, out, naturalstories: built.append(
        (model.name, out, naturalstories)))
    monkeypatch.setattr(explore_cli, "subprocess", SimpleNamespace(
        call=lambda cmd, env: launched.append((cmd, env)) or 0))
    model = str(tiny_dirs["llama"])
    demo = tmp_path / "demo"
    assert main(["explore", "--model", model, "--demo", str(demo), "--headless"]) == 0
    assert main(["explore", "--model", model, "--demo", str(demo), "--naturalstories", "none"]) == 0
    assert main(["explore", "--model", model, "--demo", str(demo), "--naturalstories", str(NATURAL_STORIES)]) == 0
    name = str(Path(model).resolve())
    assert built == [(name, str(demo), naturalstories_dir()), (name, str(demo), None),
                     (name, str(demo), str(NATURAL_STORIES))]
    # the explorer is shown the demo results, not --results
    assert [env["MECHINTERP_EXPLORER_RESULTS"] for _, env in launched] == [str(demo)] * 3
    assert _option(launched[0][0], "--server.headless") == "true" and "--server.headless" not in launched[1][0]
    # --dry-run --demo writes nothing and says so
    assert main(["explore", "--dry-run", "--model", model, "--demo", str(tmp_path / "other")]) == 0
    assert f"would write demo results for {model} into {tmp_path / 'other'}" in capsys.readouterr().out
    assert len(built) == 3

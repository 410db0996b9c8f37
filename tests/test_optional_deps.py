"""streamlit is an optional extra (`explorer`): the package and every command but `explore` work without it,
and `explore` says in one line how to install it. Runs in a subprocess where importing streamlit fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK = "import sys; sys.modules['streamlit'] = None; "  # `import streamlit` now raises ImportError


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_package_and_cli_import_without_streamlit():
    r = _run("import mechinterp, mechinterp.explore, mechinterp.cli; from mechinterp.cli import build_parser; "
             "build_parser(); print('ok')")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_explore_without_streamlit_says_how_to_install():
    r = _run("from mechinterp.cli import main; sys.exit(main(['explore']))")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "streamlit is not installed" in lines[0] and "explorer" in lines[0]

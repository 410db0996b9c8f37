"""The worked-analysis notebooks in notebooks/: stored without outputs, using only the public API, and executed
top to bottom with small settings (SmolLM2-135M, 3 items of one suite; ``MECHINTERP_NB_*`` variables) in a kernel running
this venv's Python. ``MECHINTERP_NB_EXECUTED=DIR`` keeps the executed copies (with outputs and cell timings)."""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SMALL = {
    "MECHINTERP_NB_MODEL": "smollm2-135m",
    "MECHINTERP_NB_ITEMS": "3",
    "MECHINTERP_NB_SUITES": "npz",
    "MECHINTERP_NB_LAYER_STEP": "6",
    "MECHINTERP_NB_BOOT": "200",
    "MECHINTERP_NB_SMALL": "1",
    "MECHINTERP_NO_PROGRESS": "1",
}
KERNEL = "mechinterp-venv"


def code_cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_three_notebooks_in_order():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 3
    assert [n[:3] for n in names[:3]] == ["01_", "02_", "03_"], names
    assert names[0] == "01_locate.ipynb" and names[1].startswith("02_expose") and names[2].startswith("03_collapse")
    assert "04_beyond_surprisal.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(code_cells(path)):
        assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: clear them before committing"
        assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_only_the_public_api(path):
    """Imports from mechinterp name no private module or name (nothing starting with an underscore)."""
    for cell in code_cells(path):
        src = "".join(cell["source"])
        tree = ast.parse("\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mechinterp"):
                assert not any(part.startswith("_") for part in node.module.split(".")), node.module
                assert not any(a.name.startswith("_") for a in node.names), [a.name for a in node.names]
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("mechinterp"):
                        assert not any(part.startswith("_") for part in a.name.split(".")), a.name
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                raise AssertionError(f"{path.name}: private attribute {node.attr!r}")


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    """A kernelspec that starts ipykernel with this venv's Python (whatever else is installed system-wide)."""
    d = tmp_path_factory.mktemp("jupyter")
    spec = d / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mechinterp (venv)", "language": "python"}))
    return d


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, kernel_dir, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    for k, v in SMALL.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MECHINTERP_NB_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=1200, resources={"metadata": {"path": str(ROOT)}})
    try:
        client.execute()  # raises CellExecutionError (with the cell and its traceback) if any cell fails
    finally:
        keep = os.environ.get("MECHINTERP_NB_EXECUTED")  # keep the executed copy (outputs, cell timings)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, Path(keep) / path.name)
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outs if o.get("output_type") == "error"]
    written = sorted(p.name for p in (tmp_path / "out").rglob("*.parquet"))
    assert written, "the notebook wrote no result table"
    for p in (tmp_path / "out").rglob("*.parquet"):
        assert p.with_name(p.name + ".provenance.json").exists(), f"{p} has no provenance"

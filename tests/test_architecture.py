"""The package's shape: every module imports on its own, module-level imports form no cycle, no module reaches
into another's private names, and the tree names no machine path and no Markdown file it does not hold."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mechinterp"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "data" not in p.relative_to(PACKAGE).parts}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(path: Path) -> list[tuple[ast.stmt, str, list[str]]]:
    """(statement, imported module, imported names) for the imports that run when the module is imported:
    the module body and its ``if``/``try`` blocks, not function or class bodies, not ``if TYPE_CHECKING``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[ast.stmt, str, list[str]]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                out.extend((node, a.name, []) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = package.split(".")
                    base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
                out.append((node, base, [a.name for a in node.names]))
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(path.read_text()).body)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (``from pkg import mod`` counts as ``pkg.mod``;
    importing ``a.b.c`` also runs ``a`` and ``a.b``, which count too, except the module's own enclosing
    packages: they are always initialised before it)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for _, target, names in module_level_imports(path):
            targets = [target] + [f"{target}.{n}" for n in names]
            for t in targets:
                parts = t.split(".")
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    if prefix in MODULES and prefix != mod and not mod.startswith(prefix + "."):
                        graph[mod].add(prefix)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_graph_helpers_find_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_module_level_imports_have_no_cycle():
    graph = import_graph()
    assert sum(map(len, graph.values())) > 50  # the graph was really built
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_private_name_imported_from_another_module():
    bad = []
    for mod, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mechinterp"):
                bad += [f"{mod}: from {node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


# Imports each module in a child forked from an interpreter that has loaded the heavy third-party libraries but
# no module of the package: every module starts from an empty package, as in a fresh interpreter, without
# paying for torch's start-up once per module.
_IMPORT_EACH = """
import importlib, os, sys, traceback
import numpy, pandas, scipy.stats, sklearn, torch, transformers  # noqa: F401  (shared, package-free)
assert not [m for m in sys.modules if m == "mechinterp" or m.startswith("mechinterp.")]
failed, running = [], {}
def reap():
    pid, status = os.wait()
    if status != 0:
        failed.append(running[pid])
    del running[pid]
for name in sys.argv[1:]:  # one fork per module, as many at once as there are cores
    if len(running) >= (os.cpu_count() or 1):
        reap()
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    running[pid] = name
while running:
    reap()
print("FAILED:" + ",".join(sorted(failed)))
"""


@pytest.mark.slow  # one fork per module: a few minutes
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_module_imports_alone():
    """Each module imports on its own (no reliance on another module having been imported first)."""
    modules = sorted(m for m in MODULES if not m.endswith(".__main__"))  # importing those runs the program
    proc = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *modules], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = proc.stdout.strip().rpartition("FAILED:")[2]
    assert not failed, f"modules that do not import alone: {failed}\n{proc.stderr[-3000:]}"


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    keep = {".py", ".md", ".toml", ".ipynb", ".sh", ".txt", ".cfg", ".yml", ".yaml", ""}
    return [ROOT / f for f in out.stdout.splitlines()
            if not f.startswith("mechinterp/data/") and Path(f).suffix in keep and (ROOT / f).is_file()]


# a home or scratch directory of some machine (home, Users, root, tmp, work, mnt, scratch at the root)
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:home|Users|root|tmp|work|mnt|scratch)/[\w.-]+")


def test_no_machine_paths():
    here = Path(__file__).resolve()
    bad = []
    for f in tracked_text_files():
        if f.resolve() == here:
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                bad.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not bad, "machine-specific paths:\n" + "\n".join(bad)


MD_REF = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")


def test_markdown_references_exist():
    """Every Markdown file named in code, docs or notebooks is a file of the tree (relative to the repository
    root, the referring file's folder, or ``docs/``)."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
    names = set(listed)
    bad = []
    for f in tracked_text_files():
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            for ref in MD_REF.findall(line):
                if ref.startswith(("http", "www.")):
                    continue
                here = f.parent.relative_to(ROOT).as_posix()
                candidates = {ref, f"{here}/{ref}".lstrip("./"), f"docs/{ref}"}
                candidates |= {(f.parent / ref).resolve().relative_to(ROOT).as_posix()
                               for _ in [0] if (f.parent / ref).resolve().is_relative_to(ROOT)}
                if not candidates & names:
                    bad.append(f"{f.relative_to(ROOT)}:{n}: {ref}")
    assert not bad, "references to Markdown files that are not in the tree:\n" + "\n".join(bad)


# heavy optional dependencies a function may import lazily (most uses of the module never need them)
LAZY_OK = {"sae_lens", "ray", "streamlit", "spacy", "transformer_lens", "nnsight"}


def test_function_local_imports_only_for_heavy_optional_dependencies():
    bad = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            tries = {id(n) for t in ast.walk(fn) if isinstance(t, ast.Try) for n in ast.walk(t)}
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in tries:  # try: availability checks
                    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                    if any(n.split(".")[0] not in LAZY_OK for n in names):
                        bad.append(f"{mod}:{node.lineno}: {ast.unparse(node)}")
    allowed = {"mechinterp.explore.ui"}  # Streamlit-cached wrappers that shadow the computed function's name
    bad = [b for b in bad if b.split(":")[0] not in allowed]
    assert not bad, "function-local imports (hoist them to module level):\n" + "\n".join(bad)

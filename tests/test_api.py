"""The public API (``import mechinterp as mi``): the README's quick start runs, names load lazily, and the
notebook entry points (patch_pair, callable metrics, fit_probe, Intervention.apply) agree with the pipeline."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import mechinterp as mi
from mechinterp.errors import ConfigError
from mechinterp.locate.patching import PatchConfig, patch_suite
from mechinterp.locate.sites import resolve_positions
from mechinterp.tokenization import tokenize_condition
from tests.conftest import assert_no_hooks

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def readme_quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"## Quick start \(Python\)\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no 'Quick start (Python)' code block"
    return m.group(1)


def test_readme_quick_start_is_short_and_shows_the_default_model():
    code = readme_quick_start()
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 12
    assert 'mi.load_model("gemma3-270m")' in code


def test_readme_quick_start_runs(tiny_dirs, tiny_model, monkeypatch):
    real = mi.load_model
    monkeypatch.setattr(mi, "load_model", lambda name=None, **kw: real(str(tiny_dirs["llama"]), **kw))
    ns: dict = {}
    exec(compile(readme_quick_start(), "README.md", "exec"), ns)
    assert isinstance(ns["effects"], pd.DataFrame) and len(ns["effects"])
    assert set(ns["patched"]["layer"]) == {0, 1}
    assert isinstance(ns["probe"], mi.ProbeArtifact)
    assert not ns["after"].equals(ns["effects"])
    assert_no_hooks(ns["model"])


def test_import_is_lazy_and_lists_its_names():
    code = "import sys, mechinterp as mi; print('torch' in sys.modules, sorted(mi.__all__) == sorted(dir(mi)) or 'x')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"
    assert set(mi.__all__) <= set(dir(mi))
    with pytest.raises(AttributeError):
        mi.no_such_name  # noqa: B018


# ---- docstrings of the public names --------------------------------------------------------------------------
SECTION = re.compile(r"^(Args|Returns|Raises|Example|Examples|Yields|Note|Notes):\s*$")


def _sections(doc: str) -> dict[str, str]:
    """A Google-style docstring's sections (``Args``, ``Returns``, ``Example`` ...) by name, each as its text."""
    out: dict[str, list[str]] = {}
    current = None
    for line in inspect.cleandoc(doc).splitlines():
        m = SECTION.match(line)
        if m:
            current = m.group(1)
            out[current] = []
        elif current is not None:
            if line and not line[0].isspace():
                current = None  # the section ended with a paragraph at the outer indent
            else:
                out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def example_code(doc: str) -> str:
    """The code of a docstring's ``Example:`` section (its ``>>>`` and ``...`` lines)."""
    lines = [ln.strip() for ln in _sections(doc).get("Example", "").splitlines()]
    return "\n".join(ln[4:] for ln in lines if ln.startswith((">>> ", "... ")) or ln in (">>>", "..."))


def _public_parameters(obj) -> list[str]:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [p for p in sig.parameters if not p.startswith("_") and p != "self"]


def _undefined_names(tree: ast.AST) -> set[str]:
    """Names an example reads but never defines (by assignment, import, ``def``, argument or loop)."""
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - defined


def _mi_attributes(tree: ast.AST) -> list[list[str]]:
    """Every ``mi.A.B...`` chain an example reads, as ``["A", "B", ...]``."""
    chains = []
    for node in ast.walk(tree):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.insert(0, node.attr)
            node = node.value
        if parts and isinstance(node, ast.Name) and node.id == "mi":
            chains.append(parts)
    return chains


def test_every_public_name_has_args_returns_and_an_example():
    """Google-style docstrings on every name of ``mi.__all__``: ``Args:`` where it takes arguments, ``Returns:``
    for functions, and an ``Example:`` that is a self-contained snippet using ``import mechinterp as mi`` (it
    parses, defines every name it uses, and every ``mi.`` name it reads exists)."""
    problems = []
    for name in mi.__all__:
        obj = getattr(mi, name)
        doc = obj.__doc__ or ""
        sections = _sections(doc)
        kind = "module" if inspect.ismodule(obj) else "class" if inspect.isclass(obj) else "function"
        if kind != "module" and _public_parameters(obj) and not sections.get("Args", "").strip():
            problems.append(f"{name}: no Args: section")
        if kind == "function" and not sections.get("Returns", "").strip():
            problems.append(f"{name}: no Returns: section")
        code = example_code(doc)
        if not code:
            problems.append(f"{name}: no Example: section with >>> lines")
            continue
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            problems.append(f"{name}: the example does not parse ({exc})")
            continue
        if "import mechinterp as mi" not in code:
            problems.append(f"{name}: the example does not start from `import mechinterp as mi`")
        if not any(chain[0] == name for chain in _mi_attributes(tree)):
            problems.append(f"{name}: the example does not use mi.{name}")
        if _undefined_names(tree):
            problems.append(f"{name}: the example uses undefined names {sorted(_undefined_names(tree))}")
        for chain in _mi_attributes(tree):
            value: object = mi
            for i, attr in enumerate(chain):
                value = getattr(value, attr, None)
                if value is None or (i == 0 and attr not in mi.__all__):
                    problems.append(f"{name}: the example reads mi.{'.'.join(chain[: i + 1])}, which does not exist")
                    break
                if not (inspect.ismodule(value) or inspect.isclass(value)):
                    break  # an attribute of a value (model.n_layers ...) is checked when the example runs
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_public_example_runs_on_the_default_model(gemma, tmp_path, monkeypatch):
    """Each public name's example, run as it is written (on Gemma-3-270M, in a scratch directory)."""
    monkeypatch.chdir(tmp_path)
    for name in mi.__all__:
        code = example_code(getattr(mi, name).__doc__)
        exec(compile(code, f"<example of mi.{name}>", "exec"), {})


# ---- patch_pair ------------------------------------------------------------------------------------------------
def _item_sentences(suite_model, suite, item):
    amb, unamb = suite.pair(item)
    dis = suite.ambiguity.disambiguating_region

    def upto(c):
        tt = tokenize_condition(suite_model, c)
        in_dis = [w for w, r in enumerate(tt.word_regions) if r == dis]
        return " ".join(c.text.split()[: in_dis[-1] + 1]), len(in_dis)

    (corrupt, n), (clean, _) = upto(amb), upto(unamb)
    return clean, corrupt, n


@pytest.mark.parametrize("metric", ["surprisal", "logprob_diff"])
def test_patch_pair_equals_the_suite_sweep(tiny_model, metric):
    suite = mi.load_suite("npz").head(1)
    item = suite.items[0]
    site = mi.Site(1, "resid_pre", mi.RegionPos("ambiguous", "last"))
    sweep = patch_suite(tiny_model, suite, [site], PatchConfig(metric=metric, skip_identical=False))
    clean, corrupt, n = _item_sentences(tiny_model, suite, item)
    tt = tokenize_condition(tiny_model, suite.pair(item)[0])
    (tok,) = resolve_positions(site.position, tt, suite)
    alt = "," if metric == "logprob_diff" else None
    got = mi.patch_pair(tiny_model, clean, corrupt, [mi.Site(1, "resid_pre", mi.TokenPos(tok))], metric=metric,
                        target_words=n, alternative=alt)
    for direction in ("clean_to_corrupt", "corrupt_to_clean"):
        a = sweep[sweep["direction"] == direction].iloc[0]
        b = got[got["direction"] == direction].iloc[0]
        for col in ("raw", "clean_value", "corrupt_value"):
            assert b[col] == pytest.approx(a[col], abs=1e-4), (direction, col)
    assert_no_hooks(tiny_model)


def test_patch_pair_takes_any_metric_callable(tiny_model):
    clean, corrupt = "While the man hunted, the deer ran", "While the man hunted the deer ran"
    sites = [mi.Site(L, "resid_pre", mi.TokenPos(-3)) for L in range(tiny_model.n_layers)]
    calls = []

    def my_metric(logprobs, spec):
        calls.append(tuple(logprobs.shape))
        return logprobs[:, 0, spec.target_ids[0]]

    got = mi.patch_pair(tiny_model, clean, corrupt, sites, metric=my_metric)
    assert list(got["metric"].unique()) == ["my_metric"] and len(got) == 2 * len(sites)
    assert calls and all(len(c) == 3 for c in calls)
    named = mi.patch_pair(tiny_model, clean, corrupt, sites, metric=mi.metrics.surprisal)
    ref = mi.patch_pair(tiny_model, clean, corrupt, sites, metric="surprisal")
    np.testing.assert_allclose(named["raw"], ref["raw"])
    assert list(named["metric"].unique()) == ["surprisal"]
    # the custom log-probability is -ln2 x surprisal for a one-token target
    if len(tiny_model.tokenizer(" ran", add_special_tokens=False)["input_ids"]) == 1:
        np.testing.assert_allclose(got["raw"], -np.log(2) * ref["raw"], rtol=1e-4)
    ld = mi.patch_pair(tiny_model, clean, corrupt, sites, metric=mi.metrics.logit_diff("ran", ","))
    assert ld["metric"].iloc[0] == "logit_diff('ran',',')" and np.isfinite(ld["raw"]).all()
    so = mi.patch(tiny_model, mi.load_suite("npz").head(1), "resid_pre@1:region=ambiguous/last",
                  metric=mi.metrics.surprisal_of(","))
    assert np.isfinite(so["raw"]).all()
    assert_no_hooks(tiny_model)


# ---- fit_probe -------------------------------------------------------------------------------------------------
def test_fit_probe_returns_an_artifact_that_saves_loads_and_predicts(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 16))
    y = np.array(["yes", "no"] * 40)
    X[y == "yes", 3] += 3.0
    groups = np.repeat(np.arange(20), 4)
    site = mi.Site(2, "resid_post", mi.RegionPos("ambiguous"))
    probe = mi.fit_probe(torch.tensor(X), y, groups=groups, site=site, positive="yes")
    assert isinstance(probe, mi.ProbeArtifact)
    assert probe.readings == ("yes", "no") and probe.metrics["cv_accuracy"] > 0.8
    p = probe.predict_proba(X).numpy()
    assert ((p > 0.5) == (y == "yes")).mean() > 0.9
    back = mi.ProbeArtifact.load(probe.save(tmp_path / "probe"))
    assert back.site == site
    torch.testing.assert_close(back.predict_proba(X), probe.predict_proba(X))
    with pytest.raises(ConfigError):
        mi.fit_probe(X, np.zeros(80))


# ---- Intervention.apply ----------------------------------------------------------------------------------------
def test_intervention_apply_removes_its_hooks_also_on_error(tiny_model):
    suite = mi.load_suite("npz").head(4)
    clamp = mi.fit_intervention(tiny_model, "clamp:layer=1,shift=1", suite)
    part = clamp.hooks[0]
    ids = torch.tensor([[tiny_model.bos_token_id, 100, 200, 300]])
    plain = tiny_model.hf(input_ids=ids).logits
    for iv in (clamp, part):
        with iv.apply(tiny_model):
            edited = tiny_model.hf(input_ids=ids).logits
        assert not torch.allclose(edited, plain)
        assert_no_hooks(tiny_model)
        with pytest.raises(RuntimeError, match="boom"):
            with iv.apply(tiny_model):
                raise RuntimeError("boom")
        assert_no_hooks(tiny_model)
    torch.testing.assert_close(tiny_model.hf(input_ids=ids).logits, plain)

"""The public SyntaxGym corpus (Hu et al. 2020): every suite loads, and our accuracies match an independent
scorer that follows SyntaxGym's rules and uses nothing of this package but the loaded model's weights.

The 34 suites ship in ``tests/data/syntaxgym/`` (gzipped upstream JSON from the ``test_suites/json/`` folder of
https://github.com/cpllab/syntactic-generalization, MIT licence; see its README). ``MECHINTERP_SYNTAXGYM_SUITES``
may point at another folder of ``.json``/``.json.gz`` suites. The slow test scores the first
``MECHINTERP_SYNTAXGYM_ITEMS`` items of every suite (default 3; ``all`` for every item) on the default model.

The independent scorer: a condition's sentence is its non-empty regions (whitespace normalised: stripped, inner
runs of spaces made one) joined by one space;
the sequence is BOS + the sentence's tokens; a token belongs to the region its last character lies in (the
space before a region counts as the region's); a region's surprisal is the sum of its tokens' surprisals in
bits (0 for an empty region); formulas are evaluated by Python after translating brackets and operators.
An item passes when all of its suite's predictions hold; a suite's accuracy is the fraction of items passing.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mechinterp.effects import evaluate_predictions
from mechinterp.stimuli import suite_from_dict
from mechinterp.surprisal import SurprisalConfig, region_surprisal, suite_surprisal

ENV = "MECHINTERP_SYNTAXGYM_SUITES"
N_SUITES = 34
SUITES_DIR = Path(os.environ.get(ENV) or Path(__file__).parent / "data" / "syntaxgym")
ITEMS = os.environ.get("MECHINTERP_SYNTAXGYM_ITEMS", "3")


def corpus() -> dict[str, dict]:
    """The raw JSON of every suite in the corpus folder (``.json`` or gzipped ``.json.gz``), by suite name."""
    out = {}
    for f in sorted(SUITES_DIR.glob("*.json*")):
        if f.name.endswith(".json"):
            out[f.name[: -len(".json")]] = json.loads(f.read_text())
        elif f.name.endswith(".json.gz"):
            out[f.name[: -len(".json.gz")]] = json.loads(gzip.decompress(f.read_bytes()))
    return out


def first_items(data: dict, n: int) -> dict:
    return {**data, "items": data["items"][:n]}


# --- the independent scorer -------------------------------------------------------------------------------


class _Tol(float):
    """A float whose ``==`` is SyntaxGym's equality (numpy.isclose, rtol 1e-5, atol 1e-3)."""

    def __eq__(self, other):  # type: ignore[override]
        return bool(np.isclose(float(self), float(other), rtol=1e-5, atol=1e-3))

    __hash__ = float.__hash__

    def __add__(self, other):  # type: ignore[override]
        return _Tol(float(self) + float(other))

    def __sub__(self, other):  # type: ignore[override]
        return _Tol(float(self) - float(other))


def formula_to_python(formula: str) -> str:
    """Translate a SyntaxGym formula into a Python expression over ``V[(condition, region)]``."""
    expr = formula.replace("[", "(").replace("]", ")").replace("&", " and ").replace("|", " or ")
    expr = re.sub(r"(?<![<>=!])=(?!=)", "==", expr)
    return re.sub(r"\(\s*(\d+|\*)\s*;\s*%([\w-]+)%\s*\)", lambda m: f" V[({m.group(2)!r}, {m.group(1)!r})] ", expr)


def sentence_and_ranges(regions: list[dict]) -> tuple[str, dict[int, tuple[int, int]]]:
    """SyntaxGym's sentence and each region's character range (the joining space belongs to the region)."""
    text, ranges = "", {}
    for r in regions:
        content = " ".join(r["content"].split())
        if not r["content"].strip():
            ranges[int(r["region_number"])] = (len(text), len(text))
            continue
        start = len(text)
        text = f"{text} {content}" if text else content
        ranges[int(r["region_number"])] = (start, len(text))
    return text, ranges


@torch.no_grad()
def independent_region_surprisals(hf, tokenizer, bos_id: int, data: dict, batch_size: int = 16) -> dict:
    """{(item_number, condition, region): bits} with plain ``transformers``."""
    jobs = []
    for it in data["items"]:
        for c in it["conditions"]:
            text, ranges = sentence_and_ranges(c["regions"])
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            owner = []
            for _a, b in enc["offset_mapping"]:
                last = b - 1
                owner.append(next(n for n, (s, e) in ranges.items() if s <= last < e))
            jobs.append((it["item_number"], c["condition_name"], [bos_id, *enc["input_ids"]], owner, ranges))
    out: dict = {}
    order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][2]))
    for k in range(0, len(order), batch_size):
        batch = [jobs[j] for j in order[k : k + batch_size]]
        width = max(len(b[2]) for b in batch)
        ids = torch.tensor([b[2] + [bos_id] * (width - len(b[2])) for b in batch])
        mask = torch.tensor([[1] * len(b[2]) + [0] * (width - len(b[2])) for b in batch])
        logits = hf(input_ids=ids, attention_mask=mask).logits.float()
        logp = logits[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(logits[:, :-1], -1)
        for row, (item, cond, seq, owner, ranges) in enumerate(batch):
            bits = (-logp[row, : len(seq) - 1] / math.log(2)).tolist()
            for region in ranges:
                out[(item, cond, region)] = sum(s for s, o in zip(bits, owner) if o == region)
    return out


def independent_accuracy(data: dict, surprisals: dict) -> float:
    passed = []
    for it in data["items"]:
        values = {}
        for c in it["conditions"]:
            regs = {int(r["region_number"]) for r in c["regions"]}
            for n in regs:
                values[(c["condition_name"], str(n))] = _Tol(surprisals[(it["item_number"], c["condition_name"], n)])
            values[(c["condition_name"], "*")] = _Tol(sum(float(values[(c["condition_name"], str(n))]) for n in regs))
        ok = [bool(eval(formula_to_python(p["formula"]), {}, {"V": values})) for p in data["predictions"]]
        passed.append(all(ok))
    return float(np.mean(passed))


# --- this package -------------------------------------------------------------------------------------------


def our_scores(model, data: dict, name: str):
    """(accuracy, {(item, condition, region): bits}) through this package's pipeline."""
    suite = suite_from_dict(data, source=name)
    regions = region_surprisal(suite_surprisal(model, suite, SurprisalConfig(batch_size=16), show_progress=False))
    res = evaluate_predictions(regions, suite)
    acc = float(res.groupby("item")["passed"].all().mean())
    bits = {(int(r.item), str(r.condition), int(r.region)): float(r.surprisal_bits) for r in regions.itertuples()}
    return acc, bits


def compare(model, data: dict, name: str):
    ours, our_bits = our_scores(model, data, name)
    ref_bits = independent_region_surprisals(model.hf, model.tokenizer, model.bos_token_id, data)
    theirs = independent_accuracy(data, ref_bits)
    gaps = [abs(our_bits.get(k, 0.0) - v) for k, v in ref_bits.items()]
    return ours, theirs, max(gaps)


def test_all_suites_load_and_parse():
    suites = corpus()
    assert len(suites) == N_SUITES, f"expected {N_SUITES} suites in {SUITES_DIR}, found {len(suites)}"
    for name, data in suites.items():
        suite = suite_from_dict(data, source=name)
        assert suite.spacing == "syntaxgym"
        assert len(suite.items) == len(data["items"]) and suite.predictions
        for it, raw in zip(suite.items, data["items"]):
            for c, rc in zip(it.conditions, raw["conditions"]):
                assert c.text.split() == sentence_and_ranges(rc["regions"])[0].split()


def test_first_items_match_independent_scorer(tiny_model):
    torch.set_num_threads(1)
    for name, data in corpus().items():
        small = first_items(data, 2)
        ours, theirs, gap = compare(tiny_model, small, name)
        assert gap < 1e-3, f"{name}: region surprisal differs by {gap:.2g} bits"
        assert ours == theirs, f"{name}: accuracy {ours} vs independent {theirs}"


@pytest.mark.slow
def test_accuracy_matches_independent_scorer_on_default_model(gemma):
    for name, data in corpus().items():
        if ITEMS != "all":
            data = first_items(data, int(ITEMS))
        ours, theirs, _ = compare(gemma, data, name)
        assert abs(ours - theirs) <= 0.02, f"{name}: accuracy {ours:.3f} vs independent scorer {theirs:.3f}"

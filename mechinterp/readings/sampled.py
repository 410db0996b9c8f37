"""Sampled reading probabilities (after Aina & Linzen 2021): draw N continuations of each prefix from the
model and count the reading each one completes.

Sampling is ancestral (temperature 1, the full next-token distribution) with a ``torch.Generator`` seeded
from ``seed`` and the item and condition, so a sample does not depend on which other items are run. The
original model samples from its key-value cache; under an intervention every step reruns the whole sequence,
because scoped hooks decide what to edit from the sequence's tokens. Each
continuation is classified by :mod:`.classify`; P(reading) = count(reading) / classified samples (with add-0.5
smoothing in the log-odds only), and unclassified samples are counted.
"""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from mechinterp.interventions.base import apply_interventions
from mechinterp.interventions.compose import as_composite
from mechinterp.readings.classify import classify
from mechinterp.readings.exact import LN2, READING_COLUMNS
from mechinterp.readings.scope import extend_to_prefixes
from mechinterp.readings.targets import ReadingTarget, reading_targets

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite

MAX_NEW_TOKENS = 12


def _generator(seed: int, t: ReadingTarget) -> torch.Generator:
    key = zlib.crc32(f"{t.construction}|{t.item}|{t.condition}".encode())
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + key)


@torch.no_grad()
def sample_continuations(model: "Model", target: ReadingTarget, n: int, seed: int = 0,
                         max_new_tokens: int = MAX_NEW_TOKENS, intervention: Any = None) -> list[str]:
    """``n`` seeded continuations of one target's prefix.

    Args:
        model: the model.
        target: where to continue from.
        n: how many samples.
        seed: the sampling seed (combined with the item and condition).
        max_new_tokens: tokens per sample.
        intervention: an intervention or composite (None: the original model); scoped ones act on the prefix
            positions they would edit in the full sentence.

    Returns:
        The decoded continuations (text after the prefix, with its leading whitespace).
    """
    g = _generator(seed, target)
    ids = torch.tensor([target.prefix_ids] * n, dtype=torch.long)
    n_prefix = len(target.prefix_ids)
    c = as_composite(intervention)
    if c is None or not c.hooks:
        # the original model: one pass over the prefix, then one token per step from the key-value cache
        # (the rows are copies of one prefix, so there is no padding)
        out = model.hf(input_ids=ids.to(model.device), use_cache=True, logits_to_keep=1)
        for step in range(max_new_tokens):
            nxt = torch.multinomial(torch.softmax(out.logits[:, -1].float().cpu(), -1), 1, generator=g)
            ids = torch.cat([ids, nxt], 1)
            if step + 1 < max_new_tokens:
                out = model.hf(input_ids=nxt.to(model.device), past_key_values=out.past_key_values, use_cache=True)
        return [model.tokenizer.decode(r[n_prefix:].tolist()) for r in ids]
    # scoped hooks decide from the whole sequence (their table knows the prefix), so no cache
    for _ in range(max_new_tokens):
        seqs = [(target.full_ids, tuple(r), n_prefix) for r in ids.tolist()]
        iv = extend_to_prefixes(c, seqs)
        with apply_interventions(model, iv.hooks if iv is not None else ()):
            lg = model.hf(input_ids=ids.to(model.device), use_cache=False).logits[:, -1].float().cpu()
        nxt = torch.multinomial(torch.softmax(lg, -1), 1, generator=g)
        ids = torch.cat([ids, nxt], 1)
    return [model.tokenizer.decode(r[n_prefix:].tolist()) for r in ids]


def sampled_readings(model: "Model", suite: "Suite", intervention: Any = None, n_samples: int = 10, seed: int = 0,
                     max_new_tokens: int = MAX_NEW_TOKENS, samples_out: list | None = None) -> pd.DataFrame:
    """Reading probabilities from classified samples.

    Args:
        model: the model.
        suite: a suite with an ambiguity annotation.
        intervention: an intervention or composite (None: the original model).
        n_samples: samples per item and condition.
        seed: sampling seed.
        max_new_tokens: tokens per sample.
        samples_out: if given, a list that receives one dict per sample (prefix, continuation, label).

    Returns:
        Rows as :func:`~.exact.exact_readings` with ``method`` = "sampled": ``mass`` is the share of all samples
        with that reading, ``probability`` the share among classified samples, plus n_samples and
        n_unclassified.

    Example:
        >>> sampled_readings(load_model("gemma3-270m"), load_suite("npz"), n_samples=10, seed=0)
    """
    rows = []
    for t in reading_targets(model, suite):
        conts = sample_continuations(model, t, n_samples, seed, max_new_tokens, intervention)
        labels = [classify(t.prefix, t.unambiguous_prefix, c, t.construction, t.preferred, t.dispreferred,
                           ambiguous_prefix=t.ambiguous_prefix or None) for c in conts]
        if samples_out is not None:
            samples_out += [{"construction": t.construction, "item": t.item, "condition": t.condition,
                             "prefix": t.prefix, "continuation": c, "label": lab} for c, lab in zip(conts, labels)]
        counts = {r: sum(lab == r for lab in labels) for r in (t.preferred, t.dispreferred)}
        n_cls = sum(counts.values())
        for reading in (t.preferred, t.dispreferred):
            other = t.dispreferred if reading == t.preferred else t.preferred
            rows.append({
                "suite": suite.name, "construction": t.construction, "item": t.item, "condition": t.condition,
                "ambiguous": t.ambiguous, "reading": reading, "preferred": reading == t.preferred, "method": "sampled",
                "mass": counts[reading] / n_samples, "log2_mass": math.log2(counts[reading] / n_samples)
                if counts[reading] else -np.inf,
                "probability": counts[reading] / n_cls if n_cls else np.nan,
                "log2_odds": math.log((counts[reading] + 0.5) / (counts[other] + 0.5)) / LN2,
                "n_continuations": np.nan, "n_samples": n_samples, "n_unclassified": n_samples - n_cls,
                "prefix": t.prefix,
            })
    return pd.DataFrame(rows, columns=READING_COLUMNS)

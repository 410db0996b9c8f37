"""Sampled reading probabilities (after Aina & Linzen 2021): draw N continuations of each prefix from the
model and count the reading each one completes.

Sampling is ancestral (temperature 1, the full next-token distribution) with a ``torch.Generator`` seeded
from ``seed`` and the item and condition, so a sample does not depend on which other items are run. The
original model samples several items at once (left-padded) from its key-value cache; under an intervention
every step reruns each item's whole sequences, because scoped hooks decide what to edit from a sequence's
tokens. Each
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

from mechinterp.forward import batches
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
def _sample_cached(model: "Model", targets: list[ReadingTarget], n: int, seed: int, max_new_tokens: int
                   ) -> list[list[str]]:
    """``n`` samples of each target from the original model: one left-padded pass over the prefixes (``n``
    rows per target), then one token per step from the key-value cache. Each target draws from its own
    generator, ``n`` rows at a time, so its samples are those it gets alone."""
    gens = [_generator(seed, t) for t in targets]
    width = max(len(t.prefix_ids) for t in targets)
    ids = torch.full((len(targets) * n, width), model.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for k, t in enumerate(targets):
        ids[k * n:(k + 1) * n, width - len(t.prefix_ids):] = torch.tensor(t.prefix_ids)
        mask[k * n:(k + 1) * n, width - len(t.prefix_ids):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    dev = model.device
    out = model.hf(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=True,
                   logits_to_keep=1)
    new = []
    for step in range(max_new_tokens):
        probs = torch.softmax(out.logits[:, -1].float().cpu(), -1)
        nxt = torch.cat([torch.multinomial(probs[k * n:(k + 1) * n], 1, generator=g) for k, g in enumerate(gens)])
        new.append(nxt)
        if step + 1 < max_new_tokens:
            pos = pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(nxt)], 1)
            out = model.hf(input_ids=nxt.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                           past_key_values=out.past_key_values, use_cache=True)
    toks = torch.cat(new, 1).tolist()
    return [[model.tokenizer.decode(r) for r in toks[k * n:(k + 1) * n]] for k in range(len(targets))]


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
    c = as_composite(intervention)
    if c is None or not c.hooks:
        return _sample_cached(model, [target], n, seed, max_new_tokens)[0]
    # scoped hooks decide from the whole sequence (their table knows the prefix), so no cache
    g = _generator(seed, target)
    ids = torch.tensor([target.prefix_ids] * n, dtype=torch.long)
    n_prefix = len(target.prefix_ids)
    for _ in range(max_new_tokens):
        seqs = [(target.full_ids, tuple(r), n_prefix) for r in ids.tolist()]
        iv = extend_to_prefixes(c, seqs)
        with apply_interventions(model, iv.hooks if iv is not None else ()):
            lg = model.hf(input_ids=ids.to(model.device), use_cache=False).logits[:, -1].float().cpu()
        nxt = torch.multinomial(torch.softmax(lg, -1), 1, generator=g)
        ids = torch.cat([ids, nxt], 1)
    return [model.tokenizer.decode(r[n_prefix:].tolist()) for r in ids]


def _all_samples(model: "Model", targets: list[ReadingTarget], n: int, seed: int, max_new_tokens: int,
                 intervention: Any, batch_size: int) -> list[list[str]]:
    c = as_composite(intervention)
    if c is not None and c.hooks:
        return [sample_continuations(model, t, n, seed, max_new_tokens, intervention) for t in targets]
    out: list[list[str]] = []
    for rng in batches(len(targets), batch_size):
        out += _sample_cached(model, [targets[i] for i in rng], n, seed, max_new_tokens)
    return out


def sampled_readings(model: "Model", suite: "Suite", intervention: Any = None, n_samples: int = 10, seed: int = 0,
                     max_new_tokens: int = MAX_NEW_TOKENS, samples_out: list | None = None, batch_size: int = 8
                     ) -> pd.DataFrame:
    """Reading probabilities from classified samples.

    Args:
        model: the model.
        suite: a suite with an ambiguity annotation.
        intervention: an intervention or composite (None: the original model).
        n_samples: samples per item and condition.
        seed: sampling seed.
        max_new_tokens: tokens per sample.
        samples_out: if given, a list that receives one dict per sample (prefix, continuation, label).
        batch_size: targets (item x condition) sampled together by the original model, ``n_samples`` rows each.

    Returns:
        Rows as :func:`~.exact.exact_readings` with ``method`` = "sampled": ``mass`` is the share of all samples
        with that reading, ``probability`` the share among classified samples, plus n_samples and
        n_unclassified.

    Example:
        >>> sampled_readings(load_model("gemma3-270m"), load_suite("npz"), n_samples=10, seed=0)
    """
    rows = []
    targets = list(reading_targets(model, suite))
    samples = _all_samples(model, targets, n_samples, seed, max_new_tokens, intervention, batch_size)
    for t, conts in zip(targets, samples):
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

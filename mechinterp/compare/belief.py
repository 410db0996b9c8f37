"""Parse beliefs word by word: a two-reading distribution after every word prefix, and how far it moves.

Behavioural beliefs come from the exact reading estimator (:mod:`mechinterp.readings.exact`) run after every
word of a sentence instead of only before its disambiguating region: the prefix after word *w* is the
sentence's tokens up to and including *w*'s last token (BOS first), and its continuation sets are the ones
the estimator uses for that item and condition (the item's own disambiguating word left out), so at the word
before the disambiguating region the probability is exactly :func:`~mechinterp.readings.exact_readings`'s.
Items whose construction has no readings or no continuation sets, and suites without an ambiguity annotation,
get no beliefs (the caller writes NaN).

:func:`belief_update` turns a sequence of P(preferred reading) into the total variation and the KL divergence
between consecutive words' distributions over the two readings.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
from scipy.special import rel_entr

from mechinterp.errors import ConfigError, RegionError, SuiteError
from mechinterp.readings.continuations import ReadingSet, load_continuations
from mechinterp.readings.exact import TokenSets, reading_masses, target_token_sets
from mechinterp.readings.targets import reading_targets

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite
    from mechinterp.tokenization import TokenizedText


def prefix_beliefs(model: "Model", suite: "Suite", tts: Mapping[tuple[str, str], "TokenizedText"],
                   continuations: Mapping[str, Mapping[str, ReadingSet]] | None = None, batch_size: int = 8
                   ) -> dict[tuple[str, str], np.ndarray]:
    """P(preferred reading) after every word of every annotated item and condition.

    Args:
        model: the model.
        suite: the suite.
        tts: (item key, condition name) -> the condition's tokenized sentence.
        continuations: construction -> reading -> set; default the shipped file.
        batch_size: prefixes per forward pass of the estimator.

    Returns:
        (item key, condition name) -> ``[n_words]`` probabilities, only for items the estimator can score.

    Example:
        >>> keys, seqs = suite_sequences(model, suite)
        >>> beliefs = prefix_beliefs(model, suite, {(it.key, c.name): tt for (it, c), tt in zip(keys, seqs)})
    """
    sets_all = continuations if continuations is not None else load_continuations()
    if suite.ambiguity is None:
        return {}
    where: list[tuple[tuple[str, str], int, str, str]] = []  # (item key, condition), word, preferred, other
    prefixes: list[tuple[int, ...]] = []
    sets_per: list[TokenSets] = []
    for it in suite.items:
        try:
            targets = list(reading_targets(model, suite.with_items([it])))
        except (SuiteError, RegionError):
            continue  # no readings for this construction, or no disambiguating region to cut at
        for t in targets:
            try:
                sets = target_token_sets(model, t, sets_all)
            except ConfigError:
                continue
            tt = tts[(it.key, t.condition)]
            for w, (_, end) in enumerate(tt.word_spans):
                where.append(((it.key, t.condition), w, t.preferred, t.dispreferred))
                prefixes.append(tuple(tt.input_ids[:end]))
                sets_per.append(sets)
    masses = reading_masses(model, prefixes, sets_per, batch_size) if prefixes else []
    out: dict[tuple[str, str], np.ndarray] = {}
    for (key, w, pref, other), m in zip(where, masses):
        z = np.logaddexp(m[pref], m[other])
        p = math.exp(m[pref] - z) if np.isfinite(z) else math.nan
        out.setdefault(key, np.full(len(tts[key].words), np.nan))[w] = p
    return out


def belief_update(p: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total variation and KL (bits) between consecutive two-reading distributions.

    Args:
        p: P(preferred reading) after each word, in order.

    Returns:
        (tv, kl_bits), each ``[len(p)]``: ``tv[w] = |p[w] - p[w-1]|`` and ``kl_bits[w] = KL(P_w || P_{w-1})``
        in bits, NaN at word 0 and wherever either probability is NaN.

    Example:
        >>> tv, kl = belief_update([0.9, 0.5])
        >>> round(float(tv[1]), 3), round(float(kl[1]), 3)
        (0.4, 0.737)
    """
    q = np.asarray(p, dtype=float)
    tv = np.full(len(q), np.nan)
    kl = np.full(len(q), np.nan)
    if len(q) > 1:
        now, before = q[1:], q[:-1]
        tv[1:] = np.abs(now - before)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl[1:] = (rel_entr(now, before) + rel_entr(1 - now, 1 - before)) / math.log(2)
    return tv, kl

"""Parse beliefs word by word: a two-reading distribution after every word prefix, and how far it moves.

Behavioural beliefs come from the exact reading estimator (:mod:`mechinterp.readings.exact`) run after every
word of a sentence instead of only before its disambiguating region: the prefix after word *w* is the
sentence's tokens up to and including *w*'s last token (BOS first), and its continuation sets are the ones
the estimator uses for that item and condition (the item's own disambiguating word left out), so at the word
before the disambiguating region the probability is exactly :func:`~mechinterp.readings.exact_readings`'s.
Items whose construction has no readings or no continuation sets, and suites without an ambiguity annotation,
get no beliefs (the caller writes NaN).

:func:`belief_sets` gives each item and condition its continuation sets and :func:`beliefs_from_logprobs`
turns the continuations' log-probabilities after every word into P(preferred reading); the log-probabilities
come from the word predictors' one pass per batch (:mod:`mechinterp.compare.word_pass`: single-token
continuations read off the sentence's own logits, longer ones on its key/value cache). :func:`prefix_beliefs`
is the direct computation (one estimator run per prefix) that this is tested against.

:func:`belief_update` turns a sequence of P(preferred reading) into the total variation and the KL divergence
between consecutive words' distributions over the two readings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class BeliefSets:
    """The readings of one item and condition and the continuation sets that score them.

    Attributes:
        preferred: the reading people prefer.
        other: the other reading.
        sets: reading -> tokenized continuations (:func:`~mechinterp.readings.exact.target_token_sets`).
    """

    preferred: str
    other: str
    sets: TokenSets

    @property
    def token_ids(self) -> list[tuple[int, ...]]:
        """Every continuation's token ids, both readings (no sequence is in both)."""
        return [ids for toks in self.sets.values() for _, ids in toks]


def belief_sets(model: "Model", suite: "Suite", continuations: Mapping[str, Mapping[str, ReadingSet]] | None = None
                ) -> dict[tuple[str, str], BeliefSets]:
    """The readings and continuation sets of every item and condition the estimator can score.

    Args:
        model: gives the tokenizer.
        suite: the suite.
        continuations: construction -> reading -> set; default the shipped file.

    Returns:
        (item key, condition name) -> :class:`BeliefSets`; items whose construction has no readings, no
        disambiguating region or no continuation sets are left out.

    Example:
        >>> sets = belief_sets(model, load_suite("npz").head(1))
        >>> sorted(next(iter(sets.values())).sets)
        ['object', 'subject']
    """
    sets_all = continuations if continuations is not None else load_continuations()
    if suite.ambiguity is None:
        return {}
    out: dict[tuple[str, str], BeliefSets] = {}
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
            out[(it.key, t.condition)] = BeliefSets(t.preferred, t.dispreferred, sets)
    return out


def preferred_probability(bs: BeliefSets, mass: Mapping[str, float]) -> float:
    """P(preferred reading) = m_pref / (m_pref + m_other) from natural-log masses (NaN when both are empty)."""
    z = np.logaddexp(mass[bs.preferred], mass[bs.other])
    return math.exp(mass[bs.preferred] - z) if np.isfinite(z) else math.nan


def beliefs_from_logprobs(bs: BeliefSets, n_words: int, logp: Mapping[tuple[int, tuple[int, ...]], float]
                          ) -> np.ndarray:
    """P(preferred reading) after every word from each continuation's log-probability after each word.

    Args:
        bs: the item and condition's readings and sets.
        n_words: words in the sentence.
        logp: (word index, continuation token ids) -> natural-log P(continuation | sentence through the word),
            for every word and every continuation of ``bs`` (:attr:`WordStates.continuations
            <mechinterp.compare.word_pass.WordStates>`).

    Returns:
        ``[n_words]`` probabilities.
    """
    p = np.full(n_words, np.nan)
    for w in range(n_words):
        mass = {r: float(np.logaddexp.reduce([logp[(w, ids)] for _, ids in toks])) if toks else -math.inf
                for r, toks in bs.sets.items()}
        p[w] = preferred_probability(bs, mass)
    return p


def prefix_beliefs(model: "Model", suite: "Suite", tts: Mapping[tuple[str, str], "TokenizedText"],
                   continuations: Mapping[str, Mapping[str, ReadingSet]] | None = None, batch_size: int = 8
                   ) -> dict[tuple[str, str], np.ndarray]:
    """P(preferred reading) after every word of every annotated item and condition, one estimator run per prefix.

    The direct computation: every word prefix goes through :func:`~mechinterp.readings.exact.reading_masses`
    as its own sequence. :func:`mechinterp.word_predictors` gets the same numbers from its one pass per batch
    (:mod:`mechinterp.compare.word_pass`); this function is the reference it is tested against.

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
    where: list[tuple[tuple[str, str], int, BeliefSets]] = []  # (item key, condition), word, sets
    prefixes: list[tuple[int, ...]] = []
    for key, bs in belief_sets(model, suite, continuations).items():
        tt = tts[key]
        for w, (_, end) in enumerate(tt.word_spans):
            where.append((key, w, bs))
            prefixes.append(tuple(tt.input_ids[:end]))
    masses = reading_masses(model, prefixes, [bs.sets for _, _, bs in where], batch_size) if prefixes else []
    out: dict[tuple[str, str], np.ndarray] = {}
    for (key, w, bs), m in zip(where, masses):
        out.setdefault(key, np.full(len(tts[key].words), np.nan))[w] = preferred_probability(bs, m)
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

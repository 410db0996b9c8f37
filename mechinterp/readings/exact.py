"""Exact reading probabilities: the next-token mass of each reading's diagnostic continuations.

For every item and condition (see :mod:`.targets`), each continuation of the construction's two sets (see
:mod:`.continuations`) is scored exactly after the prefix: log P(c) = sum_j log P(c_j | prefix, c_<j). All
sequences of a batch of targets go through the model in one padded forward pass; single-token continuations
are read off the prefix's own last position. The mass of a reading is the sum over its continuations, and
P(reading) = mass(reading) / (mass(preferred) + mass(dispreferred)).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from mechinterp.errors import ConfigError
from mechinterp.forward import batches, logits, pad_batch
from mechinterp.interventions.base import apply_interventions
from mechinterp.readings.continuations import ReadingSet, load_continuations, token_sets
from mechinterp.readings.scope import extend_to_prefixes
from mechinterp.readings.targets import ReadingTarget, reading_targets

if TYPE_CHECKING:
    from mechinterp.interventions.compose import Composite
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite

LN2 = math.log(2.0)
READING_COLUMNS = [
    "suite", "construction", "item", "condition", "ambiguous", "reading", "preferred", "method", "mass",
    "log2_mass", "probability", "log2_odds", "n_continuations", "n_samples", "n_unclassified", "prefix",
]


TokenSets = dict[str, list[tuple[str, tuple[int, ...]]]]  # reading -> [(continuation, token ids)]


def _target_sequences(prefix_ids: tuple[int, ...], sets: TokenSets) -> list[tuple[int, ...]]:
    """The prefix alone, then prefix + every continuation of two tokens or more."""
    seqs = [prefix_ids]
    for toks in sets.values():
        seqs += [prefix_ids + ids[:-1] for _, ids in toks if len(ids) > 1]
    return seqs


@torch.no_grad()
def reading_masses(model: "Model", prefixes: Sequence[tuple[int, ...]], sets_per: Sequence[TokenSets],
                   batch_size: int = 8, backend: str = "hf") -> list[dict[str, float]]:
    """Natural-log mass of each reading's continuations after each prefix (the estimator's core).

    Args:
        model: the model.
        prefixes: token ids (BOS first) of each prefix.
        sets_per: for each prefix, reading -> tokenized continuations (:func:`~.continuations.token_sets`).
        batch_size: prefixes per forward pass (each with its multi-token continuations).
        backend: forward backend.

    Returns:
        For each prefix, reading -> log sum_c P(c | prefix) (``-inf`` for an empty set).

    Example:
        >>> sets = token_sets(model.tokenizer, load_continuations()["NP/Z"])
        >>> reading_masses(model, [prefix_ids], [sets])[0]["subject"]
    """
    out: list[dict[str, float]] = []
    for rng in batches(len(prefixes), batch_size):
        seq_lists = [_target_sequences(prefixes[i], sets_per[i]) for i in rng]
        flat = [s for lst in seq_lists for s in lst]
        b = pad_batch(flat, model.pad_token_id, "right", device=model.device)
        lp = torch.log_softmax(logits(model, b, backend).float(), dim=-1)
        row = 0
        for k, i in enumerate(rng):
            sets = sets_per[i]
            n = len(prefixes[i])
            base = lp[row, n - 1]
            multi_row = row + 1
            masses: dict[str, float] = {}
            for reading, toks in sets.items():
                terms = []
                for _, ids in toks:
                    if len(ids) == 1:
                        terms.append(base[ids[0]])
                    else:
                        r = lp[multi_row]
                        terms.append(base[ids[0]] + sum(r[n - 1 + j, ids[j]] for j in range(1, len(ids))))
                        multi_row += 1
                masses[reading] = float(torch.logsumexp(torch.stack(terms), 0)) if terms else -math.inf
            row += len(seq_lists[k])
            out.append(masses)
    return out


def target_token_sets(model: "Model", target: ReadingTarget, continuations: Mapping[str, Mapping[str, ReadingSet]]
                      ) -> TokenSets:
    """The tokenized continuation sets that score ``target``'s readings (its own disambiguating word left out).

    Args:
        model: gives the tokenizer.
        target: the item and condition (:func:`~.targets.reading_targets`).
        continuations: construction -> reading -> set (:func:`~.continuations.load_continuations`).

    Returns:
        reading -> list of (continuation, token ids), for exactly the target's two readings.

    Raises:
        ConfigError: the construction has no sets, or its sets name other readings than the suite's.

    Example:
        >>> t = next(reading_targets(model, load_suite("npz")))
        >>> sorted(target_token_sets(model, t, load_continuations()))
        ['object', 'subject']
    """
    if target.construction not in continuations:
        raise ConfigError(f"no continuation sets for construction {target.construction!r} "
                          f"(known: {sorted(continuations)})")
    sets = token_sets(model.tokenizer, continuations[target.construction], exclude=target.disambiguator)
    if set(sets) != {target.preferred, target.dispreferred}:
        raise ConfigError(f"continuation readings {sorted(sets)} of {target.construction!r} do not match the "
                          f"suite's readings {sorted([target.preferred, target.dispreferred])}")
    return sets


def exact_readings(model: "Model", suite: "Suite", intervention: "Composite | Any | None" = None,
                   continuations: Mapping[str, Mapping[str, ReadingSet]] | None = None, batch_size: int = 8,
                   backend: str = "hf") -> pd.DataFrame:
    """Reading probabilities from diagnostic continuation masses (see the module docstring).

    Args:
        model: the model.
        suite: a suite with an ambiguity annotation and constructions that ``continuations`` defines.
        intervention: an intervention or composite to apply (None: the original model). Scoped
            interventions act on the prefix positions they would edit in the full sentence.
        continuations: construction -> reading -> set; default the shipped file.
        batch_size: targets per forward pass.
        backend: forward backend.

    Returns:
        One row per item x condition x reading (:data:`READING_COLUMNS`; ``method`` = "exact"): the raw
        mass of the reading's continuations (``mass``, ``log2_mass``), P(reading) normalised over the two
        sets (``probability``) and log2 P(reading) / P(other reading) (``log2_odds``).

    Example:
        >>> df = exact_readings(load_model("gemma3-270m"), load_suite("npz"))
        >>> df[(df.reading == "subject") & df.ambiguous]["probability"].mean()
    """
    sets_all = continuations if continuations is not None else load_continuations()
    targets = list(reading_targets(model, suite))
    sets_per = [target_token_sets(model, t, sets_all) for t in targets]
    seqs = [(t.full_ids, s, len(t.prefix_ids)) for t, sets in zip(targets, sets_per)
            for s in _target_sequences(t.prefix_ids, sets)]
    iv = extend_to_prefixes(intervention, seqs)

    with apply_interventions(model, iv.hooks if iv is not None else ()):
        masses = reading_masses(model, [t.prefix_ids for t in targets], sets_per, batch_size, backend)
    rows = []
    for t, m, sets in zip(targets, masses, sets_per):
        z = np.logaddexp(m[t.preferred], m[t.dispreferred])
        for reading in (t.preferred, t.dispreferred):
            other = t.dispreferred if reading == t.preferred else t.preferred
            rows.append({
                "suite": suite.name, "construction": t.construction, "item": t.item, "condition": t.condition,
                "ambiguous": t.ambiguous, "reading": reading, "preferred": reading == t.preferred, "method": "exact",
                "mass": math.exp(m[reading]), "log2_mass": m[reading] / LN2,
                "probability": math.exp(m[reading] - z), "log2_odds": (m[reading] - m[other]) / LN2,
                "n_continuations": len(sets[reading]), "n_samples": np.nan, "n_unclassified": np.nan,
                "prefix": t.prefix,
            })
    return pd.DataFrame(rows, columns=READING_COLUMNS)

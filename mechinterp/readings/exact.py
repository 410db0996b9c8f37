"""Exact reading probabilities: the next-token mass of each reading's diagnostic continuations.

For every item and condition (see :mod:`.targets`), each continuation of the construction's two sets (see
:mod:`.continuations`) is scored exactly after the prefix: log P(c) = sum_j log P(c_j | prefix, c_<j). All
sequences of a batch of targets go through the model in one padded forward pass; single-token continuations
are read off the prefix's own last position. The mass of a reading is the sum over its continuations, and
P(reading) = mass(reading) / (mass(preferred) + mass(dispreferred)).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

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


def _target_sequences(t: ReadingTarget, sets: dict[str, list[tuple[str, tuple[int, ...]]]]
                      ) -> list[tuple[int, ...]]:
    """The prefix alone, then prefix + every continuation of two tokens or more."""
    seqs = [t.prefix_ids]
    for toks in sets.values():
        seqs += [t.prefix_ids + ids[:-1] for _, ids in toks if len(ids) > 1]
    return seqs


@torch.no_grad()
def _masses(model: "Model", targets: list[ReadingTarget], sets_per: list[dict], batch_size: int, backend: str
            ) -> list[dict[str, float]]:
    """Natural-log mass of each reading for each target."""
    out: list[dict[str, float]] = []
    for rng in batches(len(targets), batch_size):
        seq_lists = [_target_sequences(targets[i], sets_per[i]) for i in rng]
        flat = [s for lst in seq_lists for s in lst]
        b = pad_batch(flat, model.pad_token_id, "right", device=model.device)
        lp = torch.log_softmax(logits(model, b, backend).float(), dim=-1)
        row = 0
        for k, i in enumerate(rng):
            t, sets = targets[i], sets_per[i]
            n = len(t.prefix_ids)
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
    sets_per = []
    for t in targets:
        if t.construction not in sets_all:
            raise ConfigError(f"no continuation sets for construction {t.construction!r} (known: {sorted(sets_all)})")
        sets = token_sets(model.tokenizer, sets_all[t.construction], exclude=t.disambiguator)
        if set(sets) != {t.preferred, t.dispreferred}:
            raise ConfigError(f"continuation readings {sorted(sets)} of {t.construction!r} do not match the "
                              f"suite's readings {sorted([t.preferred, t.dispreferred])}")
        sets_per.append(sets)
    seqs = [(t.full_ids, s, len(t.prefix_ids)) for t, sets in zip(targets, sets_per) for s in _target_sequences(t, sets)]
    iv = extend_to_prefixes(intervention, seqs)

    with apply_interventions(model, iv.hooks if iv is not None else ()):
        masses = _masses(model, targets, sets_per, batch_size, backend)
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

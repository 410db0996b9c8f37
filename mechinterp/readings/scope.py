"""Interventions scoped to a suite's sentences, carried over to the sentences' prefixes and continuations.

A :class:`~mechinterp.interventions.base.TokenTable` scope recognises the token sequences of a suite's
conditions. The readings estimators run *prefixes* of those sentences, extended by candidate or sampled
continuations, which the table does not know. :func:`extend_to_prefixes` gives each intervention a table that
also knows ``prefix + anything``-sequences, with the positions it would edit in the full sentence that lie
inside the prefix. Continuation tokens are then left alone, exactly as the tokens after the prefix are in the
suite's own scoring. Interventions at all positions are unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterable, Sequence

from mechinterp.errors import ConfigError
from mechinterp.interventions.base import TokenTable
from mechinterp.interventions.compose import Composite, as_composite

if TYPE_CHECKING:
    from mechinterp.interventions.base import Intervention


def _extended(scope: TokenTable, seqs: Iterable[tuple[tuple[int, ...], tuple[int, ...], int]]) -> TokenTable:
    table = dict(scope.table)
    for full, seq, n_prefix in seqs:
        pos = scope.table.get(full)
        if pos is None:
            continue  # a sentence the scope does not know: its `unknown` rule applies, as for the full sentence
        table.setdefault(seq, frozenset(p for p in pos if p < n_prefix))
    return dataclasses.replace(scope, table=table)


def extend_to_prefixes(intervention: "Intervention | Composite | None",
                       seqs: Sequence[tuple[tuple[int, ...], tuple[int, ...], int]]) -> Composite | None:
    """The intervention with its token-table scopes extended to prefix sequences.

    Args:
        intervention: an intervention, a composite, or None (the original model).
        seqs: (full sentence ids, sequence to run, prefix length) for every sequence that will be run.

    Returns:
        A composite whose scoped hooks know every sequence in ``seqs`` (None stays None).

    Raises:
        ConfigError: if the composite truncates the context (not a hook: readings are not defined for it).
    """
    c = as_composite(intervention)
    if c is None:
        return None
    if c.truncation is not None:
        raise ConfigError("reading probabilities under context truncation are not supported")
    parts = []
    for h in c.hooks:
        if isinstance(h.scope, TokenTable) and dataclasses.is_dataclass(h):
            h = dataclasses.replace(h, scope=_extended(h.scope, seqs))
        parts.append(h)
    return Composite(tuple(parts), c.name)

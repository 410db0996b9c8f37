"""Compose interventions and score text under them.

Hook interventions (erasure, clamp, SAE edits) compose by stacking their hooks in order: edits of the same
site apply one after another, edits of different sites each see what the earlier layers produced. Context
truncation is a way of scoring, not a hook; a composite may hold one, and then every word is scored from its
truncated window with the hooks on. Because truncated windows are not the suite's sequences, truncation only
composes with interventions scoped to all positions (:class:`~.base.AllPositions`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager, Iterator, Sequence

import pandas as pd

from mechinterp.errors import ConfigError
from mechinterp.interventions.base import (
    AllPositions,
    Intervention,
    apply_interventions,
)
from mechinterp.interventions.truncation import (
    Truncation,
    truncated_sentence_surprisal,
    truncated_suite_surprisal,
)
from mechinterp.surprisal import SurprisalConfig, sentence_surprisal, suite_surprisal

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite
    from mechinterp.surprisal import SurprisalConfig

Part = Intervention | Truncation


@dataclass(frozen=True, eq=False)
class Composite:
    """Several interventions applied together (hooks in order, at most one truncation)."""

    parts: tuple[Part, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        truncs = [p for p in self.parts if isinstance(p, Truncation)]
        if len(truncs) > 1:
            raise ConfigError(f"a composite can truncate the context only once, got k = {[t.k for t in truncs]}")
        for p in self.parts:
            if not isinstance(p, (Intervention, Truncation)):
                raise ConfigError(f"cannot compose {type(p).__name__}: not an intervention")
        if truncs:
            scoped = [p for p in self.hooks if not isinstance(p.scope, AllPositions)]
            if scoped:
                raise ConfigError(
                    "context truncation composes only with interventions applied at all positions: truncated "
                    f"windows are not the stimuli that {', '.join(p.label for p in scoped)} is placed on")

    @property
    def hooks(self) -> tuple[Intervention, ...]:
        return tuple(p for p in self.parts if isinstance(p, Intervention))

    @property
    def truncation(self) -> Truncation | None:
        return next((p for p in self.parts if isinstance(p, Truncation)), None)

    def describe(self) -> dict[str, Any]:
        return {"kind": "compose", "name": self.name, "parts": [p.describe() for p in self.parts]}

    @property
    def label(self) -> str:
        return self.name or " + ".join(p.label for p in self.parts)

    def apply(self, model: "Model") -> "ContextManager[None]":
        """Apply the composite's hook interventions to every forward pass of ``model`` inside a ``with`` block;
        every hook is removed when the block ends, also on error. A composite that truncates the context is a
        way of scoring, not a hook (ConfigError): score it with :func:`suite_surprisal_under`.

        Args:
            model: the model the interventions were fitted on.

        Returns:
            A context manager.

        Example:
            >>> clamp = mi.fit_intervention(model, "clamp:layer=6,shift=1", suite)
            >>> with clamp.apply(model):
            ...     words = mi.suite_surprisal(model, suite)
        """
        return intervene(model, self)


def compose(*parts: "Part | Composite", name: str | None = None) -> Composite:
    """One composite of ``parts`` (nested composites are flattened)."""
    flat: list[Part] = []
    for p in parts:
        flat.extend(p.parts if isinstance(p, Composite) else [p])
    if not flat:
        raise ConfigError("nothing to compose")
    return Composite(tuple(flat), name)


def as_composite(intervention: "Part | Composite | None") -> Composite | None:
    if intervention is None or isinstance(intervention, Composite):
        return intervention
    return Composite((intervention,))


@contextmanager
def intervene(model: "Model", *interventions: "Intervention | Composite") -> Iterator[None]:
    """Apply hook interventions to every forward pass of ``model`` inside the block, on any backend; all hooks
    are removed on exit, also on error. (Truncation is not a hook: score with :func:`suite_surprisal_under`.)"""
    c = compose(*interventions) if interventions else None
    if c is not None and c.truncation is not None:
        raise ConfigError("context truncation is a way of scoring, not a hook: use suite_surprisal_under / "
                          "sentence_surprisal_under")
    with apply_interventions(model, c.hooks if c else ()):
        yield


def suite_surprisal_under(model: "Model", suite: "Suite", intervention: "Part | Composite | None",
                          config: "SurprisalConfig | None" = None) -> pd.DataFrame:
    """Per-word surprisal of ``suite`` (as :func:`mechinterp.surprisal.suite_surprisal`) under ``intervention``."""
    config = config or SurprisalConfig()
    c = as_composite(intervention)
    with apply_interventions(model, c.hooks if c else ()):
        if c is not None and c.truncation is not None:
            return truncated_suite_surprisal(model, suite, c.truncation.k, config)
        return suite_surprisal(model, suite, config, show_progress=False)


def sentence_surprisal_under(model: "Model", texts: Sequence[str], intervention: "Part | Composite | None",
                             config: "SurprisalConfig | None" = None) -> pd.DataFrame:
    """Per-word surprisal of free texts (as :func:`mechinterp.surprisal.sentence_surprisal`) under
    ``intervention``. Scoped interventions act on every position of text their scope does not know."""
    config = config or SurprisalConfig()
    c = as_composite(intervention)
    with apply_interventions(model, c.hooks if c else ()):
        if c is not None and c.truncation is not None:
            return truncated_sentence_surprisal(model, texts, c.truncation.k, config)
        return sentence_surprisal(model, texts, config)

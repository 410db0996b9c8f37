"""Reading probabilities under interventions, for `mechinterp collapse` and `mechinterp compare`: the table
of readings per intervention and the efficacy table (did the intervention make the model commit?)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import pandas as pd

from mechinterp.errors import ConfigError, SuiteError
from mechinterp.readings.exact import exact_readings
from mechinterp.readings.summary import COLLAPSE_FACTOR, efficacy

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite
    from mechinterp.surprisal import SurprisalConfig


def readings_under(model: "Model", suite: "Suite", name: str, intervention: Any,
                   config: "SurprisalConfig | None" = None, log: Callable[[str], Any] | None = None,
                   sampled: int = 0, seed: int = 0, factor: float = COLLAPSE_FACTOR) -> pd.DataFrame:
    """Exact (and, with ``sampled`` > 0, sampled) reading probabilities under one intervention.

    Args:
        model: the model.
        suite: the suite being collapsed.
        name: the intervention's name (written to the ``intervention`` column).
        intervention: the intervention (None: the original model).
        config: surprisal configuration (its backend and batch size are used).
        log: progress messages.
        sampled: samples per item and condition for the sampled estimator (0: exact only).
        seed: sampling seed.
        factor: unused here (accepted so one options dict serves this and :func:`efficacy_tables`).

    Returns:
        Reading rows with an ``intervention`` column; empty (with a log line) where readings are undefined
        (no ambiguity annotation, unknown construction, context truncation).
    """
    backend = config.backend if config is not None else "hf"
    try:
        out = [exact_readings(model, suite, intervention, backend=backend)]
        if sampled > 0:
            from mechinterp.readings.sampled import sampled_readings

            out.append(sampled_readings(model, suite, intervention, n_samples=sampled, seed=seed))
    except (ConfigError, SuiteError) as exc:
        if log:
            log(f"no reading probabilities under {name}: {exc}")
        return pd.DataFrame()
    return pd.concat(out, ignore_index=True).assign(intervention=name)


def efficacy_tables(readings: Sequence[pd.DataFrame], factor: float = COLLAPSE_FACTOR) -> dict[str, pd.DataFrame | None]:
    """The readings of every run in one table and the efficacy of each intervention.

    Args:
        readings: one table per run from :func:`readings_under` (the original model's first).
        factor: how many times P(dispreferred) must fall to count as a collapse.

    Returns:
        ``{"readings": ..., "efficacy": ...}`` (both None when no run had readings).
    """
    frames = [r for r in readings if len(r)]
    if not frames:
        return {"readings": None, "efficacy": None}
    allr = pd.concat(frames, ignore_index=True)
    return {"readings": allr, "efficacy": efficacy(allr, factor=factor)}

"""One entry point for both reading estimators."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from mechinterp.errors import ConfigError
from mechinterp.readings.exact import exact_readings
from mechinterp.readings.sampled import sampled_readings

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite

Method = Literal["exact", "sampled"]


def reading_probabilities(model: "Model", suite: "Suite", method: Method = "exact", intervention: Any = None,
                          **kwargs: Any) -> pd.DataFrame:
    """The probability the model gives each reading of every item and condition of ``suite``.

    Args:
        model: the model.
        suite: a suite with an ambiguity annotation.
        method: "exact" (diagnostic continuation mass, :func:`~.exact.exact_readings`) or "sampled" (seeded
            samples classified with a parser, :func:`~.sampled.sampled_readings`).
        intervention: an intervention or composite to apply, or None for the original model.
        **kwargs: passed to the estimator (e.g. ``n_samples``, ``seed`` for "sampled").

    Returns:
        One row per item x condition x reading (:data:`~.exact.READING_COLUMNS`).

    Example:
        >>> import mechinterp as mi
        >>> model, suite = mi.load_model("gemma3-270m"), mi.load_suite("npz").head(4)
        >>> mi.reading_probabilities(model, suite, method="exact")
    """
    if method == "exact":
        return exact_readings(model, suite, intervention, **kwargs)
    if method == "sampled":
        return sampled_readings(model, suite, intervention, **kwargs)
    raise ConfigError(f"unknown reading estimator {method!r}: choose exact or sampled")

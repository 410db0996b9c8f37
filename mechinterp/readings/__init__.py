"""Reading probabilities from behaviour: how likely the model finds each reading of an ambiguous prefix.

Two estimators, one table layout (one row per item x condition x reading):

* :func:`exact_readings`: the next-token mass of documented diagnostic continuations per reading.
* :func:`sampled_readings`: seeded samples from the model, each classified by the reading it completes
  with a dependency parser.

:func:`reading_probabilities` runs either; :mod:`.summary` gives bootstrap summaries, the agreement of the two
estimators, and the efficacy of interventions (did they make the model commit?).

Names load on first use (as in :mod:`mechinterp`), so that importing one submodule, e.g.
:mod:`.continuations` from :mod:`mechinterp.interventions.learned`, does not import the estimators, which
themselves use the interventions package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_API: dict[str, str] = {
    "READING_COLUMNS": "mechinterp.readings.exact",
    "exact_readings": "mechinterp.readings.exact",
    "load_continuations": "mechinterp.readings.continuations",
    "reading_probabilities": "mechinterp.readings.api",
}

__all__ = ["READING_COLUMNS", "exact_readings", "load_continuations", "reading_probabilities"]

if TYPE_CHECKING:
    from mechinterp.readings.api import reading_probabilities as reading_probabilities
    from mechinterp.readings.continuations import load_continuations as load_continuations
    from mechinterp.readings.exact import READING_COLUMNS as READING_COLUMNS
    from mechinterp.readings.exact import exact_readings as exact_readings


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'mechinterp.readings' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Reading probabilities from behaviour: how likely the model finds each reading of an ambiguous prefix.

Two estimators, one table layout (one row per item x condition x reading):

* :func:`exact_readings`: the next-token mass of documented diagnostic continuations per reading.
* :func:`sampled_readings`: seeded samples from the model, each classified by the reading it completes
  with a dependency parser.

:func:`reading_probabilities` runs either; :mod:`.summary` gives bootstrap summaries, the agreement of the two
estimators, and the efficacy of interventions (did they make the model commit?).
"""

from mechinterp.readings.api import reading_probabilities
from mechinterp.readings.continuations import load_continuations
from mechinterp.readings.exact import READING_COLUMNS, exact_readings

__all__ = ["READING_COLUMNS", "exact_readings", "load_continuations", "reading_probabilities"]

"""Reading probes (Expose): which reading of an ambiguous sentence does the model hold, layer by layer?

* :mod:`.templates` writes varied unambiguous training sentences per construction (``data/lexicon.toml``);
  :mod:`.lexical` keeps them lexically disjoint from the suite under test; :mod:`.confounds` measures how much
  a shallow rule could read off their prefixes.
* :mod:`.labels`: the two readings of each construction (class 1 = the reading people prefer).
* :mod:`.train`: standardised logistic-regression probes, grouped cross-validation, control tasks, random
  directions; :mod:`.evaluate`: cluster-bootstrap intervals, selectivity.
* :mod:`.activations`: reading sites through :mod:`mechinterp.locate.sites`.
* :mod:`.pipeline`: one model x suite run -> tables + :class:`ProbeArtifact` s; :mod:`.readout`: the decision
  rule; :mod:`.figures`: plotly figures from the tables.

See ``mechinterp/probes/README.md``.
"""

from mechinterp.probes.artifact import ProbeArtifact
from mechinterp.probes.fit import fit_probe
from mechinterp.probes.labels import READINGS, label_of, readings
from mechinterp.probes.pipeline import ProbeResult, run_probes
from mechinterp.probes.readout import DecisionRule, decide
from mechinterp.probes.templates import TrainingSet, generate, supported_constructions
from mechinterp.probes.train import ProbeSettings

__all__ = [
    "DecisionRule", "ProbeArtifact", "ProbeResult", "ProbeSettings", "READINGS", "TrainingSet", "decide",
    "fit_probe", "generate", "label_of", "readings", "run_probes", "supported_constructions",
]

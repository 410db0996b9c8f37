"""mechinterp: a workbench for how language models hold the readings of temporarily ambiguous sentences.

The public API for notebooks (``import mechinterp as mi``); names load on first use, so ``import mechinterp``
stays fast::

    model = mi.load_model("gemma3-270m")          suite = mi.load_suite("npz").head(8)
    effects = mi.garden_path_effects(mi.suite_surprisal(model, suite), suite)
    table = mi.patch(model, suite, "resid_pre@*:region=ambiguous/last")
    probe = mi.fit_probe(X, y, groups=groups)     clamp = mi.fit_intervention(model, "clamp:layer=6,shift=1", suite)

Call ``help(mi.NAME)`` for any name in ``mi.__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None = the module itself
_API: dict[str, tuple[str, str | None]] = {
    "load_model": ("mechinterp.models.loaded", "load_model"),
    "Model": ("mechinterp.models.loaded", "Model"),
    "load_suite": ("mechinterp.stimuli.library", "load_suite"),
    "Suite": ("mechinterp.stimuli.types", "Suite"),
    "Site": ("mechinterp.locate.sites", "Site"),
    "RegionPos": ("mechinterp.locate.sites", "RegionPos"),
    "TokenPos": ("mechinterp.locate.sites", "TokenPos"),
    "parse_sites": ("mechinterp.locate.sites", "parse_sites"),
    "suite_surprisal": ("mechinterp.surprisal", "suite_surprisal"),
    "sentence_surprisal": ("mechinterp.surprisal", "sentence_surprisal"),
    "garden_path_effects": ("mechinterp.effects", "garden_path_effects"),
    "patch": ("mechinterp.locate.patching.pair", "patch"),
    "patch_pair": ("mechinterp.locate.patching.pair", "patch_pair"),
    "metrics": ("mechinterp.locate.patching.metrics", None),
    "suite_activations": ("mechinterp.interventions.labelled", "suite_activations"),
    "fit_probe": ("mechinterp.probes.fit", "fit_probe"),
    "ProbeArtifact": ("mechinterp.probes.artifact", "ProbeArtifact"),
    "fit_intervention": ("mechinterp.interventions.spec", "fit_intervention"),
    "reading_probabilities": ("mechinterp.readings.api", "reading_probabilities"),
    "compare_to_humans": ("mechinterp.compare.likeness", "compare"),
    "word_predictors": ("mechinterp.compare.predictors", "word_predictors"),
    "memory_ladder": ("mechinterp.compare.ladder", "memory_ladder"),
    "ladder_figure": ("mechinterp.compare.figures", "ladder_figure"),
    "Head": ("mechinterp.locate.attention", "Head"),
    "datasets": ("mechinterp.datasets", None),
}

__all__ = sorted(_API)

if TYPE_CHECKING:
    from mechinterp import datasets as datasets
    from mechinterp.compare.figures import ladder_figure as ladder_figure
    from mechinterp.compare.ladder import memory_ladder as memory_ladder
    from mechinterp.compare.likeness import compare as compare_to_humans  # noqa: F401
    from mechinterp.compare.predictors import word_predictors as word_predictors
    from mechinterp.effects import garden_path_effects as garden_path_effects
    from mechinterp.interventions.labelled import suite_activations as suite_activations
    from mechinterp.interventions.spec import fit_intervention as fit_intervention
    from mechinterp.locate.attention import Head as Head
    from mechinterp.locate.patching import metrics as metrics
    from mechinterp.locate.patching.pair import patch as patch
    from mechinterp.locate.patching.pair import patch_pair as patch_pair
    from mechinterp.locate.sites import RegionPos as RegionPos
    from mechinterp.locate.sites import Site as Site
    from mechinterp.locate.sites import TokenPos as TokenPos
    from mechinterp.locate.sites import parse_sites as parse_sites
    from mechinterp.models.loaded import Model as Model
    from mechinterp.models.loaded import load_model as load_model
    from mechinterp.probes.artifact import ProbeArtifact as ProbeArtifact
    from mechinterp.probes.fit import fit_probe as fit_probe
    from mechinterp.readings.api import reading_probabilities as reading_probabilities
    from mechinterp.stimuli.library import load_suite as load_suite
    from mechinterp.stimuli.types import Suite as Suite
    from mechinterp.surprisal import sentence_surprisal as sentence_surprisal
    from mechinterp.surprisal import suite_surprisal as suite_surprisal


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562) and keep it in the module's namespace."""
    if name not in _API:
        raise AttributeError(f"module 'mechinterp' has no attribute {name!r}")
    module, attr = _API[name]
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

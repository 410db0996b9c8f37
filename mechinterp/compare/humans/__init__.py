"""Human reading data: the SAP Benchmark's published garden-path effects (built in), loaders for its effect
tables and trial-level data, and the Natural Stories corpus (for fitting the surprisal-to-ms link)."""

from mechinterp.compare.humans.naturalstories import (
    NaturalStories,
    load_natural_stories,
)
from mechinterp.compare.humans.sap import (
    CITATION,
    EFFECT_COLUMNS,
    construction_of_coef,
    human_subset,
    load_sap_effects,
    load_sap_trials,
    named_subset,
    noise_ceiling,
    published_effects,
    read_effect_table,
    trial_effects,
)

__all__ = [
    "CITATION", "EFFECT_COLUMNS", "NaturalStories", "construction_of_coef", "human_subset", "load_natural_stories",
    "load_sap_effects", "load_sap_trials", "named_subset", "noise_ceiling", "published_effects", "read_effect_table",
    "trial_effects",
]

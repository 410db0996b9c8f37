"""Human reading data: the SAP Benchmark's published garden-path effects (built in), loaders for its effect
tables and trial-level data, and the Natural Stories corpus (for fitting the surprisal-to-ms link)."""

from mechinterp.compare.humans.naturalstories import (
    NaturalStories,
    load_natural_stories,
)
from mechinterp.compare.humans.sap import (
    CITATION,
    EFFECT_COLUMNS,
    SAP_CONTRASTS,
    SapContrast,
    construction_of_coef,
    human_subset,
    item_file_construction,
    load_sap_effects,
    load_sap_trials,
    named_subset,
    noise_ceiling,
    published_effects,
    read_effect_table,
    sap_contrast_suite,
    trial_effects,
)

__all__ = [
    "CITATION", "EFFECT_COLUMNS", "NaturalStories", "SAP_CONTRASTS", "SapContrast", "construction_of_coef",
    "human_subset", "item_file_construction", "load_natural_stories", "load_sap_effects", "load_sap_trials",
    "named_subset", "noise_ceiling", "published_effects", "read_effect_table", "sap_contrast_suite", "trial_effects",
]

"""Interventions that remove one reading of a temporarily ambiguous sentence, and a memory-limited control.

* :mod:`.erasure` — LEACE erasure of a labelled concept at chosen sites (EleutherAI concept-erasure);
* :mod:`.clamp` — clamp the projection onto a (probe) direction to a value typical of one reading;
* :mod:`.sae_clamp` — ablate or clamp the SAE features of one reading, keeping the SAE error term;
* :mod:`.truncation` — every word scored with only the last k tokens as context (Kuribayashi et al. 2022);
* :mod:`.learned` — a steering vector or subspace edit trained with gradients to commit the model to the
  preferred reading within a KL budget on held-out text; :mod:`.dose` — its dose-response over budgets;
* :mod:`.compose` — composition and scoring under interventions; :mod:`.base` — scopes and the hook context
  manager; :mod:`.labelled` — labelled activations to fit on; :mod:`.spec` — specs and building;
  :mod:`.collapse` — effects and side effects under each intervention.

Hook interventions work on every backend (plain HF, TransformerLens bridge, nnsight): they are torch hooks on
the shared HF modules (:mod:`mechinterp.locate.hooks`), removed when the ``with`` block ends, also on error.
"""

from mechinterp.interventions.base import (
    AllPositions,
    Intervention,
    SiteEdit,
    TokenTable,
    apply_interventions,
    positions_of,
)
from mechinterp.interventions.clamp import ProbeClamp, clamp_from_probe, fit_clamp
from mechinterp.interventions.compose import (
    Composite,
    compose,
    intervene,
    sentence_surprisal_under,
    suite_surprisal_under,
)
from mechinterp.interventions.erasure import Erasure, fit_erasure
from mechinterp.interventions.labelled import Labelled, suite_activations
from mechinterp.interventions.learned import LearnedIntervention, LearnedTraining, fit_learned
from mechinterp.interventions.sae_clamp import (
    SAEFeatureEdit,
    fit_sae_edit,
    select_features,
)
from mechinterp.interventions.spec import InterventionSpec, build, build_all, fit_intervention, parse_spec
from mechinterp.interventions.truncation import (
    Truncation,
    truncated_sentence_surprisal,
    truncated_suite_surprisal,
)

__all__ = [
    "AllPositions", "Composite", "Erasure", "Intervention", "InterventionSpec", "Labelled", "LearnedIntervention",
    "LearnedTraining", "ProbeClamp", "SAEFeatureEdit", "SiteEdit", "TokenTable", "Truncation", "apply_interventions",
    "build", "build_all", "clamp_from_probe", "compose", "fit_clamp", "fit_erasure", "fit_intervention",
    "fit_learned", "fit_sae_edit", "intervene", "parse_spec", "positions_of", "select_features",
    "sentence_surprisal_under", "suite_activations", "suite_surprisal_under", "truncated_sentence_surprisal",
    "truncated_suite_surprisal",
]

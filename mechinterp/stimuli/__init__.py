"""Stimuli: typed suites of items whose conditions are split into regions, with ambiguity annotations."""

from mechinterp.stimuli.constructions import CONSTRUCTIONS, canonical_construction
from mechinterp.stimuli.library import builtin_suites, load_suite
from mechinterp.stimuli.sap import read_sap
from mechinterp.stimuli.syntaxgym import (
    read_syntaxgym,
    suite_from_dict,
    suite_to_dict,
    write_syntaxgym,
)
from mechinterp.stimuli.types import (
    Ambiguity,
    Condition,
    Item,
    Prediction,
    Region,
    Suite,
    Word,
)
from mechinterp.stimuli.validate import validate_suite

__all__ = [
    "Ambiguity", "CONSTRUCTIONS", "Condition", "Item", "Prediction", "Region", "Suite", "Word",
    "builtin_suites", "canonical_construction", "load_suite", "read_sap", "read_syntaxgym",
    "suite_from_dict", "suite_to_dict", "validate_suite", "write_syntaxgym",
]

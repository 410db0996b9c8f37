"""Library side of the Streamlit explorer (``apps/explorer.py``): turning typed input into a suite
(:mod:`.inputs`), finding results already written (:mod:`.results`), small on-demand computations for one
item (:mod:`.compute`) and the Streamlit widgets the pages share (:mod:`.ui`, imported only by the app)."""

from mechinterp.explore.inputs import (
           CONSTRUCTIONS,
           MAX_CHARS,
           MAX_WORDS,
           check_text,
           custom_suite,
           find_item,
           one_item,
)
from mechinterp.explore.results import Catalogue, ResultTable, scan

__all__ = ["CONSTRUCTIONS", "Catalogue", "MAX_CHARS", "MAX_WORDS", "ResultTable", "check_text", "custom_suite",
           "find_item", "one_item", "scan"]

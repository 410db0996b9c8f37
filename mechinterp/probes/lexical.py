"""Content words, for keeping probe training sentences lexically disjoint from the stimuli under test.

Words are compared by Porter stem (nltk, which sae-lens already requires), so "hunted" matches "hunts" and
"hunting". Function words (determiners, pronouns, prepositions, conjunctions, auxiliaries, complementizers)
are not content words: they are shared by all sentences by design.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

from nltk.stem.porter import PorterStemmer

FUNCTION_WORDS = frozenset(
    """
    a an the this that these those my your his her its our their some any every each no all both another other
    i you he she it we they me him us them myself himself herself themselves one ones someone everyone
    and or but so nor yet if because although though while when whenever after before as once since until
    unless whether than then there here where what who whom whose which why how
    of in on at by for with about against between into through during to from up down out off over under
    again further near past across along around behind beyond toward towards onto upon within without
    be is am are was were been being have has had having do does did doing will would shall should can could
    may might must not very too just also only still even now ever never always often soon later today
    """.split()
)

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_stemmer = PorterStemmer()


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return _stemmer.stem(word.lower().strip("'-"))


def content_words(text: str) -> tuple[str, ...]:
    """Stems of the content words of ``text`` (in order, with repeats)."""
    return tuple(stem(w) for w in _WORD.findall(text) if w.lower() not in FUNCTION_WORDS)


def suite_content_words(suite) -> set[str]:
    """Stems of every content word in every condition of ``suite``, plus its items' ``lexical`` entries."""
    out: set[str] = set()
    for item in suite.items:
        for cond in item.conditions:
            out.update(content_words(cond.text))
        for value in item.lexical.values():
            out.update(content_words(str(value)))
    return out


def shared_words(texts: Iterable[str], words: set[str]) -> set[str]:
    found: set[str] = set()
    for t in texts:
        found.update(set(content_words(t)) & words)
    return found

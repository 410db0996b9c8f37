"""Where readings are read: for each item and condition, the prefix up to the disambiguating region and the
two readings of the item's construction (which one people prefer).

The prefix ends at the last token before the suite's disambiguating region, i.e. the point from which the
model predicts the disambiguating word. For NP/Z, NP/S and lexical-category items that is the end of the
ambiguous region; for MV/RR it is the end of the material after the ambiguous verb, which is still compatible
with both readings. Token positions come from :mod:`mechinterp.tokenization`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from mechinterp.errors import SuiteError
from mechinterp.stimuli.constructions import CONSTRUCTIONS
from mechinterp.tokenization import tokenize_condition

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Condition, Item, Suite


@dataclass(frozen=True)
class ReadingTarget:
    """One item and condition, cut before its disambiguating region.

    Attributes:
        construction, item, condition: which stimulus.
        ambiguous: whether the condition is the temporarily ambiguous one.
        prefix: the sentence up to the disambiguating region.
        prefix_ids: its token ids (BOS first).
        full_ids: the token ids of the whole condition (how interventions scoped to the suite know it).
        disambiguator: the first word of the disambiguating region.
        preferred, dispreferred: the construction's readings (people prefer the first).
        unambiguous_prefix: the prefix of the same item's unambiguous condition (its structure fixes the
            dispreferred reading; the sampled estimator's classifier parses in it).
        ambiguous_prefix: the prefix of the same item's ambiguous condition (the classifier's other frame;
            empty if the item has none).
    """

    construction: str
    item: int
    condition: str
    ambiguous: bool
    prefix: str
    prefix_ids: tuple[int, ...]
    full_ids: tuple[int, ...]
    disambiguator: str
    preferred: str
    dispreferred: str
    unambiguous_prefix: str
    ambiguous_prefix: str = ""


def readings_of(suite: "Suite", item: "Item") -> tuple[str, str]:
    """(preferred, dispreferred) reading names of an item's construction."""
    cons = suite.construction_of(item)
    amb = suite.ambiguity
    if amb is not None and amb.readings and amb.preferred_reading and cons == amb.construction:
        names, pref = list(amb.readings), amb.preferred_reading
    elif cons in CONSTRUCTIONS:
        names, pref = list(CONSTRUCTIONS[cons].readings), CONSTRUCTIONS[cons].preferred_reading
    else:
        raise SuiteError(f"suite {suite.name!r}: construction {cons!r} of item {item.key} has no known readings")
    other = [n for n in names if n != pref]
    return pref, other[0]


def _prefix(model: "Model", cond: "Condition", region: int) -> tuple[str, tuple[int, ...], tuple[int, ...], str]:
    tt = tokenize_condition(model, cond)
    start = tt.tokens_of_region(region).start
    words = cond.region_words(region)
    if not words:
        raise SuiteError(f"condition {cond.name!r} ({cond.text!r}) has an empty disambiguating region")
    return cond.text[: words[0].start].rstrip(), tuple(tt.input_ids[:start]), tuple(tt.input_ids), words[0].text


def reading_targets(model: "Model", suite: "Suite") -> Iterator[ReadingTarget]:
    """Every item and condition of ``suite`` as a :class:`ReadingTarget`.

    Args:
        model: gives the tokenizer and BOS token.
        suite: a suite with an ``ambiguity`` annotation (which region disambiguates).

    Returns:
        An iterator of targets in suite order (items, then conditions).
    """
    amb = suite.ambiguity
    if amb is None:
        raise SuiteError(f"suite {suite.name!r} has no ambiguity annotation: no disambiguating region to read at")
    region = amb.disambiguating_region
    for it in suite.items:
        pref, dispref = readings_of(suite, it)
        unamb = next((c for c in it.conditions if c.name == amb.unambiguous_condition), None)
        unamb_prefix = _prefix(model, unamb, region)[0] if unamb is not None else ""
        amb_cond = next((c for c in it.conditions if c.name == amb.ambiguous_condition), None)
        amb_prefix = _prefix(model, amb_cond, region)[0] if amb_cond is not None else ""
        for c in it.conditions:
            text, ids, full, dis = _prefix(model, c, region)
            yield ReadingTarget(
                construction=suite.construction_of(it), item=it.number, condition=c.name,
                ambiguous=bool(c.ambiguous) if c.ambiguous is not None else c.name == amb.ambiguous_condition,
                prefix=text, prefix_ids=ids, full_ids=full, disambiguator=dis, preferred=pref, dispreferred=dispref,
                unambiguous_prefix=unamb_prefix, ambiguous_prefix=amb_prefix,
            )

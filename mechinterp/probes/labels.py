"""Reading labels: each construction's two readings, which one is class 1, and how they line up across
constructions.

Class 1 is always the reading people prefer (the first-pass analysis: ``object``, ``direct_object``,
``main_verb``, ``noun``); class 0 is the other one (the garden-path sentence's true reading). A probe's
probability is therefore "P(preferred reading)". Reading names are those of
:data:`mechinterp.stimuli.constructions.CONSTRUCTIONS`.

Transfer across constructions uses the same convention (class 1 = preferred). For NP/Z and NP/S this is also
a structural match (NP = object of the preceding verb vs subject of a following clause); for MV/RR and LEX it
is a match by preference only, and reports say so (:data:`STRUCTURAL_MATCH`).
"""

from __future__ import annotations

from mechinterp.errors import ConfigError
from mechinterp.stimuli.constructions import CONSTRUCTIONS, canonical_construction

READINGS: dict[str, tuple[str, str]] = {
    name: (info.preferred_reading, next(r for r in info.readings if r != info.preferred_reading))
    for name, info in CONSTRUCTIONS.items()
}
"""(preferred reading = class 1, other reading = class 0) per canonical construction name."""

STRUCTURAL_MATCH: frozenset[frozenset[str]] = frozenset({frozenset({"NP/Z", "NP/S"})})
"""Pairs of constructions whose class-1 readings are the same structure (used to label transfer rows)."""


def canonical(construction: str) -> str:
    return canonical_construction(construction)


def readings(construction: str) -> tuple[str, str]:
    name = canonical(construction)
    if name not in READINGS:
        raise ConfigError(f"unknown construction {construction!r} (known: {', '.join(READINGS)})")
    return READINGS[name]


def label_of(construction: str, reading: str) -> int:
    """1 for the preferred reading of ``construction``, 0 for the other one."""
    pref, other = readings(construction)
    if reading == pref:
        return 1
    if reading == other:
        return 0
    raise ConfigError(f"{reading!r} is not a reading of {construction} (readings: {pref}, {other})")


def preferred(construction: str) -> str:
    return readings(construction)[0]


def transfer_kind(source: str, target: str) -> str:
    """'same', 'structural' (class 1 means the same structure) or 'preference' (class 1 = preferred only)."""
    a, b = canonical(source), canonical(target)
    if a == b:
        return "same"
    return "structural" if frozenset({a, b}) in STRUCTURAL_MATCH else "preference"

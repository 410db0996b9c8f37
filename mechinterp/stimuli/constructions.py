"""The constructions the workbench knows by name: their two readings and which one people prefer.

Used to annotate suites that do not carry their own ``ambiguity`` block (the SAP Benchmark CSV format).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConstructionInfo:
    name: str
    readings: dict[str, str]
    preferred_reading: str
    true_reading: str  # the reading a garden-path sentence turns out to have
    aliases: tuple[str, ...] = ()


CONSTRUCTIONS: dict[str, ConstructionInfo] = {
    c.name: c
    for c in (
        ConstructionInfo(
            "MV/RR",
            {
                "main_verb": "the ambiguous verb is the main verb of the sentence",
                "reduced_relative": "the ambiguous verb heads a reduced relative clause modifying the subject",
            },
            "main_verb",
            "reduced_relative",
            ("MVRR",),
        ),
        ConstructionInfo(
            "NP/S",
            {
                "direct_object": "the noun phrase is the direct object of the matrix verb",
                "complement_subject": "the noun phrase is the subject of a sentential complement",
            },
            "direct_object",
            "complement_subject",
            ("NPS",),
        ),
        ConstructionInfo(
            "NP/Z",
            {
                "object": "the noun phrase is the direct object of the subordinate verb",
                "subject": "the noun phrase is the subject of the main clause",
            },
            "object",
            "subject",
            ("NPZ",),
        ),
        ConstructionInfo(
            "LEX",
            {
                "noun": "the ambiguous word is a noun (head of the subject noun phrase)",
                "verb": "the ambiguous word is the main verb",
            },
            "noun",
            "verb",
            ("LEXCAT", "NV"),
        ),
    )
}


def canonical_construction(label: str) -> str:
    """Map 'NPZ', 'NP/Z', 'npz' ... to the canonical name; unknown labels are returned unchanged."""
    key = label.strip().upper().replace("-", "/")
    for name, info in CONSTRUCTIONS.items():
        if key == name or key.replace("/", "") in info.aliases or key == name.replace("/", ""):
            return name
    return label

"""The diagnostic continuation sets of each construction and reading, read from an editable TOML file.

The shipped file is ``mechinterp/readings/data/continuations.toml``; it documents why each continuation
diagnoses its reading. :func:`load_continuations` reads it (or another file in the same layout) and
:func:`token_sets` turns one construction's sets into token sequences for a model's tokenizer, dropping the
item's own disambiguating word.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from mechinterp.errors import ConfigError


@dataclass(frozen=True)
class ReadingSet:
    """The continuations that diagnose one reading of one construction.

    Attributes:
        reading: the reading's name (as in the suite's ``ambiguity.readings``).
        continuations: continuation strings, each with the whitespace that precedes it.
        why: why these continuations are diagnostic.
    """

    reading: str
    continuations: tuple[str, ...]
    why: str = ""


Continuations = Mapping[str, Mapping[str, ReadingSet]]  # construction -> reading -> set


def default_path() -> Path:
    """The continuation file shipped with the package."""
    return Path(str(resources.files("mechinterp.readings") / "data" / "continuations.toml"))


def load_continuations(path: str | Path | None = None) -> dict[str, dict[str, ReadingSet]]:
    """Read a continuation file.

    Args:
        path: a TOML file in the layout of the shipped one; None for the shipped file.

    Returns:
        construction -> reading -> :class:`ReadingSet`.

    Example:
        >>> sets = load_continuations()
        >>> " was" in sets["NP/Z"]["subject"].continuations
        True
    """
    p = Path(path) if path is not None else default_path()
    try:
        data: dict[str, Any] = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"continuation file {p} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"continuation file {p} is not valid TOML: {exc}") from exc
    out: dict[str, dict[str, ReadingSet]] = {}
    for cons, block in (data.get("construction") or {}).items():
        readings = block.get("readings") or {}
        if len(readings) != 2:
            raise ConfigError(f"{p}: construction {cons!r} needs exactly two readings, got {sorted(readings)}")
        out[cons] = {}
        for name, r in readings.items():
            conts = tuple(str(c) for c in r.get("continuations", ()))
            if not conts:
                raise ConfigError(f"{p}: reading {name!r} of {cons!r} has no continuations")
            out[cons][name] = ReadingSet(name, conts, str(r.get("why", "")).strip())
    if not out:
        raise ConfigError(f"{p} defines no construction (expected [construction.NAME.readings.READING] tables)")
    return out


def _word(s: str) -> str:
    """The first word of ``s``, lower-cased, without punctuation around it."""
    parts = s.split()
    return parts[0].strip(",.;:!?").lower() if parts else s.strip()


def token_sets(tokenizer: Any, sets: Mapping[str, ReadingSet], exclude: str | None = None
               ) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """Tokenize one construction's continuation sets.

    Args:
        tokenizer: a Hugging Face tokenizer (continuations are tokenized without special tokens).
        sets: reading -> :class:`ReadingSet` for one construction.
        exclude: the item's disambiguating word; continuations that begin with this word (ignoring case and
            punctuation) are left out.

    Returns:
        reading -> list of (continuation, token ids). Within a reading, a continuation whose tokens begin
        with another continuation's tokens is dropped (it is already counted).

    Raises:
        ConfigError: if the same token sequence diagnoses both readings.
    """
    ex = _word(exclude) if exclude else None
    out: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for reading, rs in sets.items():
        toks = []
        for c in rs.continuations:
            if ex and _word(c) == ex:
                continue
            ids = tuple(int(i) for i in tokenizer(c, add_special_tokens=False)["input_ids"])
            if ids:
                toks.append((c, ids))
        toks.sort(key=lambda x: len(x[1]))
        kept: list[tuple[str, tuple[int, ...]]] = []
        for c, ids in toks:
            if not any(ids[: len(k)] == k for _, k in kept):
                kept.append((c, ids))
        out[reading] = kept
    seen: dict[tuple[int, ...], str] = {}
    for reading, toks in out.items():
        for c, ids in toks:
            if ids in seen and seen[ids] != reading:
                raise ConfigError(f"continuation {c!r} diagnoses both {seen[ids]!r} and {reading!r}")
            seen[ids] = reading
    return out

"""The stimulus model: Suite -> Item -> Condition -> Region, with ambiguity annotations.

This is SyntaxGym's test-suite structure (meta, region_meta, predictions, items/conditions/regions) plus:

* ``Suite.ambiguity``: the construction, its two readings (which one people prefer), and which region holds
  the ambiguous material, which disambiguates, and which holds the cue that removes the ambiguity.
* ``Condition.ambiguous`` / ``Condition.reading``: whether a condition is temporarily ambiguous, and which
  reading the whole sentence finally supports.
* ``Item.provenance`` (novel vs classic item), ``Item.lexical`` (content words, for grouping items that share
  lexical material in cross-validation) and ``Item.construction`` (for suites that mix constructions, such as
  the SAP Benchmark's ClassicGP set).

How regions become a sentence is the condition's **spacing** convention (:data:`SPACINGS`), a property of
the input format that the reader sets once for every condition of a suite (see :func:`spacing_for`):

* ``"syntaxgym"`` (SyntaxGym JSON suites, as SyntaxGym itself reads them): the sentence is the non-empty
  regions joined by single spaces, whatever they start with: regions ``hunted`` + ``,`` + ``the deer`` read
  "hunted , the deer". Every region therefore starts a new word, so words and regions never disagree, and a
  region that is only punctuation (``.``) is a word of its own and gets that punctuation's surprisal.
* ``"attach"`` (the built-in suites, SAP Benchmark CSVs, and spreadsheets unless their sidecar says
  otherwise): as above, except that a region starting with punctuation (``, . ; : ! ?``) attaches to the
  previous one with no space: "hunted, the deer". Such a region starts mid-word; the **word wins**: the
  word "hunted," belongs to the region it starts in, so a punctuation-only region holds no word and scores
  as empty (0 bits), and its punctuation counts for the previous region.

Region contents are whitespace-normalized (runs of whitespace become one space, ends stripped). Words are the
whitespace-separated pieces of the sentence, numbered from 0; each word belongs to the region in which it
starts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mechinterp.errors import RegionError, SuiteError

PUNCT_ATTACH = (",", ".", ";", ":", "!", "?")

Spacing = Literal["syntaxgym", "attach"]
SPACINGS: tuple[str, ...] = ("syntaxgym", "attach")

#: The spacing each input format uses when the file does not say (a SyntaxGym JSON or spreadsheet sidecar
#: may set ``meta.spacing``). The one place where a format's convention is chosen.
FORMAT_SPACING: dict[str, Spacing] = {"syntaxgym-json": "syntaxgym", "sap-csv": "attach", "table": "attach"}


def spacing_for(fmt: str, declared: object = None) -> Spacing:
    """The spacing convention of a suite read from format ``fmt``.

    Args:
        fmt: A key of :data:`FORMAT_SPACING` (``"syntaxgym-json"``, ``"sap-csv"``, ``"table"``).
        declared: The value the file itself declares (``meta.spacing``), or None.

    Returns:
        ``declared`` if given, else the format's default.

    Raises:
        SuiteError: ``declared`` is not one of :data:`SPACINGS`.

    Example:
        >>> spacing_for("syntaxgym-json"), spacing_for("syntaxgym-json", "attach")
        ('syntaxgym', 'attach')
    """
    if declared is None:
        return FORMAT_SPACING[fmt]
    if declared not in SPACINGS:
        raise SuiteError(f"meta.spacing is {declared!r}; it must be one of {', '.join(SPACINGS)}")
    return declared  # pyright: ignore[reportReturnType]  # checked against SPACINGS just above


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Region(_Frozen):
    number: int = Field(ge=1)
    content: str

    @field_validator("content")
    @classmethod
    def _clean(cls, v: str) -> str:
        return " ".join(v.split())


@dataclass(frozen=True)
class Word:
    """One whitespace-delimited word of a condition's sentence; ``start``/``end`` are character offsets."""

    index: int
    text: str
    start: int
    end: int
    region: int


class Condition(_Frozen):
    name: str
    regions: tuple[Region, ...]
    ambiguous: bool | None = None
    reading: str | None = None
    spacing: Spacing = Field(default="attach", exclude=True)

    model_config = ConfigDict(frozen=True, extra="forbid", ignored_types=(cached_property,))

    @cached_property
    def _layout(self) -> tuple[str, dict[int, tuple[int, int]]]:
        text = ""
        spans: dict[int, tuple[int, int]] = {}
        for r in self.regions:
            if not r.content:
                spans[r.number] = (len(text), len(text))
                continue
            if text and (self.spacing == "syntaxgym" or not r.content.startswith(PUNCT_ATTACH)):
                text += " "
            start = len(text)
            text += r.content
            spans[r.number] = (start, len(text))
        return text, spans

    @property
    def text(self) -> str:
        return self._layout[0]

    @property
    def region_spans(self) -> dict[int, tuple[int, int]]:
        """Character span of each region in :attr:`text` (empty regions have start == end)."""
        return self._layout[1]

    @cached_property
    def words(self) -> tuple[Word, ...]:
        text, spans = self._layout
        out: list[Word] = []
        pos = 0
        for i, w in enumerate(text.split()):
            start = text.index(w, pos)
            end = start + len(w)
            pos = end
            region = next(
                (n for n, (a, b) in spans.items() if a <= start < b),
                self.regions[-1].number,
            )
            out.append(Word(i, w, start, end, region))
        return tuple(out)

    def region(self, number: int) -> Region:
        for r in self.regions:
            if r.number == number:
                return r
        raise KeyError(number)

    def region_words(self, number: int) -> tuple[Word, ...]:
        """The words that start in region ``number`` (empty for an empty region)."""
        a, b = self.region_spans[number]
        return tuple(w for w in self.words if a <= w.start < b)


class Item(_Frozen):
    number: int
    conditions: tuple[Condition, ...]
    construction: str | None = None
    provenance: str | None = None
    lexical: dict[str, str] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)

    def condition(self, name: str) -> Condition:
        for c in self.conditions:
            if c.name == name:
                return c
        names = ", ".join(c.name for c in self.conditions)
        raise KeyError(f"item {self.number} has no condition {name!r} (it has {names})")

    @property
    def key(self) -> str:
        """A unique label: the item number, prefixed by the construction for mixed suites."""
        return f"{self.construction}:{self.number}" if self.construction else str(self.number)


class Ambiguity(_Frozen):
    """What is ambiguous in a suite, and where."""

    construction: str
    readings: dict[str, str] = Field(default_factory=dict)
    preferred_reading: str | None = None
    ambiguous_region: int | None = None
    disambiguating_region: int
    cue_region: int | None = None
    ambiguous_condition: str = "ambiguous"
    unambiguous_condition: str = "unambiguous"


class Prediction(_Frozen):
    type: Literal["formula"] = "formula"
    formula: str


class Suite(_Frozen):
    """A test suite: items, each with conditions split into regions, and the ambiguity annotation (frozen).

    Take subsets with :meth:`head` (the first ``n`` items) and :meth:`select` (constructions and/or item keys),
    the two versions of an item with :meth:`pair`. Suites are read with :func:`mechinterp.stimuli.load_suite`
    rather than built by hand.

    Args:
        name: The suite's name.
        meta: SyntaxGym ``meta`` (``spacing`` among others).
        region_meta: Region number -> region name.
        predictions: SyntaxGym prediction formulas.
        items: The items.
        ambiguity: The ambiguity annotation (construction, readings, ambiguous / disambiguating / cue regions).
        source: Where the suite was read from (not part of its hash).

    Example:
        >>> import mechinterp as mi
        >>> suite = mi.load_suite("npz").head(8)
        >>> isinstance(suite, mi.Suite)
        True
        >>> ambiguous, unambiguous = suite.pair(suite.items[0])
        >>> unambiguous.text
        'While the man hunted, the deer ran into the thick woods.'
        >>> len(suite.select(items=[1, 2]).items)
        2
    """

    name: str
    meta: dict[str, Any] = Field(default_factory=dict)
    region_meta: dict[int, str] = Field(default_factory=dict)
    predictions: tuple[Prediction, ...] = ()
    items: tuple[Item, ...]
    ambiguity: Ambiguity | None = None
    source: str | None = Field(default=None, exclude=True)

    model_config = ConfigDict(frozen=True, extra="forbid", ignored_types=(cached_property,))

    @cached_property
    def sha256(self) -> str:
        """Content hash of the suite (independent of where it was read from)."""
        payload = self.model_dump(mode="json", exclude={"source"})
        if self.spacing != "attach":  # suites read before spacing existed keep their hash
            payload["spacing"] = self.spacing
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    @property
    def spacing(self) -> Spacing:
        """The spacing convention of the suite's conditions (``"attach"`` for a suite with none)."""
        for it in self.items:
            for c in it.conditions:
                return c.spacing
        return "attach"

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "source": self.source, "n_items": len(self.items)}

    @property
    def constructions(self) -> list[str]:
        seen: dict[str, None] = {}
        for it in self.items:
            seen[self.construction_of(it)] = None
        return list(seen)

    def construction_of(self, item: Item) -> str:
        if item.construction:
            return item.construction
        if self.ambiguity:
            return self.ambiguity.construction
        return self.name

    def with_items(self, items: Sequence[Item]) -> "Suite":
        """This suite with ``items`` instead of its own (everything else kept; the content hash recomputed)."""
        out = self.model_copy(update={"items": tuple(items)})
        out.__dict__.pop("sha256", None)  # cached for the old items
        return out

    def head(self, n: int | None) -> "Suite":
        """The suite with only its first ``n`` items (all of them when ``n`` is None).

        Example:
            ``load_suite("npz").head(3)``
        """
        if n is None:
            return self
        if n < 0:
            raise SuiteError(f"head needs n >= 0, got {n}")
        return self.with_items(self.items[:n])

    def select(self, constructions: Iterable[str] | None = None, items: Iterable[int | str] | None = None) -> "Suite":
        """The items of some constructions and/or with some keys (item numbers, or ``Item.key`` labels such as
        ``"NP/Z:3"`` in mixed suites), in the suite's order. SuiteError if a name or key matches nothing.

        Example:
            ``suite.select(constructions=["NP/Z"], items=[1, 2])``
        """
        chosen = list(self.items)
        if constructions is not None:
            wanted = set(constructions)
            unknown = wanted - set(self.constructions)
            if unknown:
                raise SuiteError(f"suite {self.name!r} has no construction {', '.join(sorted(unknown))} "
                                 f"(it has {', '.join(self.constructions)})")
            chosen = [it for it in chosen if self.construction_of(it) in wanted]
        if items is not None:
            keys = {str(k) for k in items}
            chosen = [it for it in chosen if it.key in keys or str(it.number) in keys]
            found = {it.key for it in chosen} | {str(it.number) for it in chosen}
            missing = keys - found
            if missing:
                raise SuiteError(f"suite {self.name!r} has no item {', '.join(sorted(missing))}")
        return self.with_items(chosen)

    def pair(self, item: Item) -> tuple[Condition, Condition]:
        """The two versions of ``item``: (ambiguous, unambiguous) = (corrupt, clean) in patching's terms."""
        if self.ambiguity is None:
            raise SuiteError(f"suite {self.name!r} has no ambiguity annotation: it names no ambiguous/unambiguous pair")
        amb = self.ambiguity
        return item.condition(amb.ambiguous_condition), item.condition(amb.unambiguous_condition)

    def item(self, key: int | str) -> Item:
        for it in self.items:
            if it.key == str(key) or (isinstance(key, int) and it.number == key and not it.construction):
                return it
        raise KeyError(f"suite {self.name!r} has no item {key!r}")

    def region_number(self, name_or_number: int | str) -> int:
        """Resolve a region given by number or by its ``region_meta`` name (or a role: 'ambiguous',
        'disambiguating', 'cue')."""
        if isinstance(name_or_number, int) or str(name_or_number).isdigit():
            return int(name_or_number)
        key = str(name_or_number)
        if self.ambiguity is not None:
            roles = {
                "ambiguous": self.ambiguity.ambiguous_region,
                "disambiguating": self.ambiguity.disambiguating_region,
                "cue": self.ambiguity.cue_region,
            }
            if key in roles and roles[key] is not None:
                return int(roles[key])
        for n, name in self.region_meta.items():
            if name == key:
                return int(n)
        known = ", ".join(f"{n}={v}" for n, v in sorted(self.region_meta.items()))
        raise RegionError(f"suite {self.name!r} has no region {key!r} (regions: {known})")

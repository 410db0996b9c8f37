"""What every activation-editing intervention shares: the positions it acts on (a :class:`Scope`), one edit
per activation site, and the context manager that applies them on any backend.

Positions. A forward pass only sees token ids, not which stimulus they came from, so a scope decides from the
ids. :class:`AllPositions` edits every token but BOS. :class:`TokenTable` knows the token sequences of a suite
and, for each, the positions to edit (for instance the two words before the disambiguating word); rows it
does not know (free text, truncated windows) are edited everywhere, nowhere, or refused (``unknown=``). A
pre-hook on the token embedding reads the ids of each forward pass and computes every scope's mask once;
the site hooks (``mechinterp.locate.hooks.write_site``, which fire whichever backend runs: plain HF,
TransformerLens bridge or nnsight) apply their edit at the masked positions only. Right- and left-padded
batches both work: a row matches a known sequence when the sequence sits at either end of the row and the
rest is padding.

Every hook is removed when the ``with`` block ends, also when the forward pass raised.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Literal, Mapping, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mechinterp.errors import ConfigError, RegionError
from mechinterp.locate.hooks import embedding, forward_pre_hook, write_site
from mechinterp.tokenization import tokenize_condition

if TYPE_CHECKING:
    from mechinterp.locate.sites import Site
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite
    from mechinterp.tokenization import TokenizedText

Where = Literal["pre_disambiguator", "ambiguous_region", "prefix"]
Unknown = Literal["all", "none", "error"]
Conditions = Literal["all", "ambiguous", "unambiguous"]


class Scope:
    """Which token positions of each row an edit applies to."""

    def mask(self, input_ids: Int[Tensor, "batch seq"]) -> Bool[Tensor, "batch seq"]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class AllPositions(Scope):
    """Every position except the beginning-of-text token (whose activations are outliers in many models)."""

    bos_token_id: int

    def mask(self, input_ids: Tensor) -> Tensor:
        return input_ids != self.bos_token_id

    def describe(self) -> dict[str, Any]:
        return {"scope": "all", "excludes": "BOS"}


def positions_of(tt: "TokenizedText", suite: "Suite", where: Where, n_words: int = 2) -> list[int]:
    """Token positions of one tokenized condition that a scope of kind ``where`` selects:

    * ``pre_disambiguator``: the tokens of the ``n_words`` words just before the disambiguating region (for
      the SAP items and the built-in suites, the ambiguous noun phrase or the end of the ambiguous clause);
    * ``ambiguous_region``: the tokens of the suite's annotated ambiguous region;
    * ``prefix``: every token after BOS and before the disambiguating region."""
    amb = suite.ambiguity
    if amb is None:
        raise ConfigError(f"suite {suite.name!r} has no ambiguity annotation: cannot place an intervention")
    if where == "ambiguous_region":
        if amb.ambiguous_region is None:
            raise ConfigError(f"suite {suite.name!r} does not annotate an ambiguous region; use where='pre_disambiguator'")
        return list(tt.tokens_of_region(amb.ambiguous_region))
    dis = tt.tokens_of_region(amb.disambiguating_region)
    if len(dis) == 0:
        raise RegionError(f"the disambiguating region of {tt.text!r} is empty")
    first_dis = dis[0]
    if where == "prefix":
        return list(range(1, first_dis))
    if where == "pre_disambiguator":
        if n_words < 1:
            raise ConfigError(f"n_words must be at least 1, got {n_words}")
        before = [w for w, (a, _) in enumerate(tt.word_spans) if a < first_dis]
        if not before:
            raise RegionError(f"no word precedes the disambiguating region in {tt.text!r}")
        words = before[-n_words:]
        return list(range(tt.word_spans[words[0]][0], tt.word_spans[words[-1]][1]))
    raise ConfigError(f"unknown scope {where!r}: choose pre_disambiguator, ambiguous_region or prefix")


@dataclass(frozen=True, eq=False)
class TokenTable(Scope):
    """Positions to edit for each known token sequence (BOS included), looked up from the ids of each row."""

    table: Mapping[tuple[int, ...], frozenset[int]]
    pad_token_id: int
    bos_token_id: int
    unknown: Unknown = "all"
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lengths(self) -> list[int]:
        return sorted({len(k) for k in self.table}, reverse=True)

    def lookup(self, row: Sequence[int]) -> tuple[int, frozenset[int]] | None:
        """(offset of the sequence in the row, positions) or None."""
        n_row = len(row)
        for n in self.lengths:
            if n > n_row:
                continue
            right = tuple(row[:n])
            if right in self.table and all(t == self.pad_token_id for t in row[n:]):
                return 0, self.table[right]
            left = tuple(row[n_row - n :])
            if left in self.table and all(t == self.pad_token_id for t in row[: n_row - n]):
                return n_row - n, self.table[left]
        return None

    def mask(self, input_ids: Tensor) -> Tensor:
        ids = input_ids.tolist()
        out = torch.zeros(input_ids.shape, dtype=torch.bool)
        for r, row in enumerate(ids):
            hit = self.lookup(row)
            if hit is None:
                if self.unknown == "error":
                    raise ConfigError(
                        "an intervention scoped to the stimuli saw a sequence it does not know "
                        f"(first tokens {row[:8]}); scope it with unknown='all' or 'none' to run it on other text"
                    )
                if self.unknown == "all":
                    out[r] = torch.tensor([t != self.bos_token_id for t in row])
                continue
            off, pos = hit
            for p in pos:
                out[r, off + p] = True
        return out.to(input_ids.device)

    def describe(self) -> dict[str, Any]:
        return {"scope": "token_table", "n_sequences": len(self.table), "unknown": self.unknown, **dict(self.info)}

    @classmethod
    def from_suites(cls, model: "Model", suites: Sequence["Suite"], where: Where = "pre_disambiguator",
                    n_words: int = 2, conditions: Conditions = "all", unknown: Unknown = "all") -> "TokenTable":
        """The positions ``where`` selects in every condition of ``suites`` (only ambiguous or unambiguous
        conditions with ``conditions=``; the others are known and left alone)."""
        table: dict[tuple[int, ...], frozenset[int]] = {}
        for suite in suites:
            for it in suite.items:
                for c in it.conditions:
                    tt = tokenize_condition(model, c)
                    take = (conditions == "all" or (conditions == "ambiguous" and c.ambiguous)
                            or (conditions == "unambiguous" and c.ambiguous is False))
                    pos = frozenset(positions_of(tt, suite, where, n_words)) if take else frozenset()
                    key = tuple(tt.input_ids)
                    if key in table and table[key] != pos:
                        raise ConfigError(f"the sentence {c.text!r} occurs twice with different positions to edit")
                    table[key] = pos
        return cls(table=table, pad_token_id=model.pad_token_id, bos_token_id=model.bos_token_id, unknown=unknown,
                   info={"where": where, "n_words": n_words, "conditions": conditions,
                         "suites": [s.name for s in suites]})


EditFn = Callable[[Float[Tensor, "n d"]], Float[Tensor, "n d"]]


@dataclass(frozen=True)
class SiteEdit:
    """One edit: ``fn`` maps the activations ``[n, d_model]`` at the scoped positions of ``site``."""

    site: "Site"
    fn: EditFn


class Intervention:
    """Base of interventions applied as hooks: subclasses give their :class:`SiteEdit` s and a scope."""

    scope: Scope

    def edits(self) -> list[SiteEdit]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    @property
    def label(self) -> str:
        return str(self.describe().get("kind", type(self).__name__))

    def apply(self, model: "Model") -> "ContextManager[None]":
        """Apply this intervention to every forward pass of ``model`` inside a ``with`` block, on any backend;
        its hooks are removed when the block ends, also on error.

        Args:
            model: the model the intervention was fitted on.

        Returns:
            A context manager (:func:`apply_interventions` with this one intervention).

        Example:
            >>> with erasure.apply(model):
            ...     words = mi.suite_surprisal(model, suite)
        """
        return apply_interventions(model, [self])


@dataclass
class _Masks:
    """The position mask of each scope for the forward pass being run."""

    by_scope: dict[int, Tensor] = field(default_factory=dict)


def _masked(fn: EditFn, scope: Scope, masks: _Masks) -> Callable[[Tensor], Tensor | None]:
    def write(act: Tensor) -> Tensor | None:
        m = masks.by_scope.get(id(scope))
        if m is None:
            raise ConfigError("an intervention hook ran before the token-embedding hook: the model was called "
                              "with inputs_embeds instead of input_ids, which scoped interventions cannot place")
        if m.shape != act.shape[:2]:
            raise ConfigError(f"position mask {tuple(m.shape)} does not match activations {tuple(act.shape[:2])}")
        if not bool(m.any()):
            return None
        new = act.clone()
        new[m] = fn(act[m]).to(act.dtype)
        return new

    return write


@contextmanager
def apply_interventions(model: "Model", interventions: Sequence[Intervention]) -> Iterator[None]:
    """Apply ``interventions`` (in order; several edits of one site compose in that order) to every forward
    pass of ``model`` inside the block, on any backend. All hooks are removed on exit, also on error."""
    masks = _Masks()
    scopes = {id(iv.scope): iv.scope for iv in interventions}

    def capture(_m: Any, args: tuple, kwargs: dict) -> None:
        ids = args[0] if args else kwargs.get("input")
        if ids is None or ids.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
            masks.by_scope.clear()
            return
        masks.by_scope.clear()
        for key, scope in scopes.items():
            masks.by_scope[key] = scope.mask(ids)

    with ExitStack() as stack:
        if interventions:
            stack.enter_context(forward_pre_hook(embedding(model), capture))
        for iv in interventions:
            for e in iv.edits():
                stack.enter_context(write_site(model, e.site, _masked(e.fn, iv.scope, masks)))
        try:
            yield
        finally:
            masks.by_scope.clear()

"""SyntaxGym prediction formulas: parse once, evaluate per item on region surprisals.

The grammar is SyntaxGym's (``syntaxgym`` 0.6, ``prediction.py``), with its precedence and associativity:

* A **term** is ``(R;%condition%)`` — the summed surprisal of region ``R`` (a region number, or ``*`` for the
  whole sentence, i.e. the sum over all its regions) in a condition — or a number (``3``, ``-0.5``,
  ``1e-3``; a literal may carry a sign). Condition names are letters, digits, ``_`` and ``-``.
* **Grouping**: parentheses ``( ... )`` or square brackets ``[ ... ]`` (the public SyntaxGym suites write
  brackets); a group must be closed by the same kind of bracket that opened it.
* **Operators**, from tightest to loosest binding:

  1. ``+`` and ``-`` — one level, left-associative: ``a - b + c`` is ``(a - b) + c``;
  2. ``<``, ``>`` and ``=`` (``=`` is equality within rtol 1e-5, atol 1e-3) — a comparison of two
     operands; a chain such as ``a < b < c`` is rejected (SyntaxGym silently drops everything after the
     first comparison of a chain, which is never what was meant);
  3. ``&`` and ``|`` — one level, left-associative: ``a | b & c`` is ``(a | b) & c``.

  There is no multiplication, division or unary minus on a term (SyntaxGym has none).
* Whitespace may appear anywhere between symbols, including inside a term: ``( 5 ; %a% )``.

Example:
    >>> node = parse_formula("[(5;%ambig%) > (5;%unambig%)] & [(5;%ambig%) - (5;%unambig%) > 1]")
    >>> evaluate(node, {("ambig", 5): 9.0, ("unambig", 5): 4.0})
    True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

from mechinterp.errors import SuiteError

if TYPE_CHECKING:
    from mechinterp.stimuli.types import Suite

_REF = re.compile(r"\(\s*(?P<region>\d+|\*)\s*;\s*%\s*(?P<cond>[A-Za-z0-9_\-]+)\s*%\s*\)")
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_OPERATORS = "+-<>=&|"
_CLOSE = {"(": ")", "[": "]"}


@dataclass(frozen=True)
class Ref:
    """The surprisal of one region (``region=None``: the whole sentence) of one condition."""

    region: int | None
    condition: str


@dataclass(frozen=True)
class Num:
    """A numeric literal."""

    value: float


@dataclass(frozen=True)
class BinOp:
    """A binary operation ``left op right``."""

    op: str
    left: "Node"
    right: "Node"


Node = Ref | Num | BinOp

_ARITH = ("+", "-")
_COMPARE = ("<", ">", "=")
_LOGIC = ("&", "|")


def _tokenize(formula: str) -> list[tuple[str, object, int]]:
    """(kind, value, character position) for each symbol; kinds: ref, num, op, open, close."""
    out: list[tuple[str, object, int]] = []
    pos = 0
    while pos < len(formula):
        ch = formula[pos]
        if ch.isspace():
            pos += 1
            continue
        m = _REF.match(formula, pos)
        if m:
            reg = m.group("region")
            out.append(("ref", Ref(None if reg == "*" else int(reg), m.group("cond")), pos))
            pos = m.end()
            continue
        # a sign belongs to a number only where an operand is expected (not after an operand)
        operand_expected = not out or out[-1][0] in ("op", "open")
        m = _NUM.match(formula, pos)
        if m and (ch not in "+-" or operand_expected):
            out.append(("num", Num(float(m.group())), pos))
            pos = m.end()
            continue
        if ch in _OPERATORS:
            out.append(("op", ch, pos))
        elif ch in "([":
            out.append(("open", ch, pos))
        elif ch in ")]":
            out.append(("close", ch, pos))
        else:
            raise SuiteError(f"invalid prediction formula {formula!r}: cannot read from {formula[pos:]!r}")
        pos += 1
    return out


class _Parser:
    def __init__(self, formula: str):
        self.formula = formula
        self.toks = _tokenize(formula)
        self.i = 0

    def fail(self, why: str) -> SuiteError:
        return SuiteError(f"invalid prediction formula {self.formula!r}: {why}")

    def peek(self) -> tuple[str, object, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take_op(self, ops: tuple[str, ...]) -> str | None:
        t = self.peek()
        if t is not None and t[0] == "op" and t[1] in ops:
            self.i += 1
            return str(t[1])
        return None

    def parse(self) -> Node:
        node = self.logic()
        t = self.peek()
        if t is not None:
            raise self.fail(f"unexpected {t[1]!r} at character {t[2]}")
        return node

    def logic(self) -> Node:
        node = self.comparison()
        while (op := self.take_op(_LOGIC)) is not None:
            node = BinOp(op, node, self.comparison())
        return node

    def comparison(self) -> Node:
        node = self.arith()
        op = self.take_op(_COMPARE)
        if op is None:
            return node
        node = BinOp(op, node, self.arith())
        t = self.peek()
        if t is not None and t[0] == "op" and t[1] in _COMPARE:
            raise self.fail(f"chained comparison at character {t[2]}; group it with brackets")
        return node

    def arith(self) -> Node:
        node = self.atom()
        while (op := self.take_op(_ARITH)) is not None:
            node = BinOp(op, node, self.atom())
        return node

    def atom(self) -> Node:
        t = self.peek()
        if t is None:
            raise self.fail("it ends too early")
        self.i += 1
        kind, value, pos = t
        if kind in ("ref", "num"):
            return value  # pyright: ignore[reportReturnType]  # the token's value is a Ref or Num for these kinds
        if kind == "open":
            node = self.logic()
            close = self.peek()
            want = _CLOSE[str(value)]
            if close is None or close[0] != "close":
                raise self.fail(f"the {value!r} at character {pos} is never closed")
            if close[1] != want:
                raise self.fail(f"the {value!r} at character {pos} is closed by {close[1]!r} at character {close[2]}")
            self.i += 1
            return node
        raise self.fail(f"unexpected {value!r} at character {pos}")


def parse_formula(formula: str, suite: "Suite | None" = None) -> Node:
    """Parse a SyntaxGym prediction formula.

    Args:
        formula: The formula text, e.g. ``"[(5;%a%) - (5;%b%)] > 0"``.
        suite: If given, also check that every condition and region the formula names exists in it.

    Returns:
        The formula's syntax tree (:class:`Ref`, :class:`Num` and :class:`BinOp` nodes).

    Raises:
        SuiteError: The formula does not parse, or names a condition or region the suite lacks.

    Example:
        >>> parse_formula("(1;%a%) - (1;%b%) + 2")
        BinOp(op='+', left=BinOp(op='-', left=Ref(region=1, condition='a'), right=Ref(region=1, condition='b')), right=Num(value=2.0))
    """
    node = _Parser(formula).parse()
    if suite is not None:
        _check_refs(node, formula, suite)
    return node


def refs(node: Node) -> list[Ref]:
    """The region references of a parsed formula, left to right.

    Args:
        node: A tree from :func:`parse_formula`.

    Returns:
        Every :class:`Ref` in the formula, in reading order (with repeats).
    """
    if isinstance(node, Ref):
        return [node]
    if isinstance(node, BinOp):
        return refs(node.left) + refs(node.right)
    return []


def _check_refs(node: Node, formula: str, suite: "Suite") -> None:
    conds = {c.name for it in suite.items for c in it.conditions}
    regions = {r.number for it in suite.items for c in it.conditions for r in c.regions}
    for ref in refs(node):
        if ref.condition not in conds:
            raise SuiteError(
                f"prediction {formula!r} names condition {ref.condition!r}, which no item has (conditions: {sorted(conds)})"
            )
        if ref.region is not None and ref.region not in regions:
            raise SuiteError(f"prediction {formula!r} names region {ref.region}, which no item has")


_OPS: dict[str, Callable[[float, float], float | bool]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "=": lambda a, b: math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-3),
    "&": lambda a, b: bool(a) and bool(b),
    "|": lambda a, b: bool(a) or bool(b),
}


def evaluate(node: Node, region_surprisal: Mapping[tuple[str, int | None], float]) -> float | bool:
    """Evaluate a parsed formula on one item's region surprisals.

    Args:
        node: A tree from :func:`parse_formula`.
        region_surprisal: ``{(condition, region): surprisal}``; ``region=None`` is the whole sentence.

    Returns:
        A number for an arithmetic formula, a bool for a comparison or logical one.

    Raises:
        SuiteError: A referenced region has no surprisal.

    Example:
        >>> evaluate(parse_formula("(1;%a%) = 2"), {("a", 1): 2.0004})
        True
    """
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Ref):
        try:
            return region_surprisal[(node.condition, node.region)]
        except KeyError as exc:
            raise SuiteError(f"no surprisal for region {node.region} of condition {node.condition!r}") from exc
    return _OPS[node.op](evaluate(node.left, region_surprisal), evaluate(node.right, region_surprisal))

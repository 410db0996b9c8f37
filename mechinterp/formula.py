"""SyntaxGym prediction formulas: parse once, evaluate per item on region surprisals.

Grammar (SyntaxGym's, including its precedence): a term is ``(R;%condition%)`` — the summed surprisal of
region ``R`` (a number, or ``*`` for the whole sentence) in a condition — or a number. Operators, from
tightest to loosest: ``+``, ``-``, then the comparisons ``<``, ``>``, ``=`` (equal within rtol 1e-5, atol
1e-3), then ``&`` and ``|``. As in SyntaxGym, ``+`` binds tighter than ``-`` (``a - b + c`` is
``a - (b + c)``); use parentheses when in doubt.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Union

from mechinterp.errors import SuiteError

if TYPE_CHECKING:
    from mechinterp.stimuli.types import Suite

_TOKEN = re.compile(
    r"\s*(?:(?P<ref>\(\s*(?P<region>\d+|\*)\s*;\s*%(?P<cond>[A-Za-z0-9_\-]+)%\s*\))"
    r"|(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<op>[-+<>=&|()]))"
)


@dataclass(frozen=True)
class Ref:
    region: int | None  # None = whole sentence ('*')
    condition: str


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class BinOp:
    op: str
    left: "Node"
    right: "Node"


Node = Union[Ref, Num, BinOp]
_LEVELS = [("&", "|"), ("<", ">", "="), ("-",), ("+",)]


def _tokenize(formula: str) -> list[tuple[str, object]]:
    pos, out = 0, []
    while pos < len(formula):
        if formula[pos:].strip() == "":
            break
        m = _TOKEN.match(formula, pos)
        if not m or m.end() == pos:
            raise SuiteError(f"invalid prediction formula {formula!r}: cannot read from {formula[pos:]!r}")
        if m.group("ref"):
            reg = m.group("region")
            out.append(("ref", Ref(None if reg == "*" else int(reg), m.group("cond"))))
        elif m.group("num"):
            out.append(("num", Num(float(m.group("num")))))
        else:
            out.append(("op", m.group("op")))
        pos = m.end()
    return out


def parse_formula(formula: str, suite: "Suite | None" = None) -> Node:
    """Parse ``formula``; with ``suite``, also check its regions and conditions exist."""
    toks = _tokenize(formula)
    i = 0

    def peek():
        return toks[i] if i < len(toks) else None

    def level(k: int) -> Node:
        nonlocal i
        if k == len(_LEVELS):
            return atom()
        node = level(k + 1)
        while (t := peek()) and t[0] == "op" and t[1] in _LEVELS[k]:
            i += 1
            node = BinOp(str(t[1]), node, level(k + 1))
        return node

    def atom() -> Node:
        nonlocal i
        t = peek()
        if t is None:
            raise SuiteError(f"invalid prediction formula {formula!r}: ends too early")
        i += 1
        if t[0] in ("ref", "num"):
            return t[1]  # type: ignore[return-value]
        if t == ("op", "("):
            node = level(0)
            if peek() != ("op", ")"):
                raise SuiteError(f"invalid prediction formula {formula!r}: missing ')'")
            i += 1
            return node
        raise SuiteError(f"invalid prediction formula {formula!r}: unexpected {t[1]!r}")

    node = level(0)
    if i != len(toks):
        raise SuiteError(f"invalid prediction formula {formula!r}: unexpected {toks[i][1]!r}")
    if suite is not None:
        _check_refs(node, formula, suite)
    return node


def _refs(node: Node):
    if isinstance(node, Ref):
        yield node
    elif isinstance(node, BinOp):
        yield from _refs(node.left)
        yield from _refs(node.right)


def _check_refs(node: Node, formula: str, suite: "Suite") -> None:
    conds = {c.name for it in suite.items for c in it.conditions}
    regions = {r.number for it in suite.items for c in it.conditions for r in c.regions}
    for ref in _refs(node):
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
    """Evaluate on one item's ``{(condition, region): surprisal}`` (``region=None`` is the sentence)."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Ref):
        try:
            return region_surprisal[(node.condition, node.region)]
        except KeyError as exc:
            raise SuiteError(f"no surprisal for region {node.region} of condition {node.condition!r}") from exc
    return _OPS[node.op](evaluate(node.left, region_surprisal), evaluate(node.right, region_surprisal))

"""SyntaxGym prediction formulas."""

import pytest

from mechinterp.errors import SuiteError
from mechinterp.formula import BinOp, Ref, evaluate, parse_formula

V = {("a", 1): 5.0, ("b", 1): 3.0, ("a", 2): 1.0, ("b", 2): 1.0004, ("a", None): 6.0}


@pytest.mark.parametrize(
    "formula, expected",
    [
        ("(1;%a%) > (1;%b%)", True),
        ("(1;%a%) < (1;%b%)", False),
        ("(2;%a%) = (2;%b%)", True),  # within SyntaxGym's tolerance (atol 1e-3)
        ("((1;%a%) - (1;%b%)) > 1.5", True),
        ("(1;%a%) - (1;%b%) + (2;%a%)", 1.0),  # SyntaxGym precedence: + binds tighter than -
        ("[(1;%a%) > (1;%b%)] & [(2;%a%) = (2;%b%)]".replace("[", "(").replace("]", ")"), True),
        ("(*;%a%) > 5.5", True),
    ],
)
def test_evaluate(formula, expected):
    assert evaluate(parse_formula(formula), V) == expected


def test_parse_structure():
    node = parse_formula("(5;%ambiguous%) > (5;%unambiguous%)")
    assert node == BinOp(">", Ref(5, "ambiguous"), Ref(5, "unambiguous"))


@pytest.mark.parametrize("bad", ["(1;%a%) >", "(1;a) > 2", "((1;%a%) > 2", "1 > > 2", "(1;%a%) ^ 2", ""])
def test_invalid(bad):
    with pytest.raises(SuiteError, match="invalid prediction formula"):
        parse_formula(bad)

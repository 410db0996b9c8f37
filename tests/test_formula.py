"""SyntaxGym prediction formulas: SyntaxGym's grammar, precedence and associativity, with brackets."""

import pytest

from mechinterp.errors import SuiteError
from mechinterp.formula import BinOp, Num, Ref, evaluate, parse_formula, refs

V = {
    ("a", 1): 5.0, ("b", 1): 3.0, ("a", 2): 1.0, ("b", 2): 1.0004, ("a", None): 6.0,
    ("no-sub_matrix", 3): 2.0, ("what_no-gap2", 3): 4.0,
}


@pytest.mark.parametrize(
    "formula, expected",
    [
        ("(1;%a%) > (1;%b%)", True),
        ("(1;%a%) < (1;%b%)", False),
        ("(2;%a%) = (2;%b%)", True),  # within SyntaxGym's tolerance (atol 1e-3)
        ("(1;%a%) = (1;%b%)", False),
        ("((1;%a%) - (1;%b%)) > 1.5", True),
        # SyntaxGym: + and - share one level, left-associative
        ("(1;%a%) - (1;%b%) + (2;%a%)", 3.0),
        ("(1;%a%) - [(1;%b%) + (2;%a%)]", 1.0),
        ("(1;%a%) - (1;%b%) - (2;%a%)", 1.0),
        ("[(1;%a%) > (1;%b%)] & [(2;%a%) = (2;%b%)]", True),
        ("[ (1;%a%) > (1;%b%) ]&[ (2;%a%) < (2;%a%) ]", False),
        ("[(1;%a%) < (1;%b%)] | [(2;%a%) = (2;%b%)]", True),
        # & and | share one level, left-associative: (True | False) & False
        ("(1;%a%) > 0 | (1;%a%) > 9 & (1;%a%) > 9", False),
        ("(1;%a%) > 0 | [(1;%a%) > 9 & (1;%a%) > 9]", True),
        # arithmetic binds tighter than comparison, comparison tighter than &
        ("(1;%a%) - (1;%b%) > 1 & (2;%a%) < 2", True),
        ("[[(1;%a%) - (1;%b%)] > [(2;%b%) - (2;%a%)]]", True),
        ("[(1;%a%)-(1;%b%)]+[[(2;%a%)+(2;%b%)]-[(2;%a%)+(2;%b%)]]>0", True),
        ("(*;%a%) > 5.5", True),
        ("(1;%a%) - -3", 8.0),
        ("(1;%a%)>-2", True),
        ("2.5e0 < (1;%a%)", True),
        ("  ( 1 ; %a% )\t>\n( 1;%b%)  ", True),
        ("(3;%no-sub_matrix%) < (3;%what_no-gap2%)", True),
    ],
)
def test_evaluate(formula, expected):
    assert evaluate(parse_formula(formula), V) == expected


def test_parse_structure():
    node = parse_formula("(5;%ambiguous%) > (5;%unambiguous%)")
    assert node == BinOp(">", Ref(5, "ambiguous"), Ref(5, "unambiguous"))
    assert parse_formula("[(1;%x%)]") == Ref(1, "x")
    assert parse_formula("(1;%x%) - 2") == BinOp("-", Ref(1, "x"), Num(2.0))


def test_refs_in_order():
    node = parse_formula("[(5;%a-b%) > (6;%c_d%)] & [(*;%e1%) = 0]")
    assert refs(node) == [Ref(5, "a-b"), Ref(6, "c_d"), Ref(None, "e1")]


@pytest.mark.parametrize(
    "bad",
    [
        "(1;%a%) >", "(1;a) > 2", "((1;%a%) > 2", "1 > > 2", "(1;%a%) ^ 2", "", "   ",
        "[(1;%a%) > 2)", "((1;%a%) > 2]", "(1;%a%) > 2]", "(1;%a%) * 2", "(1;%a%) / 2",
        "(1;%a%) < 2 < 3", "(1;%a b%) > 2", "(x;%a%) > 2", "(1;%a%) (1;%b%)",
    ],
)
def test_invalid(bad):
    with pytest.raises(SuiteError, match="invalid prediction formula"):
        parse_formula(bad)


def test_unknown_condition_against_suite():
    from mechinterp.stimuli import load_suite

    suite = load_suite("npz")
    with pytest.raises(SuiteError, match="names condition 'nope'"):
        parse_formula("(1;%nope%) > 0", suite)

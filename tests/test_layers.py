"""The one layer-list grammar (mechinterp.layers), table-driven."""

from __future__ import annotations

import pytest

from mechinterp.errors import ConfigError
from mechinterp.layers import check_layers, format_layers, parse_layers

GOOD = [
    ("6", 18, [6]),
    ("0-3+8", 18, [0, 1, 2, 3, 8]),
    (" 8 + 0-1 ", 18, [0, 1, 8]),
    ("*", 3, [0, 1, 2]),
    ("all", 3, [0, 1, 2]),
    ("every 3", 10, [0, 3, 6, 9]),
    ("every 4", 10, [0, 4, 8, 9]),
    ("every 4+5", 10, [0, 4, 5, 8, 9]),
    ("2-2", 18, [2]),
    ("3+3", 18, [3]),
]

BAD = [
    ("6,9", 18, "not ',' or '/'"),
    ("6/9", 18, "not ',' or '/'"),
    ("-1", 18, "negative layer -1"),
    ("0--1", 18, "negative"),
    ("3-1", 18, "empty"),
    ("18", 18, "the model has 18 layers"),
    ("0-18", 18, "the model has 18 layers"),
    ("", 18, "empty layer list"),
    ("x", 18, "joined by '+'"),
    ("every 0", 18, "at least 1"),
    ("*", None, "layer count"),
    ("every 2", None, "layer count"),
]


@pytest.mark.parametrize("text, n, want", GOOD)
def test_parse_layers_accepts(text, n, want):
    assert parse_layers(text, n) == want


@pytest.mark.parametrize("text, n, message", BAD)
def test_parse_layers_refuses(text, n, message):
    with pytest.raises(ConfigError, match=None) as exc:
        parse_layers(text, n)
    assert message in str(exc.value)


def test_numbers_and_format():
    assert check_layers([5, 0, 5], 6) == [0, 5]
    with pytest.raises(ConfigError, match="negative"):
        check_layers([-1], 6)
    with pytest.raises(ConfigError, match="the model has 6 layers"):
        check_layers([6], 6)
    assert format_layers([8, 0, 1, 2, 3]) == "0-3+8"
    assert parse_layers(format_layers([1, 4, 5, 6, 9]), 10) == [1, 4, 5, 6, 9]

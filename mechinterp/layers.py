"""Layer lists: the one grammar every command and file uses to name a set of blocks.

Grammar (whitespace around items is ignored)::

    LAYERS := ITEM ('+' ITEM)*
    ITEM   := '*'          every layer (``all`` is the same)
            | N            one layer, counted from 0
            | N-M          layers N to M, both included
            | 'every' K    0, K, 2K, ... and the last layer

Examples: ``6``, ``0-3+8``, ``*``, ``every 3``, ``every 4+5``. The same text is accepted by site specs
(``resid_post@0-3+8:region=ambiguous/last``), intervention specs (``leace:layers=6+9``), ``probe train
--layers``, sweep files (``layers = "0-3+8"``; a TOML list of numbers also works), ``sae train --layer`` and
``sae features --layer``. The result is sorted, without duplicates.

Layers count from 0; negative layers are refused (never counted from the end), and so are layers at or past
the model's layer count, with that count in the message. ``,`` and ``/`` are not separators: ``,`` separates
``key=value`` pairs and site entries, and the old forms ``6,9`` and ``6/9`` are refused with a message that
names this grammar.
"""

from __future__ import annotations

import re
from typing import Iterable

from mechinterp.errors import ConfigError

GRAMMAR = "'*', N, N-M (inclusive) or 'every K', joined by '+' (e.g. 0-3+8)"

_ITEM = re.compile(r"(?P<a>-?\d+)(?:\s*-\s*(?P<b>-?\d+))?|every\s*(?P<k>-?\d+)|(?P<star>\*|all)")


def _range_error(what: str, value: int, n: int, text: str) -> ConfigError:
    return ConfigError(f"{what}s {text!r}: {what} {value} is out of range (the model has {n} {what}s, 0-{n - 1})")


def parse_indices(text: str, n: int | None, what: str = "layer") -> list[int]:
    """Parse a list in the layer grammar (see the module docstring) for any kind of index (layers, heads).

    Args:
        text: The list, e.g. ``"0-3+8"``.
        n: How many there are (the model's layer or head count); None when not known yet, in which case
            ``*`` and ``every K`` are refused and only negative numbers are checked.
        what: What is counted, for messages (``"layer"``, ``"head"``).

    Returns:
        The indices, sorted and without duplicates.

    Raises:
        ConfigError: A malformed list, a negative index or one at or past ``n``; the message names the grammar.

    Example:
        >>> parse_indices("0-2+8", 18)
        [0, 1, 2, 8]
    """
    out: set[int] = set()
    for kind, a, b in _items(text, what):
        if kind == "range":
            if n is not None and b >= n:
                raise _range_error(what, b if a < n else a, n, text)
            out.update(range(a, b + 1))
            continue
        if n is None:
            raise ConfigError(f"{what}s {text!r}: '*' and 'every K' need the model's {what} count")
        out.update(range(n) if kind == "all" else [*range(0, n, a), n - 1])
    return sorted(out)


def _items(text: str, what: str) -> list[tuple[str, int, int]]:
    """The items of a list as ``("range", N, M)``, ``("all", 0, 0)`` or ``("every", K, 0)``; grammar errors."""
    text = str(text).strip()
    if not text:
        raise ConfigError(f"empty {what} list: use {GRAMMAR}")
    items = []
    for part in text.split("+"):
        part = part.strip()
        m = _ITEM.fullmatch(part)
        if not m:
            hint = ""
            if "," in part or "/" in part:
                hint = f" (join {what}s with '+', not ',' or '/': {re.sub(r'[,/]', '+', text)!r})"
            raise ConfigError(f"bad {what} list {text!r}{hint}: use {GRAMMAR}")
        if m.group("star"):
            items.append(("all", 0, 0))
            continue
        if m.group("k") is not None:
            k = int(m.group("k"))
            if k < 1:
                raise ConfigError(f"{what}s {text!r}: the step of 'every K' must be at least 1")
            items.append(("every", k, 0))
            continue
        a = int(m.group("a"))
        b = int(m.group("b")) if m.group("b") is not None else a
        for v in (a, b):
            if v < 0:
                raise ConfigError(f"{what}s {text!r}: negative {what} {v} ({what}s count from 0; use {GRAMMAR})")
        if b < a:
            raise ConfigError(f"{what}s {text!r}: the range {part!r} is empty (write N-M with N <= M)")
        items.append(("range", a, b))
    return items


def check_layer_text(text: str) -> str:
    """Check a layer list's grammar before the model (and so its layer count) is known.

    Args:
        text: A layer list.

    Returns:
        The text, stripped.

    Raises:
        ConfigError: A malformed list or a negative layer.
    """
    _items(text, "layer")
    return str(text).strip()


def parse_layers(text: str, n_layers: int | None) -> list[int]:
    """Parse a layer list (grammar in the module docstring).

    Args:
        text: The list, e.g. ``"0-3+8"``, ``"*"`` or ``"every 3"``.
        n_layers: The model's layer count, or None if not known yet (then ``*`` and ``every K`` are refused).

    Returns:
        The layers, sorted and without duplicates.

    Raises:
        ConfigError: A malformed list, a negative layer, or a layer at or past ``n_layers``.

    Example:
        >>> parse_layers("every 4", 10)
        [0, 4, 8, 9]
    """
    return parse_indices(text, n_layers, "layer")


def check_layers(layers: Iterable[int] | str, n_layers: int | None) -> list[int]:
    """Layers given as text (the grammar) or as numbers (a TOML or JSON list), checked against the model.

    Args:
        layers: A layer-list string, or layer numbers.
        n_layers: The model's layer count, or None if not known yet.

    Returns:
        The layers, sorted and without duplicates.

    Raises:
        ConfigError: As :func:`parse_layers`; also for an empty list or a non-integer number.
    """
    if isinstance(layers, str):
        return parse_layers(layers, n_layers)
    values = list(layers)
    if not values:
        raise ConfigError(f"empty layer list: use {GRAMMAR}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"layer {v!r} is not a whole number")
    return parse_layers("+".join(map(str, values)), n_layers)


def check_layer_field(value: str | list[int]) -> str | list[int]:
    """Validate a configuration's layer field before the model is known, keeping its form.

    Args:
        value: A layer-list string (checked for syntax) or layer numbers (checked to be whole and >= 0).

    Returns:
        ``value`` unchanged; it is resolved against the model's layer count when a job runs.

    Raises:
        ConfigError: As :func:`check_layer_text` / :func:`check_layers`.
    """
    if isinstance(value, str):
        return check_layer_text(value)
    check_layers(value, None)
    return value


def format_layers(layers: Iterable[int]) -> str:
    """The shortest text in the grammar for some layers (runs become ``N-M``).

    Args:
        layers: Layer numbers.

    Returns:
        E.g. ``"0-3+8"``.

    Example:
        >>> format_layers([8, 0, 1, 2, 3])
        '0-3+8'
    """
    vals = sorted(set(layers))
    parts: list[str] = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        parts.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return "+".join(parts)

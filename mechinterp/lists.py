"""Comma-separated lists of numbers: the one grammar of the options that take several values of a quantity
(``--budgets``, ``--truncate``, ``--recency``, ``--keynoise``). Layer lists have their own grammar
(:mod:`mechinterp.layers`)."""

from __future__ import annotations

import math

from mechinterp.errors import ConfigError

FULL = math.inf  # the word ``full`` where a list allows it (e.g. truncation to the whole prefix)


def number_list(text: str | None, what: str, allow_full: bool = False) -> list[float]:
    """A comma-separated list of numbers >= 0 (and ``full`` where allowed), in the order given, without
    duplicates.

    Args:
        text: e.g. ``"2,3,4,full"``; None or empty for none.
        what: the option, for messages.
        allow_full: whether ``full`` (:data:`FULL`) is accepted.

    Returns:
        The values.

    Raises:
        ConfigError: a value is not a finite number >= 0 (or ``full`` where allowed).

    Example:
        >>> number_list("2,3,full", "--truncate", allow_full=True)
        [2.0, 3.0, inf]
    """
    out: list[float] = []
    for part in (text or "").split(","):
        p = part.strip().lower()
        if not p:
            continue
        if p == "full" and allow_full:
            v = FULL
        else:
            try:
                v = float(p)
            except ValueError:
                v = float("nan")
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"{what} {text!r}: {part.strip()!r} is not a number >= 0"
                                  + (" or 'full'" if allow_full else "") + " (give a comma-separated list)")
        if v not in out:
            out.append(v)
    return out

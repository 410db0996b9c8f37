"""Representational reanalysis: how far apart the ambiguous and the unambiguous version of an item are, word
by word, in the residual stream.

Words of the two versions are paired region by region (:func:`aligned_words`): within each region that both
versions have, words are paired from the region's start for as long as they are identical (same text), and
from the region's end for as long as they are identical. Regions of the same length with the same words are
thus paired by their index within the region; words that differ (the comma glued to "hunted," in NP/Z, the cue
words "that was" in MV/RR, "that" in NP/S) and regions only one version has stay unpaired.

Distances between two states ``a`` and ``b`` (:func:`state_distances`)::

    cosine distance = 1 - a.b / (|a| |b|)
    normalised L2   = |a - b| / ((|a| + |b|) / 2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mechinterp.stimuli.types import Condition


def aligned_words(a: "Condition", b: "Condition") -> list[tuple[int, int]]:
    """Pairs (word index in ``a``, word index in ``b``) of the same word at the same place of a shared region.

    Args:
        a: one version of an item (e.g. the ambiguous condition).
        b: the other version.

    Returns:
        The pairs, in order of ``a``'s words (see the module docstring for the rule).

    Example:
        >>> import mechinterp as mi
        >>> suite = mi.load_suite("npz")
        >>> amb, unamb = suite.pair(suite.items[0])
        >>> [amb.words[i].text for i, _ in aligned_words(amb, unamb)][:4]  # "hunted" vs "hunted," unpaired
        ['While', 'the', 'man', 'the']
    """
    pairs: list[tuple[int, int]] = []
    regions_b = {r.number for r in b.regions}
    for reg in a.regions:
        if reg.number not in regions_b:
            continue
        wa = [w for w in a.words if w.region == reg.number]
        wb = [w for w in b.words if w.region == reg.number]
        n = min(len(wa), len(wb))
        head = 0
        while head < n and wa[head].text == wb[head].text:
            head += 1
        tail = 0
        while tail < n - head and wa[len(wa) - 1 - tail].text == wb[len(wb) - 1 - tail].text:
            tail += 1
        pairs += [(wa[k].index, wb[k].index) for k in range(head)]
        pairs += [(wa[len(wa) - k].index, wb[len(wb) - k].index) for k in range(tail, 0, -1)]
    return sorted(pairs)


def shared_stretch(a: "Condition", b: "Condition", region: int) -> list[tuple[int, int]]:
    """The words right before ``region`` that both versions share, back to the place where they differ: the
    temporarily ambiguous material of a minimal pair whose unambiguous version adds a cue.

    Walks back from the word before ``region``'s first word in each version while the two words are paired by
    :func:`aligned_words`. NP/S "The suspect showed [the file] deserved" vs "... showed that [the file]
    deserved"; NP/Z "While the man hunted [the deer] ran" vs "... hunted, [the deer] ran"; MV/RR "The soldiers
    [warned about the dangers] conducted" vs "The soldiers who were [warned about the dangers] conducted".

    Args:
        a: one version of an item (e.g. the ambiguous condition).
        b: the other version.
        region: the region the stretch ends before (the disambiguating region).

    Returns:
        Pairs (word index in ``a``, word index in ``b``), in order; empty when either version lacks ``region``
        or the versions do not differ before it (nothing to tell the stretch from the rest of the prefix).

    Example:
        >>> import mechinterp as mi
        >>> suite = mi.load_suite("sap:ClassicGP")
        >>> amb, unamb = suite.pair(suite.items[0])
        >>> [amb.words[i].text for i, _ in shared_stretch(amb, unamb, 2)]
        ['the', 'file']
    """
    start_a = next((w.index for w in a.words if w.region == region), None)
    start_b = next((w.index for w in b.words if w.region == region), None)
    if start_a is None or start_b is None:
        return []
    paired = dict(aligned_words(a, b))
    ia, ib = start_a - 1, start_b - 1
    out: list[tuple[int, int]] = []
    while ia >= 0 and ib >= 0 and paired.get(ia) == ib:
        out.append((ia, ib))
        ia, ib = ia - 1, ib - 1
    if ia < 0 and ib < 0:  # identical up to the region: no place where the versions differ
        return []
    return out[::-1]


def state_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distance and mean-norm-normalised L2 distance between paired rows.

    Args:
        a: ``[n, d]`` states.
        b: ``[n, d]`` states, row i paired with ``a``'s row i.

    Returns:
        (cosine distance, normalised L2), each ``[n]`` (formulas in the module docstring), in float64.

    Example:
        >>> cos, l2 = state_distances(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]))
        >>> float(cos[0]), round(float(l2[0]), 4)
        (1.0, 1.4907)
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nx, ny = np.linalg.norm(x, axis=-1), np.linalg.norm(y, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = 1.0 - (x * y).sum(-1) / (nx * ny)
        l2 = np.linalg.norm(x - y, axis=-1) / ((nx + ny) / 2.0)
    return cos, l2

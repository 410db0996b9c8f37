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

"""How much of a training set's label could a shallow rule read off the words before the probe?

A probe on a causal model sees only the prefix up to the probed token. If one word of that prefix (a comma,
"that", a subordinator) or the probed word's position gave the reading away, a probe could score well with no
parse. These diagnostics measure the best such rule on a :class:`~mechinterp.probes.templates.TrainingSet`:

* ``single_word``: for every word type w of the prefixes, the rule "label c if w occurs in the prefix, else the
  other label", evaluated on the whole set; the best (w, c) and its accuracy.
* ``previous_word``: the rule "label c if the word just before the target is w" (with the majority label
  otherwise), best over (w, c).
* ``position``: the best threshold on the target's word index (either direction).

Accuracy 0.5 is chance (the sets are balanced). The tests hold each below a bound; reports show them.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import pandas as pd

from mechinterp.probes.templates import REGION_PRE, REGION_TARGET, TrainingSet

_TOKEN = re.compile(r"[A-Za-z']+|[,.;:]")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _TOKEN.findall(text)]


def _best_presence(has: dict[str, np.ndarray], y: np.ndarray) -> tuple[str, int, float]:
    best = ("", 1, 0.5)
    for w, mask in has.items():
        for c in (0, 1):
            pred = np.where(mask, c, 1 - c)
            acc = float((pred == y).mean())
            if acc > best[2]:
                best = (w, c, acc)
    return best


def cue_report(ts: TrainingSet) -> pd.DataFrame:
    """One row per diagnostic: rule, cue, label it predicts, accuracy."""
    y = np.array(ts.labels)
    n = len(y)
    prefix_sets = [set(_words(s.text[: s.regions[REGION_TARGET][0]])) for s in ts.sentences]
    vocab = set().union(*prefix_sets)
    has = {w: np.array([w in p for p in prefix_sets]) for w in sorted(vocab)}  # sorted: ties never depend on hashing
    w1, c1, a1 = _best_presence(has, y)

    prev = [(_words(s.text[slice(*s.regions[REGION_PRE])]) or [""])[-1] for s in ts.sentences]
    has_prev = defaultdict(lambda: np.zeros(n, bool))
    for i, w in enumerate(prev):
        has_prev[w][i] = True
    w2, c2, a2 = _best_presence(dict(sorted(has_prev.items())), y)

    pos = np.array([s.target_index for s in ts.sentences])
    best_pos = (0, 1, 0.5)
    for t in np.unique(pos):
        for c in (0, 1):
            pred = np.where(pos <= t, c, 1 - c)
            acc = float((pred == y).mean())
            if acc > best_pos[2]:
                best_pos = (int(t), c, acc)
    return pd.DataFrame(
        [
            {"construction": ts.construction, "rule": "single_word", "cue": w1, "predicts": c1, "accuracy": a1},
            {"construction": ts.construction, "rule": "previous_word", "cue": w2, "predicts": c2, "accuracy": a2},
            {"construction": ts.construction, "rule": "position", "cue": f"target word index <= {best_pos[0]}",
             "predicts": best_pos[1], "accuracy": best_pos[2]},
        ]
    )

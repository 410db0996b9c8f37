"""Activations for probes, read through :mod:`mechinterp.locate.sites` (typed sites; BOS is never a row).

Training sentences are read at three positions (regions as :mod:`mechinterp.probes.templates` sets them):

* ``target``: the probed word (region 3; its last token, or the mean of its tokens), where the reading probe
  is trained;
* ``pre``: the last token of the word just before the target (region 2) -- the lexical baseline;
* ``start``: the first token of the sentence (token 1, right after BOS) -- a second, earlier baseline.

Stimuli are read at the suite's ambiguous region of each condition. Training-set activations are memoised in
the process (keyed by model weights, texts and sites), so sweeps that test several suites with the same
generated sentences read them once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Literal, Sequence

import numpy as np

from mechinterp.errors import ConfigError
from mechinterp.locate.activations import collect
from mechinterp.locate.sites import RegionPos, Site, TokenPos
from mechinterp.probes.labels import canonical
from mechinterp.probes.templates import REGION_PRE, REGION_TARGET, TrainingSet
from mechinterp.tokenization import tokenize_condition

PositionName = Literal["target", "pre", "start"]
BASELINE_POSITIONS: tuple[PositionName, ...] = ("pre", "start")

_CACHE: "OrderedDict[str, dict]" = OrderedDict()
_CACHE_SIZE = 12


def position(name: PositionName, which: str = "last"):
    if name == "target":
        return RegionPos(REGION_TARGET, which)  # pyright: ignore[reportArgumentType]  # which is validated by RegionPos
    if name == "pre":
        return RegionPos(REGION_PRE, "last")
    if name == "start":
        return TokenPos(1)
    raise ConfigError(f"unknown probe position {name!r} (target, pre, start)")


def check_layers(model: Any, layers: Sequence[int]) -> list[int]:
    out = []
    for L in layers:
        L = int(L)
        L2 = L + model.n_layers if L < 0 else L
        if not 0 <= L2 < model.n_layers:
            raise ConfigError(f"layer {L} is out of range for {model.name} (layers 0-{model.n_layers - 1})")
        out.append(L2)
    return sorted(dict.fromkeys(out))


def collect_training(
    model: Any,
    ts: TrainingSet,
    layers: Sequence[int],
    components: Sequence[str],
    which: str = "last",
    positions: Sequence[PositionName] = ("target", *BASELINE_POSITIONS),
    backend: str = "hf",
    batch_size: int = 32,
) -> dict[tuple[int, str, str], np.ndarray]:
    """``{(layer, component, position): float64 array [n_sentences, d_model]}`` for a training set."""
    keys = [(L, c, p) for L in layers for c in components for p in positions]
    sites = {k: Site(k[0], k[1], position(k[2], which)) for k in keys}  # pyright: ignore[reportArgumentType]  # component is checked by Site, positions are PositionNames
    texts = tuple(s.text for s in ts.sentences)
    ck = hashlib.sha256(
        repr((model.weights_sha256, str(model.path), backend, texts, sorted(map(str, sites.values())))).encode()
    ).hexdigest()
    if ck in _CACHE:
        _CACHE.move_to_end(ck)
        return _CACHE[ck]
    seqs = [s.tokenized(model.tokenizer, model.bos_token_id) for s in ts.sentences]
    got = collect(model, seqs, list(sites.values()), backend=backend, batch_size=batch_size)
    out = {k: got[s].double().numpy() for k, s in sites.items()}
    _CACHE[ck] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def clear_cache() -> None:
    _CACHE.clear()


def collect_stimuli(
    model: Any,
    suite: Any,
    construction: str,
    layers: Sequence[int],
    components: Sequence[str],
    which: str = "last",
    backend: str = "hf",
    batch_size: int = 32,
) -> tuple[list[dict[str, Any]], dict[tuple[int, str], np.ndarray]]:
    """Rows (one per item x condition of ``construction`` in ``suite``) and activations at the suite's
    ambiguous region in each: ``{(layer, component): array [n_rows, d_model]}``."""
    amb = suite.ambiguity
    if amb is None or amb.ambiguous_region is None:
        raise ConfigError(
            f"suite {suite.name!r} does not say which region is ambiguous (ambiguity.ambiguous_region); the "
            "probe readout needs it"
        )
    region = int(amb.ambiguous_region)
    rows, seqs = [], []
    for item in suite.items:
        if canonical(suite.construction_of(item)) != construction:
            continue
        for cond in item.conditions:
            tok = tokenize_condition(model, cond)
            if len(tok.tokens_of_region(region)) == 0:
                continue  # e.g. a condition without the ambiguous word
            rows.append({
                "item": item.key, "condition": cond.name, "ambiguous": cond.ambiguous, "reading": cond.reading,
                "region": region, "region_text": " ".join(w.text for w in cond.region_words(region)),
            })
            seqs.append(tok)
    if not rows:
        raise ConfigError(f"suite {suite.name!r} has no {construction} items with a non-empty ambiguous region")
    sites = {(L, c): Site(L, c, RegionPos(region, which)) for L in layers for c in components}  # pyright: ignore[reportArgumentType]  # component and which are validated by Site and RegionPos
    got = collect(model, seqs, list(sites.values()), backend=backend, batch_size=batch_size)
    return rows, {k: got[s].double().numpy() for k, s in sites.items()}

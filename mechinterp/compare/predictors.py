"""Word-level predictors of reading times beyond surprisal: one row per word, one column per predictor.

:func:`word_predictors` scores every word of a suite (built-in, SyntaxGym, SAP CSV) or of plain texts (e.g.
Natural Stories windows). Words, their tokens and regions are those of :mod:`mechinterp.tokenization` (the word
table of :mod:`mechinterp.surprisal`); ``w`` is a word, ``w-1`` the word before it in the same sentence.
The table is wide: per-layer and per-head predictors get one column each, named after the layer or head.

Surprise and uncertainty (as :func:`mechinterp.suite_surprisal`, same numbers)::

    surprisal_bits       -log2 P(w | words before w)            (sum over w's tokens)
    entropy_bits         H(next token) at w's onset, in bits
    entropy_change_bits  entropy_bits(w) - entropy_bits(w-1)    NaN at the first word

Parse-belief update from behaviour (the exact reading estimator after every word prefix,
:mod:`mechinterp.compare.belief`); ``p(w)`` = P(preferred reading | sentence up to and including w) =
m_pref / (m_pref + m_other), m = summed probability of the reading's diagnostic continuations::

    reading_p_preferred  p(w)
    reading_tv           |p(w) - p(w-1)|  (the total variation between the two-reading distributions)
    reading_kl_bits      KL(P_w || P_w-1) = p(w) log2(p(w)/p(w-1)) + (1-p(w)) log2((1-p(w))/(1-p(w-1)))

NaN for every word of an item whose construction has no readings or continuation sets (and of plain texts,
suites without an ambiguity annotation, and ``readings=False``); tv and kl are NaN at the first word. The
continuation sets diagnose the readings right after the ambiguous material; elsewhere in the sentence p(w) is
what the same estimator says there, not a validated belief.

Parse-belief update from each reading probe ``LABEL`` (a :class:`~mechinterp.probes.ProbeArtifact`; its
activation read at w's last token, at the probe's own layer and component; q(w) = the probe's P(class 1 =
its construction's preferred reading)), computed on every word of every sentence whatever its construction::

    probe_p_LABEL        q(w)
    probe_tv_LABEL       |q(w) - q(w-1)|
    probe_kl_bits_LABEL  KL(Q_w || Q_w-1), as above with q                 both NaN at the first word

``LABEL`` is the key when probes are given as a mapping, else ``<construction without '/'>_<component>_L<layer>``
(e.g. ``NPZ_resid_post_L6``).

Representational reanalysis, for each layer L of ``layers`` (:mod:`mechinterp.compare.reanalysis`):
with a, b = ``resid_post(L)`` at the last token of the same word in the ambiguous and the unambiguous version
of an item (``suite.pair``)::

    repr_cos_LL          1 - a.b / (|a| |b|)
    repr_l2_LL           |a - b| / ((|a| + |b|) / 2)

given on the rows of both versions; NaN on words the versions do not share (paired region by region from
each region's start and end while the words are identical: "hunted" vs "hunted,", cue words), on conditions
other than the pair, and for items, suites and texts without an ambiguous/unambiguous pair.

Routing, for each head ``LxHy`` of ``heads``: attention probability from w's first token to the tokens of the
suite's ambiguous region (``ambiguity.ambiguous_region``) of the same sentence, summed::

    attn_amb_LxHy        sum_{k in ambiguous region} A[L, y][first token of w, k]

0 for words before the region (causal attention). A suite that names no ambiguous region but pairs an
ambiguous with an unambiguous version (the SAP item files) takes, in both versions, the words right before the
disambiguating region that the versions share, back to where they differ
(:func:`mechinterp.compare.reanalysis.shared_stretch`: NP/S "the file" after "showed (that)", NP/Z "the deer"
after "hunted(,)", MV/RR "warned about the dangers" after "soldiers (who were)"). NaN for plain texts, for
conditions outside the pair, and where the region or stretch is empty.

One forward pass per batch of sentences gives surprisal, entropy, residual states, probe activations,
attention and the reading estimator's continuation probabilities after every word
(:mod:`mechinterp.compare.word_pass`: one-token continuations are read off the sentence's own next-token
distributions; only the later tokens of multi-token continuations need a second, small pass on the sentence's
key/value cache). Results do not depend on ``batch_size`` and equal the direct computations (one estimator run
per word prefix, :func:`mechinterp.compare.belief.prefix_beliefs`) to float rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from mechinterp.compare.belief import belief_sets, belief_update, beliefs_from_logprobs
from mechinterp.compare.reanalysis import aligned_words, shared_stretch, state_distances
from mechinterp.compare.word_pass import word_pass
from mechinterp.errors import ConfigError, SuiteError
from mechinterp.layers import check_layers
from mechinterp.locate.attention import Head
from mechinterp.locate.sites import Site
from mechinterp.stimuli.types import Condition, Item, Suite
from mechinterp.surprisal import (
    SurprisalConfig,
    bow_mask,
    sentence_word_table,
    suite_sequences,
    suite_word_table,
    word_scores,
)
from mechinterp.tokenization import TokenizedText, tokenize_text

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.probes.artifact import ProbeArtifact
    from mechinterp.readings.continuations import ReadingSet


def probe_label(probe: "ProbeArtifact") -> str:
    """The default column label of a probe: ``<construction without '/'>_<component>_L<layer>[H<head>]``."""
    s = probe.site
    head = f"H{s.head}" if s.head is not None else ""
    return f"{probe.construction.replace('/', '')}_{s.component}_L{s.layer}{head}"


def _probes(probes: "Sequence[ProbeArtifact] | Mapping[str, ProbeArtifact]") -> dict[str, "ProbeArtifact"]:
    if isinstance(probes, Mapping):
        return dict(probes)
    out: dict[str, ProbeArtifact] = {}
    for p in probes:
        label = probe_label(p)
        if label in out:
            raise ConfigError(f"two probes would both be labelled {label!r}: pass them as a mapping label -> probe")
        out[label] = p
    return out


def _pairs(suite: Suite) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """(ambiguous sequence index, unambiguous sequence index, aligned word pairs) for each item with both."""
    if suite.ambiguity is None:
        return []
    index, n = {}, 0
    for it in suite.items:
        for c in it.conditions:
            index[(it.key, c.name)] = n
            n += 1
    out = []
    for it in suite.items:
        try:
            amb, unamb = suite.pair(it)
        except (KeyError, SuiteError):
            continue
        out.append((index[(it.key, amb.name)], index[(it.key, unamb.name)], aligned_words(amb, unamb)))
    return out


def routing_spans(suite: Suite, keys: Sequence[tuple[Item, Condition]],
                  tts: Sequence[TokenizedText]) -> list[range | None] | None:
    """The tokens each sequence's routing columns attend to: the suite's ambiguous region, or for a pair without
    one the stretch both versions share before the disambiguating region (see the module docstring)."""
    amb = suite.ambiguity
    if amb is None:
        return None
    if amb.ambiguous_region is not None:
        return [range(*tt.region_spans[amb.ambiguous_region]) if amb.ambiguous_region in tt.region_spans else None
                for tt in tts]
    words: dict[tuple[str, str], list[int]] = {}
    for it in suite.items:
        try:
            a, b = suite.pair(it)
        except (KeyError, SuiteError):
            continue
        stretch = shared_stretch(a, b, amb.disambiguating_region)
        if stretch:
            words[(it.key, a.name)] = [i for i, _ in stretch]
            words[(it.key, b.name)] = [j for _, j in stretch]
    spans: list[range | None] = []
    for (it, c), tt in zip(keys, tts):
        w = words.get((it.key, c.name))
        spans.append(range(tt.word_spans[w[0]][0], tt.word_spans[w[-1]][1]) if w else None)
    return spans


def word_predictors(
    model: "Model",
    suite: Suite | Sequence[str],
    probes: "Sequence[ProbeArtifact] | Mapping[str, ProbeArtifact]" = (),
    heads: Iterable[Head | str | tuple[int, int]] = (),
    layers: Iterable[int] | str | None = None,
    batch_size: int = 16,
    whitespace: str = "leading",
    continuations: "Mapping[str, Mapping[str, ReadingSet]] | None" = None,
    readings: bool = True,
) -> pd.DataFrame:
    """Word-level predictors (surprisal, entropy change, belief updates, reanalysis, routing) of every word.

    Args:
        model: the model (HF backend, eager attention as :func:`mechinterp.load_model` loads it).
        suite: a suite, or plain texts (words are whitespace-separated; one sequence per text).
        probes: reading probes, or a mapping column label -> probe.
        heads: heads for the routing columns: ``mi.Head`` values, ``"L11H0"`` labels or ``(layer, head)`` pairs.
        layers: layers of the representational distances (a list or the layer grammar, e.g. ``"every 3"``);
            None: every layer; ``()``: none.
        batch_size: sentences per forward pass.
        whitespace: ``"leading"`` or ``"trailing"`` (see :mod:`mechinterp.surprisal`).
        continuations: the reading estimator's continuation sets; default the shipped file.
        readings: run the reading estimator after every word (read off the same passes; multi-token
            continuations add a small pass per batch); False leaves the ``reading_*`` columns NaN.

    Returns:
        One row per item x condition x word (a suite: the columns of :func:`mechinterp.suite_surprisal`
        first) or per sentence x word (texts), then the predictor columns, each defined with its formula in
        :mod:`mechinterp.compare.predictors`.

    Example:
        >>> import mechinterp as mi
        >>> model = mi.load_model("gemma3-270m")
        >>> table = mi.word_predictors(model, mi.load_suite("npz").head(2), heads=["L11H0"], layers=[6, 12])
        >>> table[["word", "surprisal_bits", "reading_tv", "repr_cos_L6", "attn_amb_L11H0"]]
    """
    if whitespace not in ("leading", "trailing"):
        raise ConfigError(f"whitespace must be 'leading' or 'trailing', got {whitespace!r}")
    config = SurprisalConfig(batch_size=batch_size, whitespace=whitespace)  # pyright: ignore[reportArgumentType]  # checked above
    is_suite = isinstance(suite, Suite)
    if is_suite:
        keys, tts = suite_sequences(model, suite)
    else:
        if isinstance(suite, str):
            raise ConfigError("texts must be a sequence of strings, not one string")
        keys, tts = [], [tokenize_text(model.tokenizer, model.bos_token_id, t) for t in suite]
    wanted = layers if layers is None or isinstance(layers, str) else list(layers)
    if wanted is None:
        layer_list = list(range(model.n_layers))
    else:
        layer_list = check_layers(wanted, model.n_layers) if wanted else []
    probe_map = _probes(probes)
    head_list = list(dict.fromkeys(Head.parse(h) for h in heads))
    for h in head_list:
        h.check(model)
    pairs = _pairs(suite) if is_suite else []
    resid = {L: Site(L, "resid_post") for L in layer_list} if pairs else {}
    probe_sites = {lab: Site(p.site.layer, p.site.component, None, p.site.head) for lab, p in probe_map.items()}
    sites = list(dict.fromkeys([*resid.values(), *probe_sites.values()]))
    spans = routing_spans(suite, keys, tts) if is_suite and head_list else None  # pyright: ignore[reportArgumentType]  # a Suite when is_suite
    sets = belief_sets(model, suite, continuations) if is_suite and readings else {}  # pyright: ignore[reportArgumentType]  # a Suite when is_suite
    seq_sets = [sets.get((it.key, c.name)) for it, c in keys] if sets else [None] * len(tts)
    branches = [{w: bs.token_ids for w in range(len(tt.words))} if bs is not None else None
                for bs, tt in zip(seq_sets, tts)]
    states = word_pass(model, tts, sites, head_list, spans, batch_size, bow_mask(model, config), branches)

    scores = [word_scores(tt, st.scores, whitespace) for tt, st in zip(tts, states)]
    table = suite_word_table(suite, keys, tts, scores) if is_suite else sentence_word_table(tts, scores)  # pyright: ignore[reportArgumentType]  # a Suite when is_suite
    starts = np.cumsum([0] + [len(tt.words) for tt in tts])
    n = int(starts[-1])

    def per_sentence(values: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate(values) if values else np.empty(0)

    table["entropy_change_bits"] = per_sentence([np.concatenate([[np.nan], np.diff(e)]) for _, e in scores])

    p = [beliefs_from_logprobs(bs, len(tt.words), st.continuations) if bs is not None
         else np.full(len(tt.words), np.nan) for bs, tt, st in zip(seq_sets, tts, states)]
    updates = [belief_update(x) for x in p]
    table["reading_p_preferred"] = per_sentence(p)
    table["reading_tv"] = per_sentence([u[0] for u in updates])
    table["reading_kl_bits"] = per_sentence([u[1] for u in updates])

    for lab, probe in probe_map.items():
        q = [probe.predict_proba(st.states[probe_sites[lab]]).double().numpy() for st in states]
        upd = [belief_update(x) for x in q]
        table[f"probe_p_{lab}"] = per_sentence(q)
        table[f"probe_tv_{lab}"] = per_sentence([u[0] for u in upd])
        table[f"probe_kl_bits_{lab}"] = per_sentence([u[1] for u in upd])

    for L in layer_list:
        cos, l2 = np.full(n, np.nan), np.full(n, np.nan)
        for ia, ib, pw in pairs:
            if not pw:
                continue
            wa, wb = [a for a, _ in pw], [b for _, b in pw]
            c, d = state_distances(states[ia].states[resid[L]][wa], states[ib].states[resid[L]][wb])
            for i, w in ((ia, wa), (ib, wb)):
                cos[starts[i] + np.asarray(w)] = c
                l2[starts[i] + np.asarray(w)] = d
        table[f"repr_cos_L{L}"] = cos
        table[f"repr_l2_L{L}"] = l2

    for h in head_list:
        table[f"attn_amb_{h}"] = per_sentence([st.routing[h] for st in states])
    return table

"""Run a suite through the original model and each intervention: word surprisal, garden-path effects, and side
effects (perplexity on Natural Stories text, surprisal on the unambiguous controls).

Side effects, per intervention:

* **Natural Stories perplexity**: word-level perplexity ``2 ** mean(word surprisal in bits)`` on a bounded
  subset of the corpus (default: the first 150 words of each of the 10 stories, 1,500 words, each story
  scored as one text so every word has the story so far as context; the first word of each text is left
  out). Interventions scoped to the stimuli act at *every* position of this text (their scope does not know
  it), i.e. this is the cost of leaving the intervention on all the time.
* **Unambiguous controls**: the change in surprisal (bits) of the unambiguous sentences at ROI 0-2 and over
  all their words but the first.

An intervention that raises the perplexity by more than :data:`PPL_FLAG_RATIO` - 1 (5%) is flagged
(``flag_perplexity``) and every report that shows it says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from mechinterp.effects import garden_path_effects
from mechinterp.errors import ConfigError
from mechinterp.interventions.compose import (
    Composite,
    sentence_surprisal_under,
    suite_surprisal_under,
)
from mechinterp.interventions.freetext import next_token_kl, rescoped
from mechinterp.readings.efficacy import efficacy_tables, readings_under

if TYPE_CHECKING:
    from mechinterp.compare.humans import NaturalStories
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite
    from mechinterp.surprisal import SurprisalConfig

ORIGINAL = "original"
PPL_FLAG_RATIO = 1.05
NS_WORDS_PER_STORY = 150
SIDE_EFFECT_COLUMNS = [
    "intervention", "ns_words", "ns_perplexity", "ns_perplexity_original", "ns_perplexity_ratio", "flag_perplexity",
    "unamb_roi_delta_bits", "unamb_roi_abs_delta_bits", "unamb_sentence_delta_bits", "unamb_sentence_abs_delta_bits",
    "ns_perplexity_scoped", "ns_perplexity_scoped_ratio", "ns_scoped_token_share", "ns_kl_nats", "ns_kl_scoped_nats",
]


@dataclass(frozen=True)
class CollapseResult:
    words: pd.DataFrame  # suite_surprisal columns + intervention
    effects: pd.DataFrame  # garden_path_effects columns + intervention
    side_effects: pd.DataFrame  # SIDE_EFFECT_COLUMNS
    ns_words: pd.DataFrame | None = None  # per-word Natural Stories surprisal + intervention
    descriptions: dict[str, Any] = field(default_factory=dict)
    readings: pd.DataFrame | None = None  # mechinterp.readings rows + intervention
    efficacy: pd.DataFrame | None = None  # mechinterp.readings.summary.EFFICACY_COLUMNS

    def flagged(self) -> list[str]:
        se = self.side_effects
        return se.loc[se["flag_perplexity"].fillna(False).astype(bool), "intervention"].tolist()


def ns_texts(corpus: "NaturalStories", words_per_story: int | None = NS_WORDS_PER_STORY) -> list[str]:
    sub = corpus.subset(words_per_story=words_per_story) if words_per_story else corpus
    return [" ".join(sub.story_words(s)["word"]) for s in sub.stories]


def perplexity(words: pd.DataFrame) -> float:
    """Word-level perplexity ``2 ** mean bits`` over all words but the first of each text."""
    w = words[words["word_index"] > 0]
    if w.empty:
        raise ConfigError("no words to compute a perplexity on")
    return float(2.0 ** w["surprisal_bits"].mean())


def unambiguous_side_effects(words: pd.DataFrame, original: pd.DataFrame, suite: "Suite",
                             rois: tuple[int, ...] = (0, 1, 2)) -> dict[str, float]:
    """Mean (and mean absolute) change in surprisal of the unambiguous conditions at ROIs and overall."""
    if suite.ambiguity is None:
        raise ConfigError(f"suite {suite.name!r} has no ambiguity annotation")
    unamb = suite.ambiguity.unambiguous_condition
    key = ["construction", "item", "condition", "word_index"]
    a = words[words["condition"] == unamb].set_index(key)["surprisal_bits"]
    b = original[original["condition"] == unamb].set_index(key)["surprisal_bits"]
    d = (a - b).dropna()
    idx = d.index.to_frame(index=False)
    reg = original[original["condition"] == unamb]
    first = reg[reg["region"] == suite.ambiguity.disambiguating_region].groupby(["construction", "item"])["word_index"].min()
    start = idx.set_index(["construction", "item"]).index.map(first.to_dict().get)
    rel = idx["word_index"].to_numpy() - np.asarray(start, dtype=float)
    in_roi = np.isin(rel, rois)
    not_first = idx["word_index"].to_numpy() > 0
    dv = d.to_numpy()
    return {
        "unamb_roi_delta_bits": float(dv[in_roi].mean()), "unamb_roi_abs_delta_bits": float(np.abs(dv[in_roi]).mean()),
        "unamb_sentence_delta_bits": float(dv[not_first].mean()),
        "unamb_sentence_abs_delta_bits": float(np.abs(dv[not_first]).mean()),
    }


def scoped_side_effects(model: "Model", texts: list[str], intervention: Composite | None, ppl: float,
                        base_ppl: float, config: "SurprisalConfig | None" = None, log=None) -> dict[str, float]:
    """Natural Stories perplexity with ``intervention`` acting only on the noun phrases right after a verb
    (:func:`mechinterp.interventions.freetext.rescoped`), the share of tokens it then edits, and the mean
    next-token KL (nats) from the original model with the intervention everywhere and scoped.

    Args:
        model: the model.
        texts: the Natural Stories texts (as :func:`ns_texts` gives them).
        intervention: the intervention (None: the original model: ratio 1, KL 0).
        ppl: its perplexity with the intervention everywhere; base_ppl: the original model's.
        config: surprisal configuration (backend).
        log: progress messages.

    Returns:
        The ``ns_perplexity_scoped``, ``ns_perplexity_scoped_ratio``, ``ns_scoped_token_share``, ``ns_kl_nats``
        and ``ns_kl_scoped_nats`` columns (NaN where undefined, e.g. for context truncation).
    """
    nan = float("nan")
    if intervention is None:
        return {"ns_perplexity_scoped": base_ppl, "ns_perplexity_scoped_ratio": 1.0, "ns_scoped_token_share": 0.0,
                "ns_kl_nats": 0.0, "ns_kl_scoped_nats": 0.0}
    try:
        siv, info = rescoped(model, intervention, texts)
    except ConfigError as exc:
        if log:
            log(f"no scoped side effect for {intervention.label}: {exc}")
        return dict.fromkeys(("ns_perplexity_scoped", "ns_perplexity_scoped_ratio", "ns_scoped_token_share",
                              "ns_kl_nats", "ns_kl_scoped_nats"), nan)
    if info:
        sppl = perplexity(sentence_surprisal_under(model, texts, siv, config))
        share = info["edited_tokens"] / max(1, info["tokens"])
    else:  # no suite-scoped hook: it acts everywhere in free text too
        sppl, share = ppl, 1.0
    backend = config.backend if config is not None else "hf"
    kl, kl_scoped = next_token_kl(model, texts, [intervention, siv if info else None], backend=backend)
    return {"ns_perplexity_scoped": sppl, "ns_perplexity_scoped_ratio": sppl / base_ppl, "ns_scoped_token_share": share,
            "ns_kl_nats": kl, "ns_kl_scoped_nats": kl_scoped if info else kl}


def run_collapse(model: "Model", suite: "Suite", interventions: Mapping[str, Composite],
                 config: "SurprisalConfig | None" = None, corpus: "NaturalStories | None" = None,
                 ns_words_per_story: int | None = NS_WORDS_PER_STORY, rois: tuple[int, ...] = (0, 1, 2),
                 log=None, readings: bool = True, readings_options: Mapping[str, Any] | None = None,
                 scoped: bool = True) -> CollapseResult:
    """Score ``suite`` (and the Natural Stories subset, if ``corpus`` is given) with the original model and
    under each named intervention. With ``readings``, also the probability of each reading before and after
    every intervention and its efficacy (:mod:`mechinterp.readings.efficacy`; ``readings_options`` go to
    :func:`~mechinterp.readings.efficacy.readings_under`). With ``scoped`` (and a corpus), also the Natural
    Stories side effects where the intervention would act in free text and the next-token KL both ways
    (:func:`scoped_side_effects`)."""
    if ORIGINAL in interventions:
        raise ConfigError(f"{ORIGINAL!r} is reserved for the unmodified model: name the intervention otherwise")
    runs: dict[str, Composite | None] = {ORIGINAL: None, **interventions}
    texts = ns_texts(corpus, ns_words_per_story) if corpus is not None else None
    words, effects, ns_all, side, read = [], [], [], [], []
    base_words = base_ppl = None
    for name, iv in runs.items():
        if log:
            log(f"scoring {suite.name} under {name}")
        w = suite_surprisal_under(model, suite, iv, config)
        e = garden_path_effects(w, suite, rois)
        words.append(w.assign(intervention=name))
        effects.append(e.assign(intervention=name))
        row: dict[str, Any] = {"intervention": name}
        if texts is not None:
            nw = sentence_surprisal_under(model, texts, iv, config)
            ns_all.append(nw.assign(intervention=name))
            ppl = perplexity(nw)
            base_ppl = ppl if name == ORIGINAL else base_ppl
            assert base_ppl is not None  # the original model runs first (runs starts with ORIGINAL)
            row.update(ns_words=int((nw["word_index"] > 0).sum()), ns_perplexity=ppl, ns_perplexity_original=base_ppl,
                       ns_perplexity_ratio=ppl / base_ppl, flag_perplexity=bool(ppl / base_ppl > PPL_FLAG_RATIO))
            if scoped:
                row.update(scoped_side_effects(model, texts, iv, ppl, base_ppl, config, log))
        if name == ORIGINAL:
            base_words = w
        row.update(unambiguous_side_effects(w, base_words, suite, rois))
        side.append(row)
        if readings:
            read.append(readings_under(model, suite, name, iv, config, log=log, **dict(readings_options or {})))
    return CollapseResult(
        words=pd.concat(words, ignore_index=True), effects=pd.concat(effects, ignore_index=True),
        side_effects=pd.DataFrame(side).reindex(columns=SIDE_EFFECT_COLUMNS),
        ns_words=pd.concat(ns_all, ignore_index=True) if ns_all else None,
        descriptions={n: (iv.describe() if iv is not None else {"kind": "none"}) for n, iv in runs.items()},
        **(efficacy_tables(read, **{k: v for k, v in dict(readings_options or {}).items() if k == "factor"})
           if readings else {}),
    )

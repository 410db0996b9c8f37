"""The memory ladder: degrade a model's memory of the preceding words step by step and measure, at every step,
how good a language model it still is, how well its surprisal fits human reading times, and its garden-path
effects against the human ones.

Steps (:class:`LadderStep`; the unmodified model is always step 0)::

    original                 the model as loaded
    truncate k=K | k=full    every word scored with only the K tokens before it (plus BOS)
                             (:mod:`mechinterp.interventions.truncation`); ``full`` is the whole prefix, i.e.
                             the original model (scored once and reused; the tests check that a K longer than
                             every text gives the same numbers)
    recency lam=L            s_ij - L * (i - j) on every head's attention scores
    keynoise sigma=S         keys more than D tokens back read as k_j + S * rms(k_j) * eps_j
                             (:mod:`mechinterp.interventions.memory`)

Step lists are written with one grammar (:func:`ladder_steps`, :func:`mechinterp.lists.number_list`): a
comma-separated list of values per kind,
e.g. truncation ``2,3,4,6,8,16,full``, recency ``0.05,0.2,1``, key noise ``0.5,1,2``.

Measures per step (``memory_ladder`` returns one row per step x construction x ROI; the step's measures repeat
on each of its rows):

* ``ns_perplexity``: word-level perplexity ``2 ** mean(surprisal bits)`` over the first ``ns_words`` words of
  each Natural Stories story, each story read as one text (first word left out), as in
  :func:`mechinterp.interventions.collapse.perplexity`;
* ``ns_d_loglik`` (``_low``, ``_high``): the reading-time fit, held-out log-likelihood per word of
  ``RT ~ length + log_freq + surprisal`` (each with spillover lags 0..``lags``) minus that of the baseline
  ``RT ~ length + log_freq``, folds by story, 95% bootstrap interval over stories
  (:func:`mechinterp.compare.fit_sets.fit_natural_stories_sets`); also ``ns_d_r2``;
* per construction and ROI (0 = disambiguating word): the garden-path effect in bits with its bootstrap
  interval (:func:`mechinterp.effects.garden_path_effects`), the predicted effect in ms through the *original*
  model's surprisal-to-RT link (:mod:`mechinterp.compare.linking`; the link is the reader, the step changes
  what it reads), the human effect, their ratio, and the Pearson r of predicted and human by-item effects
  with the noise ceiling (:func:`mechinterp.compare.likeness.compare`); ``item_r_all``: that r pooled over
  constructions at the ROI; ``order_matches``: whether the step ranks the constructions as humans do at ROI 1.

The question the figure (:func:`mechinterp.compare.figures.ladder_figure`) asks: does the fit to reading times
rise as perplexity worsens (a less perfect memory reads more like people, Kuribayashi et al. 2022) and then
fall (an inverse U)?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd

from mechinterp.compare.fit_sets import fit_natural_stories_sets
from mechinterp.compare.humans import human_subset, load_sap_effects, noise_ceiling, published_effects
from mechinterp.compare.likeness import compare
from mechinterp.compare.linking import fit_natural_stories
from mechinterp.errors import ConfigError
from mechinterp.interventions.collapse import ns_texts, perplexity
from mechinterp.interventions.memory import KeyNoise, MemoryEdit, RecencyBias
from mechinterp.interventions.truncation import truncated_sentence_surprisal, truncated_suite_surprisal
from mechinterp.lists import FULL, number_list
from mechinterp.surprisal import SurprisalConfig, sentence_surprisal, suite_surprisal

if TYPE_CHECKING:
    from mechinterp.compare.humans import NaturalStories
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite

Kind = Literal["original", "truncate", "recency", "keynoise"]
KINDS = ("original", "truncate", "recency", "keynoise")
STEP_COLUMNS = ["model", "step", "kind", "param", "label", "ns_words", "ns_perplexity", "ns_d_loglik",
                "ns_d_loglik_low", "ns_d_loglik_high", "ns_d_r2", "order_matches", "order_share"]


@dataclass(frozen=True)
class LadderStep:
    """One rung: ``kind`` and its parameter (``k`` for truncate, ``FULL`` = the whole prefix; ``lam``;
    ``sigma``), with ``distance`` and ``seed`` for key noise."""

    kind: Kind
    param: float = 0.0
    distance: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown ladder step kind {self.kind!r}: choose {', '.join(KINDS)}")
        if self.kind == "truncate" and self.param != FULL and (self.param < 0 or self.param != int(self.param)):
            raise ConfigError(f"truncation needs a whole k >= 0 or 'full', got {self.param!r}")
        self.edit()  # validates lam / sigma / distance / seed

    @property
    def label(self) -> str:
        if self.kind == "original":
            return "original"
        if self.kind == "truncate":
            return f"truncate k={'full' if self.param == FULL else int(self.param)}"
        if self.kind == "recency":
            return f"recency lam={self.param:g}"
        return f"keynoise sigma={self.param:g} d>{self.distance}"

    @property
    def is_original(self) -> bool:
        """Whether this step is the unmodified model (``original`` and ``truncate k=full``)."""
        return self.kind == "original" or (self.kind == "truncate" and self.param == FULL)

    def edit(self) -> MemoryEdit | None:
        """The attention edit of a recency or key-noise step, else None."""
        if self.kind == "recency":
            return RecencyBias(float(self.param))
        if self.kind == "keynoise":
            return KeyNoise(float(self.param), int(self.distance), int(self.seed))
        return None

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "param": self.param if self.param != FULL else "full"}
        if self.kind == "keynoise":
            d.update(distance=self.distance, seed=self.seed)
        return d


def ladder_steps(truncate: str | None = None, recency: str | None = None, keynoise: str | None = None,
                 distance: int = 8, seed: int = 0) -> list[LadderStep]:
    """The steps of a ladder: the original model, then every truncation, recency and key-noise value.

    Args:
        truncate: context sizes in tokens, e.g. ``"2,3,4,6,8,16,full"``.
        recency: recency-bias slopes lambda (per token of distance), e.g. ``"0.05,0.2,1"``.
        keynoise: key-noise sizes sigma (relative to each key's rms), e.g. ``"0.5,1,2"``.
        distance: key noise acts on keys more than this many tokens back.
        seed: key-noise seed.

    Returns:
        The steps, ``original`` first.

    Example:
        >>> [s.label for s in ladder_steps("2,full", "0.1", None)]
        ['original', 'truncate k=2', 'truncate k=full', 'recency lam=0.1']
    """
    ks = number_list(truncate, "--truncate", allow_full=True)
    for k in ks:
        if k != FULL and k != int(k):
            raise ConfigError(f"--truncate {truncate!r}: {k:g} is not a whole number of tokens")
    steps = [LadderStep("original")]
    steps += [LadderStep("truncate", k) for k in ks]
    steps += [LadderStep("recency", v) for v in number_list(recency, "--recency")]
    steps += [LadderStep("keynoise", v, distance, seed) for v in number_list(keynoise, "--keynoise")]
    return steps


def score_step(model: "Model", step: LadderStep, suite: "Suite", texts: Sequence[str],
               config: SurprisalConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(suite word table, free-text word table) of one step.

    Args:
        model: the model.
        step: the step.
        suite: the stimuli.
        texts: the Natural Stories texts.
        config: surprisal configuration (memory edits need ``backend="hf"``).

    Returns:
        The per-word tables of :func:`mechinterp.surprisal.suite_surprisal` and
        :func:`mechinterp.surprisal.sentence_surprisal`.
    """
    if step.kind == "truncate" and step.param != FULL:
        k = int(step.param)
        return (truncated_suite_surprisal(model, suite, k, config),
                truncated_sentence_surprisal(model, texts, k, config))
    edit = step.edit()
    if edit is None:
        return suite_surprisal(model, suite, config, show_progress=False), sentence_surprisal(model, texts, config)
    if config.backend != "hf":
        raise ConfigError(f"{step.label}: attention edits run on the hf backend only, not {config.backend}")
    with edit.apply(model):
        return suite_surprisal(model, suite, config, show_progress=False), sentence_surprisal(model, texts, config)


def ns_table(corpus: "NaturalStories", scored: pd.DataFrame) -> pd.DataFrame:
    """The corpus rows (``corpus`` already cut to the scored words) with ``surprisal_bits`` of the texts of
    :func:`mechinterp.interventions.collapse.ns_texts` (text ``s`` = story ``corpus.stories[s]``)."""
    out = corpus.words.sort_values(["story", "zone"]).reset_index(drop=True)
    sc = scored.sort_values(["sentence", "word_index"])
    if len(sc) != len(out):
        raise ConfigError(f"Natural Stories word count mismatch: {len(sc)} scored, {len(out)} in the corpus")
    out["surprisal_bits"] = sc["surprisal_bits"].to_numpy()
    out["n_tokens"] = sc["n_tokens"].to_numpy()
    return out


def memory_ladder(model: "Model", suite: "Suite", corpus: "NaturalStories", steps: Sequence[LadderStep],
                  ns_words: int = 300, config: SurprisalConfig | None = None, rois: Sequence[int] = (0, 1, 2),
                  lags: int = 2, n_folds: int = 5, n_boot: int = 1000, seed: int = 0,
                  human: pd.DataFrame | None = None, human_items: pd.DataFrame | None = None,
                  ceiling: pd.DataFrame | None = None,
                  log: Callable[[str], Any] | None = None) -> pd.DataFrame:
    """Run the memory ladder (module docstring: the steps and measures).

    Args:
        model: the model.
        suite: SAP items (or any suite whose constructions have published human effects).
        corpus: Natural Stories (:func:`mechinterp.compare.humans.load_natural_stories`).
        steps: the steps (:func:`ladder_steps`); the original model is added first when missing.
        ns_words: words of each story scored (the first ``ns_words``).
        config: surprisal configuration.
        rois: regions of interest, in words from the disambiguating word.
        lags: spillover lags of the reading-time regressions.
        n_folds: cross-validation folds (by story; at most the number of stories).
        n_boot: bootstrap replicates of every interval.
        seed: bootstrap and fold seed.
        human: construction-level human effects (default: the SAP subset the suite names, else ClassicGP).
        human_items: by-item human effects (default: the shipped SAP Benchmark's).
        ceiling: the noise ceiling (default: the shipped SAP Benchmark's).
        log: progress messages (e.g. ``print``).

    Returns:
        One row per step x construction x ROI: :data:`STEP_COLUMNS`, then ``construction``, ``roi``,
        ``n_items``, ``effect_bits`` (``_low``, ``_high``), ``predicted_ms`` (``_low``, ``_high``), ``human_ms``
        (``_low``, ``_high``), ``ratio`` (``_low``, ``_high``), ``inside_human_interval``, ``item_r``
        (``_low``, ``_high``), ``noise_ceiling``, ``item_r_all``.

    Example:
        >>> import mechinterp as mi
        >>> from mechinterp.compare.humans import load_natural_stories
        >>> from mechinterp.compare.ladder import ladder_steps
        >>> model, suite = mi.load_model("gemma3-270m"), mi.load_suite("sap:ClassicGP").head(6)
        >>> corpus = load_natural_stories().subset([1, 2, 3])
        >>> table = mi.memory_ladder(model, suite, corpus, ladder_steps("3", "0.5"), ns_words=60, n_folds=3,
        ...                          n_boot=100)
        >>> table.drop_duplicates("step")[["label", "ns_perplexity", "ns_d_loglik"]]
    """
    config = config or SurprisalConfig()
    steps = list(steps)
    if not steps or not steps[0].kind == "original":
        steps = [LadderStep("original"), *[s for s in steps if s.kind != "original"]]
    labels = [s.label for s in steps]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"ladder steps repeat: {labels}")
    if ns_words < 1:
        raise ConfigError(f"ns_words must be at least 1, got {ns_words}")
    sub = corpus.subset(words_per_story=ns_words)
    if n_folds < 2 or n_folds > len(sub.stories):
        raise ConfigError(f"n_folds must be between 2 and the {len(sub.stories)} stories, got {n_folds}")
    if human is None or human_items is None or ceiling is None:
        subset = human_subset(suite)
        human = published_effects(subset) if human is None else human
        human_items = load_sap_effects(None, subset, "item") if human_items is None else human_items
        ceiling = noise_ceiling() if ceiling is None else ceiling
    texts = ns_texts(sub, None)
    words, base_rows = [], []
    original: tuple[pd.DataFrame, pd.DataFrame] | None = None
    fit = None
    for i, step in enumerate(steps):
        if log:
            log(f"[{i + 1}/{len(steps)}] {model.name}: {step.label}")
        if step.is_original and original is not None:
            w, nw = original
        else:
            w, nw = score_step(model, step, suite, texts, config)
        table = ns_table(sub, nw)
        if i == 0:
            original = (w, nw)
            fit, _ = fit_natural_stories(model, sub, config, scored=table)
        summary, _ = fit_natural_stories_sets(table, ["surprisal"], lags, n_folds, n_boot, seed)
        s = summary.set_index("set").loc["surprisal"]
        words.append(w.assign(intervention=step.label))
        base_rows.append({
            "model": model.name, "step": i, "kind": step.kind, "param": float(step.param), "label": step.label,
            "ns_words": int((nw["word_index"] > 0).sum()), "ns_perplexity": perplexity(nw),
            "ns_d_loglik": float(s["d_loglik_vs_baseline"]), "ns_d_loglik_low": float(s["d_loglik_vs_baseline_low"]),
            "ns_d_loglik_high": float(s["d_loglik_vs_baseline_high"]), "ns_d_r2": float(s["d_r2_vs_baseline"]),
        })
    assert fit is not None  # step 0 is the original model
    # one comparison per step, each with the same seed: identical steps get identical intervals
    cmps = [compare(w, suite, fit, human, human_items, ceiling, rois=rois, order_roi=1, n_boot=n_boot, seed=seed)
            for w in words]
    order = pd.concat([c.order for c in cmps], ignore_index=True)
    cons = pd.concat([c.constructions for c in cmps], ignore_index=True).drop(columns=["flag_perplexity"],
                                                                                errors="ignore")
    cor = pd.concat([c.correlations for c in cmps], ignore_index=True)
    base = pd.DataFrame(base_rows)
    if len(order):
        o = order[order["primary"]].set_index("intervention")
        base["order_matches"] = base["label"].map(o["matches"].to_dict())
        base["order_share"] = base["label"].map(o["bootstrap_share_matching"].to_dict())
    else:
        base["order_matches"], base["order_share"] = np.nan, np.nan
    if len(cor):
        per = cor[cor["construction"] != "all"][["intervention", "construction", "roi", "r", "r_low", "r_high",
                                                  "noise_ceiling"]]
        per = per.rename(columns={"r": "item_r", "r_low": "item_r_low", "r_high": "item_r_high"})
        cons = cons.merge(per, on=["intervention", "construction", "roi"], how="left")
        pooled = cor[cor["construction"] == "all"][["intervention", "roi", "r"]].rename(columns={"r": "item_r_all"})
        cons = cons.merge(pooled, on=["intervention", "roi"], how="left")
    out = base[STEP_COLUMNS].merge(cons.rename(columns={"intervention": "label"}), on="label", how="left")
    return pd.DataFrame(out.sort_values(["step", "construction", "roi"], kind="stable")).reset_index(drop=True)


def ladder_summary(table: pd.DataFrame, roi: int = 0) -> pd.DataFrame:
    """One row per model and step: the step's measures and, per construction, the effect in bits, the
    predicted / human ratio and the item r at ``roi`` (columns ``<construction> bits`` ...).

    Args:
        table: a ladder table (:func:`memory_ladder`), possibly of several models.
        roi: the ROI shown.

    Returns:
        The wide summary.

    Example:
        >>> ladder_summary(table, roi=1)[["label", "ns_perplexity", "ns_d_loglik"]]
    """
    cols = [c for c in STEP_COLUMNS if c in table.columns]
    base = pd.DataFrame(table.drop_duplicates(["model", "step"])[cols]).reset_index(drop=True)
    if "roi" not in table.columns or "construction" not in table.columns:
        return base
    t = pd.DataFrame(table[table["roi"] == roi])
    for c in [c for c in dict.fromkeys(t["construction"]) if isinstance(c, str)]:
        g = t[t["construction"] == c].set_index(["model", "step"])
        for col, name in (("effect_bits", "bits"), ("ratio", "ratio"), ("item_r", "item r")):
            if col in g.columns:
                base[f"{c} {name}"] = [g[col].get((m, s), np.nan) for m, s in zip(base["model"], base["step"])]
    return base

"""Which predictors beat length, frequency and surprisal: cross-validated fits on Natural Stories reading times
and on SAP by-item garden-path effects (:mod:`mechinterp.compare.regression` does the statistics).

Predictor sets, from a list of predictor columns of :func:`mechinterp.word_predictors` (``surprisal``,
``entropy`` and ``entropy_change`` are accepted for the ``*_bits`` columns)::

    baseline                 length, log_freq           (letters; Zipf log10 frequency, wordfreq)
    surprisal                baseline + surprisal_bits
    surprisal+<p>            surprisal + p              for every other predictor p
    surprisal+all            surprisal + every predictor (when there are two or more others)

Probe predictors (``probe_p_<label>``, ``probe_tv_<label>``, ``probe_kl_bits_<label>``) come from saved probe
artifacts (:class:`~mechinterp.probes.ProbeArtifact`, ``mechinterp fit --probes DIR ...``) and are computed on
both data sets.

each with spillover lags 0..K of every predictor (the baseline's too). Every set is compared with ``baseline``
and with ``surprisal`` (ΔLogLik per word and ΔR², bootstrap 95% intervals over items).

Data sets:

* Natural Stories: per-word mean RTs (words outside [100, 3000] ms dropped), lags within each story, folds by
  story. Predictors are computed on overlapping windows of a story's words (:func:`context_windows`; by
  default 300 words, of which the first 100 are context only: every word has at least 100 words of left
  context), so stories longer than a model's practical context work on any model.
* SAP: one row per item x ROI (0-2 words from the disambiguator): the human by-item effect (ms), and the
  difference ambiguous - unambiguous of every lagged predictor column at that word (lags within each
  sentence). The representational-reanalysis distances (``repr_*``) compare the two versions with each other:
  they are the ambiguous version's reanalysis, and the unambiguous version has none (0), so their difference is
  the distance itself. A linear RT model applied to both versions predicts exactly ``difference @ coefficients`` (the
  intercept cancels), so the model is fitted on these rows, with one intercept per ROI (a garden-path cost the
  predictors do not explain), in folds by item: an item's two versions are one row, never split. Beside the
  log-likelihood and R²: the Pearson r of held-out predicted and human effects within construction x ROI
  (``item_r``: each cell's mean removed from both, bootstrap over items), which the noise ceiling (mean
  split-half reliability of the human effects over the constructions and ROIs present) bounds, and the pooled
  r over all rows (``pooled_r``: it also counts how the ROIs and constructions differ on average).
  Every SAP subset with published effects works: `mechinterp fit` reads a long-layout item file
  (RelativeClause, AttachmentAmbiguity, Agreement) as one ambiguous/unambiguous pair per item and coefficient
  (:func:`mechinterp.compare.humans.sap_contrast_suite`, the mapping and its evidence in
  :data:`mechinterp.compare.humans.SAP_CONTRASTS`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from mechinterp.compare.humans import NaturalStories, item_file_construction
from mechinterp.compare.linking import log_frequency, word_length
from mechinterp.compare.predictors import word_predictors
from mechinterp.compare.regression import add_spillover, correlation, cross_validate, lag_name
from mechinterp.effects import garden_path_effects
from mechinterp.errors import ConfigError
from mechinterp.stimuli.types import Suite

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.probes.artifact import ProbeArtifact

BASELINE = ("length", "log_freq")
ALIASES = {"surprisal": "surprisal_bits", "entropy": "entropy_bits", "entropy_change": "entropy_change_bits"}
RT_RANGE = (100.0, 3000.0)
ROIS = (0, 1, 2)
ALL_SET = "surprisal+all"
MIN_COVERAGE = 0.95  # a SAP predictor set must be defined on this share of the rows that have surprisal


PREDICTOR_COLUMNS = ("surprisal_bits", "entropy_bits", "entropy_change_bits", "reading_p_preferred", "reading_tv",
                     "reading_kl_bits")
PER_LAYER = re.compile(r"(repr_cos|repr_l2)_L\d+|attn_amb_L\d+H\d+")
PAIR_DISTANCE = re.compile(r"repr_(cos|l2)_L\d+(_lag\d+)?$")  # distances between the two versions of an item


PROBE_KINDS = ("probe_p", "probe_tv", "probe_kl_bits")


def check_predictors(predictors: Sequence[str], probe_labels: Sequence[str] = ()) -> list[str]:
    """The predictor columns named (aliases resolved), refusing a name :func:`word_predictors` does not make:
    the fixed columns, ``repr_cos_L<n>``, ``repr_l2_L<n>``, ``attn_amb_L<n>H<m>`` and, for the probes labelled
    ``probe_labels`` (:func:`mechinterp.compare.predictors.probe_label`), ``probe_p_<label>``,
    ``probe_tv_<label>``, ``probe_kl_bits_<label>``; a bare ``probe_p``, ``probe_tv`` or ``probe_kl_bits``
    stands for that column of every probe.

    Example:
        >>> check_predictors(["surprisal", "repr_cos_L3"])
        ['surprisal_bits', 'repr_cos_L3']
        >>> check_predictors(["surprisal", "probe_tv"], ["NPZ_resid_post_L6"])
        ['surprisal_bits', 'probe_tv_NPZ_resid_post_L6']
    """
    named = [ALIASES.get(p.strip(), p.strip()) for p in predictors if p.strip()]
    cols = list(dict.fromkeys(c for n in named for c in ([f"{n}_{lab}" for lab in probe_labels]
                                                         if n in PROBE_KINDS and probe_labels else [n])))
    if not cols:
        raise ConfigError("no predictor named")
    probe_cols = {f"{k}_{lab}" for k in PROBE_KINDS for lab in probe_labels}
    for c in cols:
        if c in PROBE_KINDS or (c.startswith(PROBE_KINDS) and c not in probe_cols):
            given = ", ".join(probe_labels) if probe_labels else "none"
            raise ConfigError(f"predictor {c!r} needs a probe (give --probes DIR ...; probes given: {given})")
        if c not in PREDICTOR_COLUMNS and c not in probe_cols and not PER_LAYER.fullmatch(c):
            raise ConfigError(f"unknown predictor {c!r}: choose from {', '.join(PREDICTOR_COLUMNS)}, "
                              "repr_cos_L<n>, repr_l2_L<n>, attn_amb_L<n>H<m>, probe_p, probe_tv, probe_kl_bits "
                              "(with probes; aliases: surprisal, entropy, entropy_change)")
    return cols


def predictor_sets(predictors: Sequence[str]) -> dict[str, list[str]]:
    """Set name -> predictor columns (before lags), as the module docstring lists them.

    Example:
        >>> list(predictor_sets(["surprisal", "reading_tv"]))
        ['baseline', 'surprisal', 'surprisal+reading_tv']
    """
    cols = list(dict.fromkeys(ALIASES.get(p.strip(), p.strip()) for p in predictors if p.strip()))
    bad = [c for c in cols if c in BASELINE]
    if bad:
        raise ConfigError(f"{bad[0]} is in the baseline already; name model predictors only")
    others = [c for c in cols if c != "surprisal_bits"]
    sets = {"baseline": list(BASELINE), "surprisal": [*BASELINE, "surprisal_bits"]}
    for c in others:
        sets[f"surprisal+{c}"] = [*BASELINE, "surprisal_bits", c]
    if len(others) > 1:
        sets[ALL_SET] = [*BASELINE, "surprisal_bits", *others]
    return sets


def add_baseline(words: pd.DataFrame) -> pd.DataFrame:
    """Add ``length`` (letters and digits) and ``log_freq`` (Zipf) of the ``word`` column."""
    out = words.copy()
    out["length"] = out["word"].map(word_length).astype(float)
    out["log_freq"] = log_frequency(out["word"].astype(str).tolist())
    return out


def lagged_sets(sets: dict[str, list[str]], lags: int) -> dict[str, list[str]]:
    """Every set's columns with their spillover lags (:func:`mechinterp.compare.regression.lag_name`)."""
    return {name: [lag_name(c, k) for c in cols for k in range(lags + 1)] for name, cols in sets.items()}


def context_windows(n_words: int, window: int, context: int) -> list[tuple[int, int, int]]:
    """Overlapping windows over a text of ``n_words`` words, each word kept in exactly one of them.

    A window is scored as one sequence from its first word; only its words from ``keep`` on are kept, so every
    kept word has at least ``context`` words of left context inside its window (all of them in the first
    window, which starts at the text's start). Windows hold at most ``window`` words; each window after the
    first keeps ``window - context`` new words.

    Args:
        n_words: words in the text.
        window: words per window (a window of ``n_words`` or more: the whole text, one window).
        context: words of left context before the kept words of every window but the first.

    Returns:
        ``(first, keep, end)`` per window: the window is words ``[first, end)`` and it keeps ``[keep, end)``.

    Example:
        >>> context_windows(10, 6, 2)
        [(0, 0, 6), (4, 6, 10)]
    """
    if window < 1 or context < 0 or context >= window:
        raise ConfigError(f"windows need 0 <= context < window words, got window {window} and context {context}")
    out, keep = [], 0
    while keep < n_words:
        first = max(0, keep - context)
        end = min(n_words, first + window)
        out.append((first, keep, end))
        keep = end
    return out


#: Natural Stories windows (words): each kept word has at least NS_CONTEXT words of left context.
NS_WINDOW, NS_CONTEXT = 300, 100


def natural_stories_predictors(model: "Model", corpus: NaturalStories, window_words: int = NS_WINDOW,
                               batch_size: int = 16, context_words: int = NS_CONTEXT,
                               probes: "Sequence[ProbeArtifact] | Mapping[str, ProbeArtifact]" = ()
                               ) -> pd.DataFrame:
    """The corpus table (story, zone, word, rt_mean ...) with the :func:`word_predictors` columns of each word.

    Stories are scored in overlapping windows (:func:`context_windows`): a window of ``window_words`` words is
    one sequence (BOS first), and only the words after its first ``context_words`` are kept (all of the first
    window's), so every word has at least ``context_words`` words of left context and is scored exactly once.
    A window at least as long as a story scores the whole story as one sequence, which gives exactly the
    unwindowed numbers. The windows keep a long story inside the model's practical context (and memory: each
    window holds next-token logits over the vocabulary at every token); what a window does not see is at
    least ``context_words`` words back. Reading, layer and head columns are NaN or absent on plain texts;
    probe columns (``probes``) are computed on every word.

    Args:
        model: the model.
        corpus: the corpus (e.g. :func:`~mechinterp.compare.humans.load_natural_stories`).
        window_words: words per window.
        batch_size: windows per forward pass.
        context_words: words of left context before the kept words of each window after a story's first.
        probes: reading probes for ``probe_*`` columns (see :func:`word_predictors`).

    Example:
        >>> ns = natural_stories_predictors(model, load_natural_stories().subset(words_per_story=400))
        >>> ns[["story", "word", "rt_mean", "surprisal_bits"]].head()
    """
    texts, rows = [], []
    for story in corpus.stories:
        g = corpus.story_words(story)
        for first, keep, end in context_windows(len(g), window_words, context_words):
            texts.append(" ".join(g["word"].iloc[first:end].astype(str)))
            rows.append((keep - first, g.index[keep:end]))
    table = word_predictors(model, texts, probes=probes, layers=(), readings=False, batch_size=batch_size)
    out = corpus.words.copy()
    pred_cols = [c for c in table.columns if c not in ("sentence", "word_index", "word", "n_tokens")]
    for c in pred_cols:
        out[c] = np.nan
    for s, (skip, idx) in enumerate(rows):
        part = table[table["sentence"] == s].sort_values("word_index")
        if len(part) != skip + len(idx):
            raise ConfigError(f"word count mismatch in Natural Stories window {s}")
        out.loc[idx, pred_cols] = part[pred_cols].iloc[skip:].to_numpy()
    return out


def natural_stories_design(table: pd.DataFrame, predictors: Sequence[str], lags: int) -> pd.DataFrame:
    """Baseline columns, spillover lags within each story, and RTs outside :data:`RT_RANGE` dropped."""
    d = add_spillover(add_baseline(table.sort_values(["story", "zone"])), [*BASELINE, *predictors], lags, ["story"])
    return pd.DataFrame(d[d["rt_mean"].between(*RT_RANGE)]).reset_index(drop=True)


def sap_design(words: pd.DataFrame, suite: Suite, human_items: pd.DataFrame, predictors: Sequence[str],
               lags: int) -> pd.DataFrame:
    """One row per item x ROI: ``d_<column>`` = ambiguous - unambiguous of every lagged column, ``human_ms``,
    ``item_key`` (item-file construction/item: the contrasts GPE_high and GPE_low of one attachment item, which
    share its AttachMulti sentence, are one group) and ROI indicators ``roi_0`` .. ``roi_2``."""
    seq = ["construction", "item", "condition"]
    d = add_spillover(add_baseline(words.sort_values([*seq, "word_index"])), [*BASELINE, *predictors], lags, seq)
    cols = [lag_name(c, k) for c in (*BASELINE, *predictors) for k in range(lags + 1)]
    if suite.ambiguity is not None:  # a pair distance belongs to the ambiguous version: the other has none
        unamb = d["condition"] == suite.ambiguity.unambiguous_condition
        for c in cols:
            if PAIR_DISTANCE.match(c):
                d.loc[unamb, c] = d.loc[unamb, c].where(d.loc[unamb, c].isna(), 0.0)
    out = None
    for c in cols:
        w = d.drop(columns=["surprisal_bits"]).rename(columns={c: "surprisal_bits"})
        e = garden_path_effects(w, suite, ROIS)[["construction", "item", "roi", "effect_bits"]]
        e = e.rename(columns={"effect_bits": f"d_{c}"})
        out = e if out is None else out.merge(e, on=["construction", "item", "roi"])
    if out is None:
        raise ConfigError("no predictor columns")
    hi = human_items.dropna(subset=["item"]).assign(item=lambda t: t["item"].astype(int), roi=lambda t: t["roi"].astype(int))
    out = out.merge(hi[["construction", "item", "roi", "effect"]].rename(columns={"effect": "human_ms"}),
                    on=["construction", "item", "roi"], how="inner")
    if out.empty:
        raise ConfigError(f"no item of suite {suite.name!r} has a by-item human effect (is it a SAP suite?)")
    out["item_key"] = out["construction"].map(item_file_construction).astype(str) + "/" + out["item"].astype(str)
    for k in ROIS:
        out[f"roi_{k}"] = (out["roi"] == k).astype(float)
    return out


def summarise(cv, dataset: str, n_boot: int, seed: int) -> pd.DataFrame:
    """One row per set: pooled held-out metrics and deltas over ``baseline`` and ``surprisal``."""
    rows = []
    names = list(dict.fromkeys(cv.rows["set"]))
    for name in names:
        row = {"dataset": dataset, "set": name, "n_items": int(cv.rows[cv.rows["set"] == name]["group"].nunique()),
               **cv.pooled(name)}
        for ref in ("baseline", "surprisal"):
            if ref in names and name != ref:
                for k, v in cv.delta(name, ref, n_boot, seed).items():  # d_loglik_low -> d_loglik_vs_baseline_low
                    bound = next((b for b in ("_low", "_high") if k.endswith(b)), "")
                    row[f"{k[:len(k) - len(bound)]}_vs_{ref}{bound}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def fit_natural_stories_sets(table: pd.DataFrame, predictors: Sequence[str], lags: int, n_folds: int,
                             n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summary and per-fold tables on Natural Stories (predictors absent or all NaN there are left out)."""
    sets = predictor_sets(predictors)
    usable = {n: c for n, c in sets.items() if all(x in table.columns and table[x].notna().any() for x in c
                                                 if x not in BASELINE)}
    cols = sorted({c for cs in usable.values() for c in cs} - set(BASELINE))
    d = natural_stories_design(table, cols, lags)
    cv = cross_validate(d, "rt_mean", lagged_sets(usable, lags), "story", n_folds, seed)
    return summarise(cv, "naturalstories", n_boot, seed), cv.folds.assign(dataset="naturalstories")


def fit_sap_sets(words: pd.DataFrame, suite: Suite, human_items: pd.DataFrame, ceiling: pd.DataFrame | None,
                 predictors: Sequence[str], lags: int, n_folds: int, n_boot: int = 1000,
                 seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Summary (with held-out item correlations and the noise ceiling), per-fold and per-item tables on SAP.

    Sets with a predictor that is NaN on every word of the suite (e.g. ``reading_*`` where the suite's
    constructions have no continuation sets: SAP RelativeClause, AttachmentAmbiguity, Agreement) are left out,
    as on Natural Stories, and so are sets with a predictor undefined on more than 5% (:data:`MIN_COVERAGE`)
    of the item x ROI rows that have the baseline and surprisal (e.g. ``repr_*`` where the two versions put
    different words before the disambiguator, as RelativeClause's subject and object relatives do). Every set
    is fitted on the same rows (those where every set kept is defined), and ``surprisal+all`` holds every
    predictor kept."""
    sets = predictor_sets(predictors)
    missing = [c for cs in sets.values() for c in cs if c not in BASELINE and c not in words.columns]
    if missing:
        raise ConfigError(f"no predictor column {missing[0]!r} (columns: {', '.join(map(str, words.columns))})")
    sets = {n: cs for n, cs in sets.items() if all(words[c].notna().any() for c in cs if c not in BASELINE)}
    cols = list(dict.fromkeys(c for cs in sets.values() for c in cs if c not in BASELINE))
    d = sap_design(words, suite, human_items, cols, lags)
    dsets = {n: [f"d_{c}" for c in cs] for n, cs in lagged_sets(sets, lags).items()}
    # every set is fitted on the same rows; a set whose predictor is undefined on more than a few of the rows
    # that have the baseline and surprisal (a distance at words the versions do not share) is left out
    base = d.dropna(subset=["human_ms", *dsets.get("surprisal", dsets["baseline"])])
    dsets = {n: cs for n, cs in dsets.items() if float(base[cs].notna().all(axis=1).mean()) >= MIN_COVERAGE}
    single = [n for n in dsets if n.startswith("surprisal+") and n != ALL_SET]
    if ALL_SET not in dsets and len(single) > 1:  # "all" is every predictor that is defined there
        dsets[ALL_SET] = list(dict.fromkeys(c for n in single for c in dsets[n]))
    cv = cross_validate(d, "human_ms", dsets, "item_key", n_folds, seed, fixed=[f"roi_{k}" for k in ROIS])
    summary = summarise(cv, f"sap:{suite.name}", n_boot, seed)
    keyed = d.dropna(subset=["human_ms", *[c for cs in dsets.values() for c in cs]]).reset_index(drop=True)
    ceil = float("nan")
    if ceiling is not None:
        cells = keyed[["construction", "roi"]].drop_duplicates().merge(ceiling, on=["construction", "roi"])
        ceil = float(cells["split_half_r"].mean()) if len(cells) else float("nan")
    rs, items = [], []
    for name in summary["set"]:
        r = cv.rows[cv.rows["set"] == name].sort_values("row")
        pred, y, groups = r["predicted"].to_numpy(), r["y"].to_numpy(), r["group"].tolist()
        cell = keyed["construction"].astype(str) + "/" + keyed["roi"].astype(str)
        # within construction x ROI (each cell's mean removed from both): the items' differences, which is what
        # the split-half noise ceiling bounds; the pooled r also counts the ROI and construction means
        within = [v - pd.Series(v).groupby(cell.to_numpy()).transform("mean").to_numpy() for v in (pred, y)]
        rho, lo, hi = correlation(within[0], within[1], groups, n_boot, seed)
        pooled, plo, phi = correlation(pred, y, groups, n_boot, seed)
        rs.append({"item_r": rho, "item_r_low": lo, "item_r_high": hi, "noise_ceiling": ceil,
                   "pooled_r": pooled, "pooled_r_low": plo, "pooled_r_high": phi})
        items.append(keyed[["construction", "item", "roi"]].assign(set=name, fold=r["fold"].to_numpy(),
                                                                   predicted_ms=r["predicted"].to_numpy(),
                                                                   human_ms=r["y"].to_numpy()))
    summary = pd.concat([summary, pd.DataFrame(rs)], axis=1)
    return summary, cv.folds.assign(dataset=f"sap:{suite.name}"), pd.concat(items, ignore_index=True)

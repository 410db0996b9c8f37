"""SAE features of each reading, found where the reading is fixed by structure, then read on the stimuli.

:mod:`mechinterp.saes.features` contrasts the two conditions of each minimal pair. Its cue sits before the
ambiguous word, which is why it needs a lexical baseline (docs/science.md). This module asks the question the
probes ask, with features instead of directions:

1. **Which features carry each reading.** The probes package's generated *unambiguous* sentences (reading
   fixed by structure, every cue word used by both readings, no content word shared with the suite) are run
   with the SAE at its site; each feature's activation at the probed word is compared between the preferred
   and the dispreferred reading. Sentences come in lexical buckets (a noun and the verbs that license each
   reading), so the statistic is the mean over buckets of (mean activation under the preferred reading minus
   under the dispreferred one) and its null distribution comes from permuting the reading labels *within*
   each bucket (a stratified permutation test: bucket effects stay where they are; with 12-14 buckets a
   sign-flip test over buckets could not get below p = 2^-12 and found nothing after correction).
   Benjamini-Hochberg over the features tested. Effect sizes: Cohen's d over sentences (pooled SD) and
   ``bucket_dz``, the mean bucket difference over its standard deviation.
2. **Whether both are active at the ambiguous word.** The ``top`` significant features of each reading are
   read at the last token of the suite's ambiguous region, in the ambiguous and in the unambiguous condition
   of each item: their mean activation and the fraction of items where at least one of them fires. If the
   model holds both readings, the features of the dispreferred reading fire in the ambiguous condition too,
   not only where the sentence forces that reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from mechinterp.errors import ConfigError
from mechinterp.probes.activations import collect_stimuli, collect_training
from mechinterp.probes.labels import readings
from mechinterp.probes.pipeline import disjoint_training_sets
from mechinterp.saes.load import LoadedSAE
from mechinterp.saes.stats import bh_qvalues


@dataclass(frozen=True)
class ReadingFeatureConfig:
    n_per_class: int = 150
    seed: int = 0
    n_permutations: int = 10_000
    alpha: float = 0.05
    top: int = 10
    min_active: float = 0.05  # test features active on at least this fraction of the training sentences


@dataclass(frozen=True)
class ReadingFeatures:
    stats: pd.DataFrame  # one row per construction x feature tested
    on_stimuli: pd.DataFrame  # one row per construction x reading's feature set x condition


def _buckets(labels: np.ndarray, groups: np.ndarray) -> list[Any]:
    """The lexical buckets that hold sentences of both readings."""
    return [g for g in np.unique(groups) if {0, 1} <= set(labels[groups == g].tolist())]


def _bucket_differences(f: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Per lexical bucket with both readings: mean features under the preferred minus the dispreferred."""
    kept = _buckets(labels, groups)
    rows = [f[(groups == g) & (labels == 1)].mean(0) - f[(groups == g) & (labels == 0)].mean(0) for g in kept]
    return np.asarray(rows), kept


def _weights(labels: np.ndarray, groups: np.ndarray, buckets: Sequence[Any]) -> np.ndarray:
    """Row weights (..., n) such that ``weights @ f`` = mean over buckets of (mean preferred - mean dispreferred)."""
    w = np.zeros(labels.shape, dtype=np.float64)
    for g in buckets:
        m = groups == g
        pref = m & (labels == 1)
        disp = m & (labels == 0)
        w = w + np.where(pref, 1.0 / pref.sum(-1, keepdims=True), 0.0) - np.where(disp, 1.0 / disp.sum(-1, keepdims=True), 0.0)
    return w / len(buckets)


def stratified_permutation(f: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_permutations: int = 10_000,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Two-sided p-values (one per column of ``f``) for the mean within-bucket difference between labels 1
    and 0, permuting labels within buckets; buckets without both labels are left out. Returns (statistic,
    p, buckets)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    buckets = _buckets(labels, groups)
    keep = np.isin(groups, buckets)
    f, labels, groups = f[keep], labels[keep], groups[keep]
    obs = _weights(labels, groups, buckets) @ f
    rng = np.random.default_rng(seed)
    idx = [np.flatnonzero(groups == g) for g in buckets]
    exceed = np.zeros(f.shape[1])
    done = 0
    while done < n_permutations:
        b = min(1024, n_permutations - done)
        perm = np.broadcast_to(labels, (b, len(labels))).copy()
        for ix in idx:  # shuffle each bucket's labels independently in every permutation
            order = np.argsort(rng.random((b, len(ix))), axis=1)
            perm[:, ix] = labels[ix][order]
        null = _weights(perm, groups[None, :], buckets) @ f
        exceed += (np.abs(null) >= np.abs(obs) - 1e-12 * np.maximum(np.abs(obs), 1.0)).sum(0)
        done += b
    return obs, (exceed + 1.0) / (n_permutations + 1.0), buckets


def reading_features(model: Any, sae: LoadedSAE, suite: Any,
                     cfg: ReadingFeatureConfig = ReadingFeatureConfig()) -> ReadingFeatures:
    """Features of each reading from generated sentences, and their activation on ``suite`` (module doc)."""
    sae.check_model(model)
    L, comp = sae.layer, sae.component
    stats_rows, stim_rows = [], []
    for c, ts in disjoint_training_sets(suite, cfg.n_per_class, cfg.seed).items():
        pref_name, disp_name = readings(c)
        x = collect_training(model, ts, [L], [comp], positions=("target",))[(L, comp, "target")]
        with torch.no_grad():
            f = sae.encode(torch.from_numpy(x).float()).double().numpy()
        labels, groups = np.asarray(ts.labels), np.asarray(ts.groups)
        diffs, buckets = _bucket_differences(f, labels, groups)
        if len(buckets) < 2:
            raise ConfigError(f"{c}: only {len(buckets)} lexical buckets have both readings; need at least 2")
        active = (f > 0).mean(0)
        tested = np.flatnonzero(active >= cfg.min_active)
        stat, p_t, _ = stratified_permutation(f[:, tested], labels, groups, cfg.n_permutations, cfg.seed)
        p = np.full(f.shape[1], np.nan)
        p[tested] = p_t
        q = bh_qvalues(p)
        mean_pref, mean_disp = f[labels == 1].mean(0), f[labels == 0].mean(0)
        pooled = np.sqrt((f[labels == 1].var(0, ddof=1) + f[labels == 0].var(0, ddof=1)) / 2)
        bsd = diffs.std(0, ddof=1) if len(buckets) > 1 else np.full(f.shape[1], np.nan)
        for k, j in enumerate(tested):
            stats_rows.append({
                "construction": c, "feature": int(j), "layer": L, "component": comp,
                "reading": pref_name if stat[k] > 0 else disp_name, "preferred": bool(stat[k] > 0),
                "mean_preferred": mean_pref[j], "mean_dispreferred": mean_disp[j], "bucket_diff": stat[k],
                "cohen_d": (mean_pref[j] - mean_disp[j]) / pooled[j] if pooled[j] > 0 else np.nan,
                "bucket_dz": diffs[:, j].mean() / bsd[j] if bsd[j] > 0 else np.nan,
                "p": p[j], "q": q[j], "significant": bool(q[j] < cfg.alpha), "active_fraction": active[j],
                "n_sentences": len(ts), "n_buckets": len(buckets),
            })
        tab = pd.DataFrame([r for r in stats_rows if r["construction"] == c])
        meta, acts = collect_stimuli(model, suite, c, [L], [comp])
        with torch.no_grad():
            fs = sae.encode(torch.from_numpy(acts[(L, comp)]).float()).double().numpy()
        meta = pd.DataFrame(meta)
        for reading in (pref_name, disp_name):
            sel = tab[(tab["reading"] == reading) & tab["significant"]] if len(tab) else tab
            top = sel.reindex(sel["cohen_d"].abs().sort_values(ascending=False).index).head(cfg.top)
            feats = top["feature"].astype(int).tolist() if len(top) else []
            for cond_ambiguous in (True, False):
                m = (meta["ambiguous"] == cond_ambiguous).to_numpy()
                if not m.any():
                    continue
                block = fs[m][:, feats] if feats else np.zeros((int(m.sum()), 0))
                stim_rows.append({
                    "construction": c, "reading": reading, "preferred": reading == pref_name,
                    "condition": "ambiguous" if cond_ambiguous else "unambiguous",
                    "n_features": len(feats), "features": ",".join(map(str, feats)),
                    "mean_activation": float(block.mean()) if feats else float("nan"),
                    "items_any_active": float((block > 0).any(1).mean()) if feats else float("nan"),
                    "n_items": int(m.sum()),
                })
    stats = pd.DataFrame(stats_rows)
    if len(stats):
        stats = stats.sort_values(["construction", "significant", "p"], ascending=[True, False, True])
    return ReadingFeatures(stats=stats.reset_index(drop=True), on_stimuli=pd.DataFrame(stim_rows))

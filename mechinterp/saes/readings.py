"""SAE features of each reading, found where the reading is fixed by structure, then read on the stimuli.

:mod:`mechinterp.saes.features` contrasts the two conditions of each minimal pair. Its cue sits before the
ambiguous word, which is why it needs a lexical baseline (SCIENCE.md). This module asks the question the
probes ask, with features instead of directions:

1. **Which features carry each reading.** The probes package's generated *unambiguous* sentences (reading
   fixed by structure, every cue word used by both readings, no content word shared with the suite) are run
   with the SAE at its site; each feature's activation at the probed word is compared between the preferred
   and the dispreferred reading. Sentences come in lexical buckets (a noun and the verbs that license each
   reading), so the unit of the test is the bucket: per bucket, mean activation under the preferred minus
   under the dispreferred reading, tested with the sign-flip permutation test of
   :func:`mechinterp.saes.stats.paired_permutation` over buckets, Benjamini-Hochberg over the features
   tested. ``d_z`` is the mean bucket difference over its standard deviation.
2. **Whether both are active at the ambiguous word.** The ``top`` significant features of each reading are
   read at the last token of the suite's ambiguous region, in the ambiguous and in the unambiguous condition
   of each item: their mean activation and the fraction of items where at least one of them fires. If the
   model holds both readings, the features of the dispreferred reading fire in the ambiguous condition too,
   not only where the sentence forces that reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from mechinterp.errors import ConfigError
from mechinterp.saes.load import LoadedSAE
from mechinterp.saes.stats import bh_qvalues, paired_permutation


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


def _bucket_differences(f: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Per lexical bucket with both readings: mean features under the preferred minus the dispreferred."""
    rows, kept = [], []
    for g in np.unique(groups):
        m = groups == g
        pref, disp = m & (labels == 1), m & (labels == 0)
        if pref.any() and disp.any():
            rows.append(f[pref].mean(0) - f[disp].mean(0))
            kept.append(g)
    return np.asarray(rows), kept


def reading_features(model: Any, sae: LoadedSAE, suite: Any,
                     cfg: ReadingFeatureConfig = ReadingFeatureConfig()) -> ReadingFeatures:
    """Features of each reading from generated sentences, and their activation on ``suite`` (module doc)."""
    from mechinterp.probes.activations import collect_stimuli, collect_training
    from mechinterp.probes.labels import readings
    from mechinterp.probes.lexical import suite_content_words
    from mechinterp.probes.pipeline import suite_constructions
    from mechinterp.probes.templates import generate

    sae.check_model(model)
    L, comp = sae.layer, sae.component
    words = suite_content_words(suite)
    stats_rows, stim_rows = [], []
    for c in suite_constructions(suite):
        pref_name, disp_name = readings(c)
        ts = generate(c, cfg.n_per_class, cfg.seed).without_words(words, min_per_class=10)
        x = collect_training(model, ts, [L], [comp], positions=("target",))[(L, comp, "target")]
        with torch.no_grad():
            f = sae.encode(torch.from_numpy(x).float()).double().numpy()
        labels, groups = np.asarray(ts.labels), np.asarray(ts.groups)
        diffs, buckets = _bucket_differences(f, labels, groups)
        if len(buckets) < 4:
            raise ConfigError(f"{c}: only {len(buckets)} lexical buckets have both readings; need at least 4")
        active = (f > 0).mean(0)
        res = paired_permutation(diffs, cfg.n_permutations, cfg.seed, tested=active >= cfg.min_active)
        q = bh_qvalues(res.p)
        mean_pref, mean_disp = f[labels == 1].mean(0), f[labels == 0].mean(0)
        for j in np.flatnonzero(res.tested):
            stats_rows.append({
                "construction": c, "feature": int(j), "layer": L, "component": comp,
                "reading": pref_name if res.mean_diff[j] > 0 else disp_name,
                "preferred": bool(res.mean_diff[j] > 0),
                "mean_preferred": mean_pref[j], "mean_dispreferred": mean_disp[j],
                "bucket_diff": res.mean_diff[j], "cohen_dz": res.cohen_dz[j], "p": res.p[j], "q": q[j],
                "significant": bool(q[j] < cfg.alpha), "active_fraction": active[j],
                "n_sentences": len(ts), "n_buckets": len(buckets),
            })
        tab = pd.DataFrame([r for r in stats_rows if r["construction"] == c])
        meta, acts = collect_stimuli(model, suite, c, [L], [comp])
        with torch.no_grad():
            fs = sae.encode(torch.from_numpy(acts[(L, comp)]).float()).double().numpy()
        meta = pd.DataFrame(meta)
        for reading in (pref_name, disp_name):
            sel = tab[(tab["reading"] == reading) & tab["significant"]] if len(tab) else tab
            top = sel.reindex(sel["cohen_dz"].abs().sort_values(ascending=False).index).head(cfg.top)
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

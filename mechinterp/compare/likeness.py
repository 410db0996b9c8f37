"""Human-likeness test: garden-path effects predicted in ms (original model and each intervention) against the
SAP Benchmark's human effects.

For each intervention, construction and ROI (0 = disambiguating word, 1-2 = spillover):

* the predicted effect in ms: the surprisal-to-ms link (:mod:`mechinterp.compare.linking`, fitted on Natural Stories
  for the original model) applied to every word of both versions of each item; the effect of an item is the
  difference of the predicted RTs at the ROI word (so spillover from surprisal at the words before counts);
* its 95% interval: percentile bootstrap resampling items within each construction, each replicate with its
  own draw of the link's coefficients from their sampling distribution (so the link's uncertainty counts);
* the human effect and interval, their ratio (model / human) and whether the model's mean lies inside the
  human interval.

Across constructions, at ``order_roi`` (default 1): whether the model ranks the constructions as humans do
(MV/RR > NP/Z > NP/S in the SAP data) and the share of bootstrap replicates that do. Per item: the Pearson
correlation of predicted and human by-item effects per construction and ROI, with a bootstrap interval over
items, against the noise ceiling (split-half reliability of the human by-item effects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mechinterp.compare.linking import LinkingFit, add_features
from mechinterp.effects import garden_path_effects, summarise_effects
from mechinterp.errors import ConfigError
from mechinterp.stimuli.types import Suite

ORIGINAL = "original"


def item_design(words: pd.DataFrame, suite: Suite, fit: LinkingFit, rois: Sequence[int] = (0, 1, 2)) -> pd.DataFrame:
    """Per item and ROI: the difference (ambiguous - unambiguous) of the link's predictors at the ROI word, as
    columns ``d_<term>`` (intercept included, always 0), plus the effect in bits and the predicted effect in ms."""
    feats = add_features(words, group=["construction", "item", "condition"])
    X = fit.design(feats)
    terms = fit.terms
    tab = feats[["construction", "item", "condition", "word_index", "word", "region", "n_tokens"]].copy()
    for j, t in enumerate(terms):
        tab[f"x_{t}"] = X[:, j]
    tab["surprisal_bits"] = feats["surprisal"].to_numpy()
    # align ROIs with the effects module's definition, term by term
    out = None
    for _j, t in enumerate(terms):
        w = tab.rename(columns={"surprisal_bits": "_s", f"x_{t}": "surprisal_bits"})
        e = garden_path_effects(w, suite, rois)
        e = e.rename(columns={"effect_bits": f"d_{t}"})
        keep = ["construction", "item", "roi", f"d_{t}"]
        out = e[["construction", "item", "roi", "word", "multi_token", f"d_{t}"]] if out is None else out.merge(e[keep], on=keep[:3])
    bits = garden_path_effects(words, suite, rois)[["construction", "item", "roi", "effect_bits"]]
    assert out is not None, "no surprisal terms to align"
    out = out.merge(bits, on=["construction", "item", "roi"])
    D = out[[f"d_{t}" for t in terms]].to_numpy(dtype=float)
    out["effect_ms"] = D @ np.asarray(fit.coef)
    return out


@dataclass(frozen=True)
class Comparison:
    """Everything the human-likeness test computed (tidy tables)."""

    constructions: pd.DataFrame  # intervention x construction x roi
    order: pd.DataFrame  # intervention x roi
    items: pd.DataFrame  # intervention x construction x item x roi: predicted ms, bits, human ms
    correlations: pd.DataFrame  # intervention x construction x roi
    side_effects: pd.DataFrame | None
    linking: LinkingFit
    info: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """The headline table: human and each intervention per construction and ROI, with side effects
        (Natural Stories perplexity ratio everywhere and, where computed, scoped; next-token KL both ways)."""
        c = self.constructions.copy()
        if self.side_effects is not None and len(self.side_effects):
            keys = ("ns_perplexity_ratio", "flag_perplexity", "unamb_roi_delta_bits", "ns_perplexity_scoped_ratio",
                    "ns_kl_nats", "ns_kl_scoped_nats")  # the last three: where the collapse ran them
            cols = [k for k in keys if k not in c.columns and (k in self.side_effects.columns or k in keys[:3])]
            c = c.merge(self.side_effects[["intervention", *cols]], on="intervention", how="left")
        return c


def _bootstrap_effects(D: np.ndarray, coefs: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean predicted effect per replicate: items ``idx[b]`` with coefficients ``coefs[b]``."""
    return np.einsum("bp,bp->b", D[idx].mean(axis=1), coefs)


def compare(words: pd.DataFrame, suite: Suite, fit: LinkingFit, human: pd.DataFrame,
            human_items: pd.DataFrame | None = None, ceiling: pd.DataFrame | None = None,
            side_effects: pd.DataFrame | None = None, rois: Sequence[int] = (0, 1, 2), order_roi: int = 1,
            n_boot: int = 2000, seed: int = 0) -> Comparison:
    """Run the human-likeness test (module docstring: what is computed).

    Args:
        words: Per-word surprisal (:func:`mechinterp.surprisal.suite_surprisal`), with an ``intervention`` column
            when several runs are compared (:func:`mechinterp.interventions.collapse.run_collapse`); without
            one, every row is the original model.
        suite: The suite the words come from.
        fit: The surprisal-to-ms link (:func:`mechinterp.compare.linking.fit_natural_stories`).
        human: Construction-level human effects (:func:`mechinterp.compare.humans.published_effects`).
        human_items: By-item human effects (:func:`mechinterp.compare.humans.load_sap_effects`), for the
            item-level correlations; None to skip them.
        ceiling: The noise ceiling (:func:`mechinterp.compare.humans.noise_ceiling`).
        side_effects: The side-effect table of the collapse run, to flag interventions in the headline table.
        rois: Regions of interest, in words from the disambiguating word.
        order_roi: The ROI at which the construction order is the primary test.
        n_boot: Bootstrap replicates.
        seed: Bootstrap seed.

    Returns:
        A :class:`Comparison`: ``table()`` (predicted vs human ms per intervention, construction and ROI),
        ``order``, ``items`` and ``correlations``.

    Raises:
        ConfigError: The human data have no effects for a construction of ``suite``.

    Example:
        >>> import mechinterp as mi
        >>> from mechinterp.compare.humans import (load_natural_stories, load_sap_effects, noise_ceiling,
        ...                                        published_effects)
        >>> from mechinterp.compare.linking import fit_natural_stories
        >>> model, suite = mi.load_model("gemma3-270m"), mi.load_suite("sap:ClassicGP").head(6)
        >>> fit, _ = fit_natural_stories(model, load_natural_stories().subset([1], 200))
        >>> cmp = mi.compare_to_humans(mi.suite_surprisal(model, suite), suite, fit, published_effects("ClassicGP"),
        ...                            load_sap_effects(None, "ClassicGP", "item"), noise_ceiling())
        >>> cmp.table()[["construction", "roi", "predicted_ms", "human_ms"]]
    """
    if "intervention" not in words.columns:
        words = words.assign(intervention=ORIGINAL)
    hum = human[human["source"] == "human"] if "source" in human.columns else human
    hum = hum.set_index(["construction", "roi"])[["effect", "ci_low", "ci_high"]]
    missing = sorted(set(suite.constructions) - set(hum.index.get_level_values(0)))
    if missing:
        raise ConfigError(f"the human data have no effects for constructions {missing} of suite {suite.name!r}")
    rng = np.random.default_rng(seed)
    coefs = fit.sample_coefs(n_boot, rng)
    cons_rows, order_rows, item_tabs, corr_rows = [], [], [], []
    names = list(dict.fromkeys(words["intervention"]))
    for name in names:
        w = words[words["intervention"] == name].drop(columns="intervention")
        items = item_design(w, suite, fit, rois)
        items.insert(0, "intervention", name)
        bits = summarise_effects(items, by=("construction", "roi"), value="effect_bits", seed=seed)
        bits = bits.set_index(["construction", "roi"])
        boots: dict[tuple[str, int], np.ndarray] = {}
        for (cons, roi), g in items.groupby(["construction", "roi"], sort=False):  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: groupby keys are Hashable, not tuples
            D = g[[f"d_{t}" for t in fit.terms]].to_numpy(dtype=float)
            idx = rng.integers(0, len(g), size=(n_boot, len(g)))
            b = _bootstrap_effects(D, coefs, idx)
            boots[(cons, roi)] = b
            mean = float(g["effect_ms"].mean())
            h = hum.loc[(cons, roi)] if (cons, roi) in hum.index else None
            hm = float(h["effect"]) if h is not None else np.nan
            cons_rows.append({
                "intervention": name, "construction": cons, "roi": int(roi), "n_items": len(g),
                "effect_bits": float(bits.loc[(cons, roi), "effect_bits"]),
                "effect_bits_low": float(bits.loc[(cons, roi), "ci_low"]),
                "effect_bits_high": float(bits.loc[(cons, roi), "ci_high"]),
                "predicted_ms": mean, "predicted_low": float(np.quantile(b, 0.025)),
                "predicted_high": float(np.quantile(b, 0.975)),
                "human_ms": hm, "human_low": float(h["ci_low"]) if h is not None else np.nan,
                "human_high": float(h["ci_high"]) if h is not None else np.nan,
                "ratio": mean / hm if hm else np.nan,
                "ratio_low": float(np.quantile(b, 0.025)) / hm if hm else np.nan,
                "ratio_high": float(np.quantile(b, 0.975)) / hm if hm else np.nan,
                "inside_human_interval": bool(h is not None and h["ci_low"] <= mean <= h["ci_high"]),
            })
        # construction order at each ROI
        for roi in rois:
            cons = [c for c in suite.constructions if (c, roi) in boots and (c, roi) in hum.index]
            if len(cons) < 2:
                continue
            human_order = sorted(cons, key=lambda c: -float(hum.loc[(c, roi), "effect"]))
            model_means = {c: float(items[(items["construction"] == c) & (items["roi"] == roi)]["effect_ms"].mean()) for c in cons}
            model_order = sorted(cons, key=lambda c: -model_means[c])
            B = np.stack([boots[(c, roi)] for c in human_order], axis=1)  # replicates x constructions (human order)
            agree = np.all(np.diff(B, axis=1) < 0, axis=1).mean()
            order_rows.append({"intervention": name, "roi": int(roi), "human_order": " > ".join(human_order),
                               "model_order": " > ".join(model_order), "matches": model_order == human_order,
                               "bootstrap_share_matching": float(agree), "primary": roi == order_roi})
        item_tabs.append(items)
        # item-level correlations
        if human_items is not None:
            hi = human_items.dropna(subset=["item"]).assign(item=lambda d: d["item"].astype(int), roi=lambda d: d["roi"].astype(int))
            hi = hi[["construction", "item", "roi", "effect"]].rename(columns={"effect": "human_ms"})
            merged = items.merge(hi, on=["construction", "item", "roi"], how="inner")
            groups = [((c, r), g) for (c, r), g in merged.groupby(["construction", "roi"], sort=False)]  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: groupby keys are Hashable, not tuples
            groups += [(("all", r), g) for r, g in merged.groupby("roi", sort=False)]
            for (cons, roi), g in groups:
                x, y = g["effect_ms"].to_numpy(), g["human_ms"].to_numpy()
                r = float(np.corrcoef(x, y)[0, 1]) if len(g) > 2 and x.std() > 0 else np.nan
                rb = []
                for _ in range(n_boot):
                    i = rng.integers(0, len(g), len(g))
                    if x[i].std() > 0 and y[i].std() > 0:
                        rb.append(np.corrcoef(x[i], y[i])[0, 1])
                ceil = np.nan
                if ceiling is not None and cons != "all":
                    m = ceiling[(ceiling["construction"] == cons) & (ceiling["roi"] == roi)]
                    ceil = float(m["split_half_r"].iloc[0]) if len(m) else np.nan
                corr_rows.append({"intervention": name, "construction": cons, "roi": int(roi), "n_items": len(g),
                                  "r": r, "r_low": float(np.quantile(rb, 0.025)) if rb else np.nan,
                                  "r_high": float(np.quantile(rb, 0.975)) if rb else np.nan,
                                  "noise_ceiling": ceil, "r_over_ceiling": r / ceil if ceil and ceil == ceil else np.nan})
    items_all = pd.concat(item_tabs, ignore_index=True)
    if human_items is not None:
        hi = human_items.dropna(subset=["item"]).assign(item=lambda d: d["item"].astype(int), roi=lambda d: d["roi"].astype(int))
        items_all = items_all.merge(hi[["construction", "item", "roi", "effect"]].rename(columns={"effect": "human_ms"}),
                                    on=["construction", "item", "roi"], how="left")
    cons_df = pd.DataFrame(cons_rows)
    if side_effects is not None:
        flag = side_effects.set_index("intervention")["flag_perplexity"].to_dict()
        cons_df["flag_perplexity"] = cons_df["intervention"].map(flag)
    return Comparison(
        constructions=cons_df, order=pd.DataFrame(order_rows), items=items_all, correlations=pd.DataFrame(corr_rows),
        side_effects=side_effects, linking=fit,
        info={"n_boot": n_boot, "seed": seed, "rois": list(rois), "order_roi": order_roi,
              "interventions": names, "suite": suite.identity()},
    )

"""Which SAE features tell the two readings apart, and how much of the garden-path effect flows through each.

For every item of a suite with an ambiguity annotation, both conditions (ambiguous / unambiguous) are run
with the SAE spliced in at its site (with its error term: the forward pass is unchanged). Then:

**Activation differences.** At each position below, each feature's paired difference (ambiguous minus
unambiguous, one per item) is tested with a two-sided sign-flip permutation test; Cohen's d_z is the effect
size; Benjamini-Hochberg q-values control the false discovery rate over the features tested at that
position (features active in at least ``min_active_items`` items in either condition).

* ``ambiguous``: the last token of the ambiguous region (the test that matters).
* ``ambiguous_first``: the first token of the ambiguous region when it has several (npz/nps: the
  determiner, after the cue but before the noun that carries the ambiguity).
* ``pre_ambiguous``: the token just before the ambiguous region -- in the unambiguous condition the cue
  itself (comma, *that*, *was*, the inserted noun). This is the **lexical baseline** (docs/science.md): the
  conditions differ there only by the cue, so a feature that already differs there detects the cue or its
  context, not a reading. A feature is called a ``reading`` candidate if it passes BH at ``ambiguous`` and
  does *not* differ in the same direction at ``pre_ambiguous`` (uncorrected p >= alpha, a conservative
  screen); one that differs at both is ``cue/lexical``.

A feature more active in the ambiguous condition is attributed to the suite's preferred reading (the one
people and models adopt first, e.g. NP/Z *object*); one more active in the unambiguous condition to the
reading the sentence really has (e.g. *subject*). That labels the direction of the contrast; whether a
feature encodes the reading or something correlated with the cue is what the baseline column is for.

**Attribution.** The surprisal ``S`` of the disambiguating region (nats, reported in bits) is
back-propagated to the feature activations. A feature's attribution in one condition is activation x
gradient summed over positions, the first-order estimate of how much ``S`` would drop if the feature were
zero-ablated there; its attribution to the garden-path effect is the ambiguous-minus-unambiguous difference,
averaged over items (again with a sign-flip test and BH). Two position windows: ``from_ambiguous`` (the
ambiguous region up to the last position predicting the disambiguator) and ``all`` (every non-BOS position
before it, cue included). The ``ablate_top`` features with the largest ``from_ambiguous`` attribution are
checked by really zero-ablating them in that window (error term kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from mechinterp.errors import ConfigError, RegionError, SuiteError
from mechinterp.progress import progress
from mechinterp.saes.load import LoadedSAE
from mechinterp.saes.splice import word_surprisal
from mechinterp.saes.stats import bh_qvalues, paired_permutation
from mechinterp.stimuli.constructions import CONSTRUCTIONS
from mechinterp.stimuli.types import Suite
from mechinterp.tokenization import TokenizedText, tokenize_condition

LN2 = float(np.log(2.0))
POSITIONS = ("ambiguous", "ambiguous_first", "pre_ambiguous")
WINDOWS = ("from_ambiguous", "all")


@dataclass(frozen=True)
class FeatureConfig:
    n_permutations: int = 20_000
    alpha: float = 0.05
    min_active_items: int = 3
    attribution: bool = True
    ablate_top: int = 5
    batch_size: int = 8
    seed: int = 0
    n_summary: int = 5  # top features per reading in the summary table
    n_coactivation: int = 10  # top features per reading checked for co-activation

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.min_active_items < 1 or self.batch_size < 1 or self.n_permutations < 1 or self.ablate_top < 0:
            raise ConfigError("min_active_items, batch_size and n_permutations must be positive, ablate_top >= 0")


@dataclass(frozen=True)
class Pair:
    """One item's two conditions, tokenized, with the positions and windows the analysis needs."""

    suite: str
    construction: str
    item: str
    seqs: dict[str, TokenizedText]  # "ambiguous"/"unambiguous"
    positions: dict[str, dict[str, int | None]]  # condition -> position name -> token index
    targets: dict[str, range]  # condition -> tokens of the disambiguating region
    windows: dict[str, dict[str, range]]  # condition -> window name -> positions


@dataclass(frozen=True)
class FeatureResults:
    stats: pd.DataFrame  # suite x position x feature
    attribution: pd.DataFrame | None  # suite x window x feature
    summary: pd.DataFrame  # top features per suite x reading
    coactivation: pd.DataFrame  # are the features of both readings active at the ambiguous word?
    effects: pd.DataFrame  # per suite: effect (bits), summed attributions, error-term attribution
    activations: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict, repr=False)
    # suite -> position -> condition -> [n_items, d_sae] (for figures and cards)


def _pairs(model: Any, suite: Suite) -> list[Pair]:
    amb = suite.ambiguity
    if amb is None or amb.ambiguous_region is None:
        raise SuiteError(f"suite {suite.name!r} has no ambiguity annotation with an ambiguous region: "
                         "feature tests need one (see mechinterp/stimuli/builtin/README.md)")
    names = {"ambiguous": amb.ambiguous_condition, "unambiguous": amb.unambiguous_condition}
    region, dis = amb.ambiguous_region, amb.disambiguating_region
    out = []
    for it in suite.items:
        try:
            conds = {k: it.condition(v) for k, v in names.items()}
        except KeyError as exc:
            raise SuiteError(f"suite {suite.name!r}: {exc.args[0]}") from None
        seqs = {k: tokenize_condition(model, c) for k, c in conds.items()}
        positions: dict[str, dict[str, int | None]] = {}
        targets: dict[str, range] = {}
        windows: dict[str, dict[str, range]] = {}
        for k, tok in seqs.items():
            span = tok.tokens_of_region(region)
            tgt = tok.tokens_of_region(dis)
            if len(span) == 0 or len(tgt) == 0:
                raise RegionError(f"suite {suite.name!r} item {it.key} ({k}): the ambiguous or disambiguating "
                                  "region is empty")
            if tgt[0] <= span[0]:
                raise RegionError(f"suite {suite.name!r} item {it.key}: the disambiguating region does not follow "
                                  "the ambiguous region")
            positions[k] = {
                "ambiguous": span[-1],
                "ambiguous_first": span[0] if len(span) > 1 else None,
                "pre_ambiguous": span[0] - 1 if span[0] - 1 >= 1 else None,
            }
            targets[k] = tgt
            windows[k] = {"from_ambiguous": range(span[0], tgt[-1]), "all": range(1, tgt[-1])}
        out.append(Pair(suite.name, suite.construction_of(it), it.key, seqs, positions, targets, windows))
    return out


def _run_condition(
    model: Any, sae: LoadedSAE, pairs: list[Pair], cond: str, cfg: FeatureConfig
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Feature activations at each position ([n_items, d_sae], NaN rows where the position is missing),
    attributions per window ([n_items, d_sae], nats), surprisal of the disambiguator (nats), and the
    error term's attribution per window."""
    n, F = len(pairs), sae.d_sae
    acts = {p: np.full((n, F), np.nan, dtype=np.float32) for p in POSITIONS}
    attr = {w: np.zeros((n, F), dtype=np.float64) for w in WINDOWS}
    err_attr = {w: np.zeros(n) for w in WINDOWS}
    surprisal = np.zeros(n)
    for start in progress(range(0, n, cfg.batch_size), desc=f"SAE features ({cond})"):
        chunk = pairs[start : start + cfg.batch_size]
        seqs = [p.seqs[cond] for p in chunk]
        s, box, b = word_surprisal(model, sae, seqs, [p.targets[cond] for p in chunk], grad=cfg.attribution)
        f = box.f.detach()  # pyright: ignore[reportOptionalMemberAccess]  # set by word_surprisal (and .grad by its backward pass when grad=True)
        for j, p in enumerate(chunk):
            i = start + j
            surprisal[i] = float(s[j])
            for name, t in p.positions[cond].items():
                if t is not None:
                    acts[name][i] = f[j, t].numpy()
            if cfg.attribution:
                fg = (f[j] * box.f.grad[j]).double()  # pyright: ignore[reportOptionalMemberAccess, reportOptionalSubscript]  # set by word_surprisal (and .grad by its backward pass when grad=True)
                eg = (box.err[j].detach() * box.err.grad[j]).double().sum(-1)  # pyright: ignore[reportOptionalMemberAccess, reportOptionalSubscript]  # set by word_surprisal (and .grad by its backward pass when grad=True)
                for w, r in p.windows[cond].items():
                    idx = list(r)
                    attr[w][i] = fg[idx].sum(0).numpy()
                    err_attr[w][i] = float(eg[idx].sum())
    return acts, attr, surprisal, err_attr


def _ablation(model: Any, sae: LoadedSAE, pairs: list[Pair], feature: int, cfg: FeatureConfig,
              clean: dict[str, np.ndarray]) -> np.ndarray:
    """Per item: (S_amb - S_amb ablated) - (S_unamb - S_unamb ablated), bits: the part of the effect that
    zero-ablating ``feature`` in the ``from_ambiguous`` window removes. ``clean``: each condition's
    unablated surprisal (nats) per item."""
    out = np.zeros(len(pairs))
    for cond, sign in (("ambiguous", 1.0), ("unambiguous", -1.0)):
        for start in range(0, len(pairs), cfg.batch_size):
            chunk = pairs[start : start + cfg.batch_size]
            seqs = [p.seqs[cond] for p in chunk]
            mask = torch.zeros(len(chunk), max(len(s) for s in seqs), dtype=torch.bool)
            for j, p in enumerate(chunk):
                mask[j, list(p.windows[cond]["from_ambiguous"])] = True

            def edit(f: torch.Tensor, mask: torch.Tensor = mask) -> torch.Tensor:
                g = f.clone()
                g[..., feature] = torch.where(mask, torch.zeros_like(g[..., feature]), g[..., feature])
                return g

            tg = [p.targets[cond] for p in chunk]
            with torch.no_grad():
                s1, _, _ = word_surprisal(model, sae, seqs, tg, edit=edit)
            s0 = clean[cond][start : start + len(chunk)]
            out[start : start + len(chunk)] += sign * (s0 - s1.double().numpy()) / LN2
    return out


def _readings(suite: Suite, construction: str | None = None) -> tuple[str, str]:
    """(reading favoured where activation is higher in the ambiguous condition, the one for unambiguous).
    For one construction of a suite that mixes several, the workbench's table of constructions is used."""
    if construction is not None:
        info = CONSTRUCTIONS.get(construction)
        return (info.preferred_reading, info.true_reading) if info else (
            f"{construction}: ambiguous-condition", f"{construction}: unambiguous-condition")
    amb = suite.ambiguity
    assert amb is not None
    true = None
    for it in suite.items:
        for c in it.conditions:
            if c.name == amb.unambiguous_condition and c.reading:
                true = c.reading
        if true:
            break
    readings = list(amb.readings)
    pref = amb.preferred_reading or next((r for r in readings if r != true), None)
    true = true or next((r for r in readings if r != pref), None)
    return (pref or "ambiguous-condition"), (true or "unambiguous-condition")


def _position_stats(
    acts: dict[str, dict[str, np.ndarray]], cfg: FeatureConfig, base: dict[str, Any], readings: tuple[str, str]
) -> pd.DataFrame:
    frames = []
    for k, pos in enumerate(POSITIONS):
        a, u = acts["ambiguous"][pos], acts["unambiguous"][pos]
        ok = ~(np.isnan(a).any(1) | np.isnan(u).any(1))
        if ok.sum() < 2:
            continue
        a, u = a[ok].astype(np.float64), u[ok].astype(np.float64)
        n_act_a, n_act_u = (a > 0).sum(0), (u > 0).sum(0)
        present = (n_act_a > 0) | (n_act_u > 0)
        tested = (n_act_a >= cfg.min_active_items) | (n_act_u >= cfg.min_active_items)
        res = paired_permutation(a - u, cfg.n_permutations, seed=cfg.seed + k, tested=tested)
        q = bh_qvalues(res.p)
        feats = np.nonzero(present)[0]
        frames.append(pd.DataFrame({
            **base, "position": pos, "feature": feats, "n_items": int(ok.sum()),
            "mean_ambiguous": a.mean(0)[feats], "mean_unambiguous": u.mean(0)[feats],
            "frac_active_ambiguous": (n_act_a / ok.sum())[feats], "frac_active_unambiguous": (n_act_u / ok.sum())[feats],
            "mean_diff": res.mean_diff[feats], "sd_diff": res.sd_diff[feats], "cohen_dz": res.cohen_dz[feats],
            "p": res.p[feats], "q": q[feats], "tested": res.tested[feats],
            "reading": np.where(res.mean_diff[feats] > 0, readings[0], readings[1]),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _classify(stats: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Add lexical-baseline columns to the ``ambiguous`` rows and a ``kind`` for every row."""
    if stats.empty:
        return stats
    key = ["suite", "construction", "feature"]
    base = stats[stats["position"] == "pre_ambiguous"][key + ["mean_diff", "p", "cohen_dz"]].rename(
        columns={"mean_diff": "baseline_diff", "p": "baseline_p", "cohen_dz": "baseline_dz"})
    out = stats.merge(base, on=key, how="left")
    same_sign = np.sign(out["baseline_diff"].fillna(0.0)) == np.sign(out["mean_diff"])
    lexical = same_sign & (out["baseline_p"].fillna(1.0) < alpha)
    sig = out["q"].fillna(1.0) < alpha
    out["kind"] = np.where(~sig, "n.s.", np.where(lexical, "cue/lexical", "reading"))
    out.loc[out["position"] == "pre_ambiguous", "kind"] = np.where(sig[out["position"] == "pre_ambiguous"],
                                                                   "cue/lexical", "n.s.")
    return out


def _attr_table(attr: dict[str, dict[str, np.ndarray]], cfg: FeatureConfig, base: dict[str, Any]) -> pd.DataFrame:
    frames = []
    for k, w in enumerate(WINDOWS):
        a, u = attr["ambiguous"][w] / LN2, attr["unambiguous"][w] / LN2
        d = a - u
        present = np.any(d != 0, axis=0)
        res = paired_permutation(d, cfg.n_permutations, seed=cfg.seed + 100 + k, tested=present)
        q = bh_qvalues(res.p)
        feats = np.nonzero(present)[0]
        frames.append(pd.DataFrame({
            **base, "window": w, "feature": feats, "n_items": d.shape[0],
            "attr_ambiguous_bits": a.mean(0)[feats], "attr_unambiguous_bits": u.mean(0)[feats],
            "attr_effect_bits": res.mean_diff[feats], "sd_effect_bits": res.sd_diff[feats],
            "cohen_dz": res.cohen_dz[feats], "p": res.p[feats], "q": q[feats],
        }))
    return pd.concat(frames, ignore_index=True)


def _coactivation(stats: pd.DataFrame, acts: dict[str, dict[str, np.ndarray]], base: dict[str, Any],
                  readings: tuple[str, str], cfg: FeatureConfig) -> list[dict[str, Any]]:
    """For the top reading features of each direction: how often they are active at the ambiguous word in
    the *other* condition (e.g. the true reading's features in the ambiguous sentence)."""
    rows = []
    s = stats[(stats["position"] == "ambiguous") & (stats["kind"] == "reading")]
    a, u = acts["ambiguous"]["ambiguous"], acts["unambiguous"]["ambiguous"]
    for reading, higher, other in ((readings[1], u, a), (readings[0], a, u)):
        top = s[s["reading"] == reading].sort_values("cohen_dz", key=np.abs, ascending=False).head(cfg.n_coactivation)
        if top.empty:
            continue
        feats = top["feature"].to_numpy()
        other_active = (other[:, feats] > 0)
        rows.append({
            **base, "reading": reading, "n_features": len(feats), "features": " ".join(map(str, feats)),
            "condition_where_higher": "unambiguous" if higher is u else "ambiguous",
            "frac_items_any_active_in_other": float(other_active.any(1).mean()),
            "mean_frac_features_active_in_other": float(other_active.mean()),
            "activation_ratio_other_vs_higher": float(other[:, feats].mean() / max(higher[:, feats].mean(), 1e-12)),
        })
    return rows


def suite_features(model: Any, sae: LoadedSAE, suites: Sequence[Suite], cfg: FeatureConfig = FeatureConfig()) -> FeatureResults:
    """Feature statistics, attribution and summaries for each suite and construction (a suite that mixes
    constructions is analysed one construction at a time; see module docstring)."""
    sae.check_model(model)
    stats_frames, attr_frames, summary_rows, coact_rows, effect_rows = [], [], [], [], []
    all_acts: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for suite in suites:
        by_cons: dict[str, list[Pair]] = {}
        for p in _pairs(model, suite):
            by_cons.setdefault(p.construction, []).append(p)
        for cons, pairs in by_cons.items():
            if len(pairs) < 2:
                raise SuiteError(f"suite {suite.name!r} has {len(pairs)} item(s) of construction {cons}: the paired "
                                 "tests need at least 2")
            readings = _readings(suite, cons if len(by_cons) > 1 else None)
            base = {"suite": suite.name, "construction": cons, "layer": sae.layer, "component": sae.component}
            key = suite.name if len(by_cons) == 1 else f"{suite.name}/{cons}"
            res = _analyse(model, sae, pairs, cfg, base, readings)
            all_acts[key] = res["activations"]
            stats_frames.append(res["stats"])
            effect_rows.append(res["effects"])
            if res["attribution"] is not None:
                attr_frames.append(res["attribution"])
            summary_rows += _summary(res["stats"], res["attribution"], base, readings, cfg)
            coact_rows += _coactivation(res["stats"], res["acts"], base, readings, cfg) if not res["stats"].empty else []
    return FeatureResults(
        stats=pd.concat(stats_frames, ignore_index=True) if stats_frames else pd.DataFrame(),
        attribution=pd.concat(attr_frames, ignore_index=True) if attr_frames else None,
        summary=pd.DataFrame(summary_rows), coactivation=pd.DataFrame(coact_rows), effects=pd.DataFrame(effect_rows),
        activations=all_acts,
    )


def _analyse(model: Any, sae: LoadedSAE, pairs: list[Pair], cfg: FeatureConfig, base: dict[str, Any],
             readings: tuple[str, str]) -> dict[str, Any]:
    """Everything for one group of items of one construction."""
    acts, attrs, surps, errs = {}, {}, {}, {}
    for cond in ("ambiguous", "unambiguous"):
        acts[cond], attrs[cond], surps[cond], errs[cond] = _run_condition(model, sae, pairs, cond, cfg)
    stats = _classify(_position_stats(acts, cfg, base, readings), cfg.alpha)
    effect = (surps["ambiguous"] - surps["unambiguous"]) / LN2
    eff = {**base, "n_items": len(pairs), "effect_bits": float(effect.mean()), "n_positive": int((effect > 0).sum())}
    attr_tab = None
    if cfg.attribution:
        attr_tab = _attr_table(attrs, cfg, base)
        for w in WINDOWS:
            eff[f"sum_feature_attr_{w}_bits"] = float(
                ((attrs["ambiguous"][w] - attrs["unambiguous"][w]).sum(1) / LN2).mean())
            eff[f"error_attr_{w}_bits"] = float(((errs["ambiguous"][w] - errs["unambiguous"][w]) / LN2).mean())
        top = (attr_tab[attr_tab["window"] == "from_ambiguous"]
               .sort_values("attr_effect_bits", key=np.abs, ascending=False).head(cfg.ablate_top))
        mean, sd = {}, {}
        for feat in top["feature"]:
            d = _ablation(model, sae, pairs, int(feat), cfg, surps)
            mean[int(feat)], sd[int(feat)] = float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else float("nan")
        fa = attr_tab["window"] == "from_ambiguous"
        attr_tab["ablation_effect_bits"] = np.where(fa, attr_tab["feature"].map(mean), np.nan)
        attr_tab["ablation_sd_bits"] = np.where(fa, attr_tab["feature"].map(sd), np.nan)
    return {"stats": stats, "attribution": attr_tab, "effects": eff, "acts": acts,
            "activations": {pos: {c: acts[c][pos] for c in acts} for pos in POSITIONS}}


def _summary(stats: pd.DataFrame, attr: pd.DataFrame | None, base: dict[str, Any], readings: tuple[str, str],
             cfg: FeatureConfig) -> list[dict[str, Any]]:
    """Top ``n_summary`` features per reading at the ambiguous position: reading candidates first (by q,
    then |d_z|), then cue/lexical ones if too few reading candidates pass."""
    if stats.empty:
        return []
    s = stats[(stats["position"] == "ambiguous") & stats["tested"]].copy()
    order = {"reading": 0, "cue/lexical": 1, "n.s.": 2}
    s["_k"] = s["kind"].map(order)
    s["_a"] = -s["cohen_dz"].abs()
    rows = []
    if attr is not None:
        fa = attr[attr["window"] == "from_ambiguous"].set_index("feature")
    for reading in readings:
        g = s[(s["reading"] == reading) & (s["kind"] != "n.s.")].sort_values(["_k", "q", "_a"]).head(cfg.n_summary)
        for rank, (_, r) in enumerate(g.iterrows(), start=1):
            row = {**base, "reading": reading, "rank": rank, "feature": int(r["feature"]), "kind": r["kind"],
                   "mean_ambiguous": r["mean_ambiguous"], "mean_unambiguous": r["mean_unambiguous"],
                   "cohen_dz": r["cohen_dz"], "p": r["p"], "q": r["q"], "baseline_dz": r.get("baseline_dz"),
                   "baseline_p": r.get("baseline_p")}
            if attr is not None:
                f = int(r["feature"])
                row["attr_effect_bits"] = float(fa.loc[f, "attr_effect_bits"]) if f in fa.index else 0.0
                row["attr_q"] = float(fa.loc[f, "q"]) if f in fa.index else float("nan")
            rows.append(row)
    return rows

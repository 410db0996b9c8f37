"""Dose-response of the learned intervention: fit it at several KL budgets and measure, at each, how far the model
committed and whether it reads more like people.

For every form (``learned:method=steer,layers=6``, ``learned:method=subspace,layers=6,rank=2``, ...) the
intervention is fit at each budget in increasing order, each fit starting from the one at the previous budget
(a warm start; the first starts from nothing), and all fits are then scored like any other intervention
(:func:`mechinterp.interventions.collapse.run_collapse`): exact reading probabilities, garden-path effects, Natural
Stories perplexity, and, given a surprisal-to-ms link and the human data, predicted effects in ms, the human
order of constructions and item correlations (:func:`mechinterp.compare.likeness.compare`).

The dose table has one row per form, budget, construction and ROI (and the original model's rows, budget 0):
the achieved held-out KL, P(dispreferred reading) on the ambiguous condition (exact estimator, mean over items
with a bootstrap interval), the garden-path effect in bits and predicted ms, perplexity, whether the
constructions come in the human order (at the primary ROI) and the item correlation with people.
:func:`dose_figure` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mechinterp.compare.likeness import Comparison, compare
from mechinterp.effects import summarise_effects
from mechinterp.errors import ConfigError
from mechinterp.interventions.collapse import ORIGINAL, CollapseResult, run_collapse
from mechinterp.interventions.compose import compose
from mechinterp.interventions.learned import LearnedIntervention, fit_learned, heldout_text
from mechinterp.interventions.spec import LearnedSpec
from mechinterp.io import atomic_path
from mechinterp.layers import format_layers
from mechinterp.locate.sites import Site
from mechinterp.readings.summary import summarise_readings

if TYPE_CHECKING:
    from mechinterp.compare.humans import NaturalStories
    from mechinterp.compare.linking import LinkingFit
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite
    from mechinterp.surprisal import SurprisalConfig

DEFAULT_BUDGETS = (0.01, 0.03, 0.1, 0.3)
DOSE_COLUMNS = [
    "form", "method", "layers", "rank", "budget", "heldout_kl", "scale", "intervention", "construction", "roi",
    "n_items", "p_dispreferred", "p_dispreferred_low", "p_dispreferred_high", "p_dispreferred_original",
    "effect_bits", "effect_bits_low", "effect_bits_high", "predicted_ms", "predicted_low", "predicted_high",
    "human_ms", "ns_perplexity", "ns_perplexity_ratio", "order_matches", "order_share", "item_r", "item_r_low",
    "item_r_high", "noise_ceiling",
]
FIT_COLUMNS = [
    "intervention", "form", "method", "sites", "rank", "budget", "heldout_kl", "scale", "steps", "fit_seconds",
    "train_p_dispreferred_first", "train_p_dispreferred_last", "train_kl_last", "n_training_sentences",
    "training_sha256", "seed", "warm_start",
]


def form_label(part: LearnedSpec) -> str:
    """A form's name without its budget: ``steer@6+9``, ``subspace-r2@6``."""
    layers = part.layers if isinstance(part.layers, str) else format_layers(part.layers)
    rank = f"-r{part.rank}" if part.method == "subspace" else ""
    return f"{part.method}{rank}@{layers}"


def intervention_name(form: str, budget: float) -> str:
    return f"{form} kl<={budget:g}"


@dataclass(frozen=True)
class DoseResult:
    """Everything a dose-response run computed (tidy tables, :data:`DOSE_COLUMNS` and :data:`FIT_COLUMNS`)."""

    table: pd.DataFrame
    fits: pd.DataFrame
    collapse: CollapseResult
    comparison: Comparison | None = None
    interventions: dict[str, LearnedIntervention] = field(default_factory=dict)


def check_budgets(budgets: Sequence[float]) -> list[float]:
    """The budgets in increasing order, without duplicates (ConfigError for none or one that is not > 0)."""
    out = sorted({float(b) for b in budgets})
    if not out or any(not np.isfinite(b) or b <= 0 for b in out):
        raise ConfigError(f"budgets must be positive numbers (nats per token), got {list(budgets)}")
    return out


def fit_doses(model: "Model", suite: "Suite", forms: Sequence[LearnedSpec], budgets: Sequence[float],
              corpus: "NaturalStories", training: Mapping[str, Any] | None = None,
              log: Callable[[str], Any] | None = None) -> dict[str, tuple[str, LearnedIntervention]]:
    """Fit every form at every budget (increasing, each warm-started from the previous budget's fit).

    Args:
        model: the model.
        suite: the evaluated suite (the fits are placed on it; never trained on it).
        forms: learned specs without a budget of their own.
        budgets: KL budgets (nats per token).
        corpus: Natural Stories (training windows and the held-out check).
        training: training settings for the fields a form does not set itself.
        log: progress messages.

    Returns:
        intervention name -> (form, fitted intervention), in form then budget order.
    """
    budgets = check_budgets(budgets)
    labels = [form_label(f) for f in forms]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"the dose forms must differ (got {labels})")
    held: dict[tuple, Any] = {}
    out: dict[str, tuple[str, LearnedIntervention]] = {}
    for form, label in zip(forms, labels):
        if "budget" in form.model_fields_set:
            raise ConfigError(f"learned form {label}: the budgets come from the dose run, not from budget=")
        if form.load:
            raise ConfigError(f"learned form {label}: a dose run fits its interventions (no load=)")
        tr = form.training(**dict(training or {}))
        tr.check_stories()
        key = (tr.heldout_stories, tr.heldout_words)
        if key not in held:
            held[key] = heldout_text(model, corpus, tr.heldout_stories, tr.heldout_words)
        sites = [Site(L, form.component) for L in form.layer_numbers(model.n_layers)]
        prev = None
        for b in budgets:
            name = intervention_name(label, b)
            if log:
                log(f"fitting {name} ...")
            prev = fit_learned(model, suite, form.method, sites, b, form.rank, form.where, form.n_words,
                               form.conditions, tr, corpus, held[key], init=prev, log=log)
            out[name] = (label, prev)
    return out


def fits_table(fitted: Mapping[str, tuple[str, LearnedIntervention]]) -> pd.DataFrame:
    rows = []
    for name, (form, iv) in fitted.items():
        info, hist = iv.info, iv.info.get("history") or []
        tail = hist[-5:]
        rows.append({
            "intervention": name, "form": form, "method": iv.method, "sites": " ".join(map(str, iv.sites)),
            "rank": iv.rank, "budget": info.get("budget"), "heldout_kl": info.get("heldout_kl"), "scale": iv.scale,
            "steps": len(hist), "fit_seconds": info.get("fit_seconds"),
            "train_p_dispreferred_first": hist[0]["p_dispreferred"] if hist else np.nan,
            "train_p_dispreferred_last": float(np.mean([h["p_dispreferred"] for h in tail])) if tail else np.nan,
            "train_kl_last": float(np.mean([h["train_kl"] for h in tail])) if tail else np.nan,
            "n_training_sentences": (info.get("training_sentences") or {}).get("n_sentences"),
            "training_sha256": info.get("training_sha256"), "seed": info.get("seed"),
            "warm_start": info.get("warm_start"),
        })
    return pd.DataFrame(rows, columns=FIT_COLUMNS)


def dose_table(res: CollapseResult, fitted: Mapping[str, tuple[str, LearnedIntervention]],
               cmp: Comparison | None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Assemble the dose table (:data:`DOSE_COLUMNS`) from the scored fits and, if given, the comparison."""
    meta: dict[str, dict[str, Any]] = {ORIGINAL: {"form": ORIGINAL, "method": "none", "layers": "", "rank": 0,
                                                  "budget": 0.0, "heldout_kl": 0.0, "scale": 0.0}}
    for name, (form, iv) in fitted.items():
        meta[name] = {"form": form, "method": iv.method, "layers": format_layers(s.layer for s in iv.sites),
                      "rank": iv.rank, "budget": iv.info.get("budget"), "heldout_kl": iv.info.get("heldout_kl"),
                      "scale": iv.scale}
    if cmp is not None:
        eff = cmp.constructions.rename(columns={"effect_bits_low": "effect_bits_low"})
    else:
        s = summarise_effects(res.effects, by=("intervention", "construction", "roi"), n_boot=n_boot, seed=seed)
        eff = s.rename(columns={"ci_low": "effect_bits_low", "ci_high": "effect_bits_high"})
    t = eff.copy()
    if res.readings is not None and len(res.readings):
        r = res.readings[(res.readings["method"] == "exact") & res.readings["ambiguous"].astype(bool)]
        p = summarise_readings(r, by=("intervention", "construction"), n_boot=n_boot, seed=seed)
        p = p[["intervention", "construction", "p_dispreferred", "p_dispreferred_low", "p_dispreferred_high"]]
        t = t.merge(p, on=["intervention", "construction"], how="left")
        base = p[p["intervention"] == ORIGINAL].set_index("construction")["p_dispreferred"]
        t["p_dispreferred_original"] = t["construction"].map(base)
    side = res.side_effects.set_index("intervention")
    for col in ("ns_perplexity", "ns_perplexity_ratio"):
        t[col] = t["intervention"].map(side[col]) if col in side else np.nan
    if cmp is not None and len(cmp.order):
        o = cmp.order[cmp.order["primary"]].set_index("intervention")
        t["order_matches"] = t["intervention"].map(o["matches"])
        t["order_share"] = t["intervention"].map(o["bootstrap_share_matching"])
    if cmp is not None and len(cmp.correlations):
        c = cmp.correlations.rename(columns={"r": "item_r", "r_low": "item_r_low", "r_high": "item_r_high"})
        t = t.merge(c[["intervention", "construction", "roi", "item_r", "item_r_low", "item_r_high",
                       "noise_ceiling"]], on=["intervention", "construction", "roi"], how="left")
    for col, value in pd.DataFrame(meta).T.items():
        t[col] = t["intervention"].map(value)
    t = t.reindex(columns=DOSE_COLUMNS)
    order = {n: i for i, n in enumerate(meta)}
    t = t.assign(_o=t["intervention"].map(order)).sort_values(["construction", "_o", "roi"], kind="stable")
    return t.drop(columns="_o").reset_index(drop=True)


def dose_response(model: "Model", suite: "Suite", forms: Sequence[LearnedSpec], budgets: Sequence[float],
                  corpus: "NaturalStories", linking: "LinkingFit | None" = None, human: pd.DataFrame | None = None,
                  human_items: pd.DataFrame | None = None, ceiling: pd.DataFrame | None = None,
                  training: Mapping[str, Any] | None = None, config: "SurprisalConfig | None" = None,
                  ns_words: int | None = 150, n_boot: int = 1000, seed: int = 0,
                  log: Callable[[str], Any] | None = None) -> DoseResult:
    """Fit the learned intervention at every budget and measure the dose-response (module docstring).

    Args:
        model: the model.
        suite: the evaluated suite (ambiguity annotation needed).
        forms: learned specs (``method``, ``layers``, ``rank`` ...) without a budget.
        budgets: KL budgets in nats per token (at least one; the issue asks for four).
        corpus: Natural Stories: training windows, the held-out budget check and the perplexity side effect.
        linking: a surprisal-to-ms link for the model; with ``human`` it gives predicted ms and the human order.
        human: construction-level human effects (:func:`mechinterp.compare.humans.published_effects`).
        human_items: by-item human effects of the suite's items (SAP suites only), for item correlations.
        ceiling: the human noise ceiling.
        training: training settings for the fields a form does not set (steps, lr, seed, ...).
        config: surprisal configuration for scoring.
        ns_words: words per story of the perplexity side effect.
        n_boot: bootstrap resamples.
        seed: bootstrap seed.
        log: progress messages.

    Returns:
        A :class:`DoseResult`.

    Example:
        >>> forms = [parse_spec("learned:method=steer,layers=6").parts[0]]
        >>> res = dose_response(model, load_suite("npz"), forms, [0.01, 0.03, 0.1, 0.3], load_natural_stories())
        >>> res.table[["budget", "heldout_kl", "p_dispreferred", "effect_bits"]]
    """
    fitted = fit_doses(model, suite, forms, budgets, corpus, training, log)
    named = {n: compose(iv, name=n) for n, (_, iv) in fitted.items()}
    res = run_collapse(model, suite, named, config, corpus, ns_words, log=log)
    cmp = None
    if linking is not None and human is not None:
        try:
            cmp = compare(res.words, suite, linking, human, human_items, ceiling, res.side_effects, n_boot=n_boot,
                          seed=seed)
        except ConfigError as exc:
            if log:
                log(f"no comparison with people: {exc}")
    table = dose_table(res, fitted, cmp, n_boot, seed)
    return DoseResult(table, fits_table(fitted), res, cmp, {n: iv for n, (_, iv) in fitted.items()})


# ---- the figure ---------------------------------------------------------------------------------------------
PANELS = (
    ("p_dispreferred", "P(dispreferred reading), ambiguous"),
    ("effect_bits", "garden-path effect (bits), ROI {roi}"),
    ("predicted_ms", "predicted effect (ms), ROI {roi}"),
    ("ns_perplexity_ratio", "Natural Stories perplexity ratio"),
    ("item_r", "item correlation with people, ROI {roi}"),
    ("heldout_kl", "achieved held-out KL (nats/token)"),
)


def dose_figure(table: pd.DataFrame, roi: int = 1, title: str = "Dose-response of the learned intervention"
                ) -> go.Figure:
    """Each measure against the KL budget (log scale), one line per form and construction; the original model's
    value as a dotted line and, for predicted ms, the human effect as a dashed one.

    Args:
        table: a dose table (:data:`DOSE_COLUMNS`).
        roi: the ROI of the per-ROI panels (default 1, the first spillover word, where the human order is tested).
        title: the figure title.
    """
    t = _rows(table, table["roi"] == roi)
    fig = make_subplots(rows=2, cols=3, subplot_titles=[p[1].format(roi=roi) for p in PANELS])
    learned = _rows(t, t["form"] != ORIGINAL)
    original = _rows(t, t["form"] == ORIGINAL)
    if learned.empty:
        return fig.update_layout(title=title)
    lo, hi = float(learned["budget"].min()), float(learned["budget"].max())
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    colour = {c: palette[i % len(palette)] for i, c in enumerate(sorted(set(t["construction"])))}
    pairs = list(dict.fromkeys(zip(learned["form"], learned["construction"])))
    for k, (col, _) in enumerate(PANELS):
        r, c = divmod(k, 3)
        for form, cons in pairs:
            g = _rows(learned, (learned["form"] == form) & (learned["construction"] == cons)).sort_values("budget")
            if not bool(g[col].notna().any()):
                continue
            err = None
            if col == "p_dispreferred" and bool(g["p_dispreferred_low"].notna().any()):
                err = dict(type="data", symmetric=False, array=g["p_dispreferred_high"] - g[col],
                           arrayminus=g[col] - g["p_dispreferred_low"])
            fig.add_trace(go.Scatter(
                x=g["budget"], y=g[col], mode="lines+markers", name=f"{form} · {cons}", legendgroup=f"{form}{cons}",
                showlegend=k == 0, error_y=err, marker=dict(color=colour[cons]),
                line=dict(dash="solid" if str(form).startswith("steer") else "dashdot")), row=r + 1, col=c + 1)
        for cons in sorted(set(original["construction"])):
            g = _rows(original, original["construction"] == cons)
            for value, name, dash, legend in ((col, "original", "dot", k == 0), ("human_ms", "people", "dash", True)):
                if (value == "human_ms" and col != "predicted_ms") or not bool(g[value].notna().any()):
                    continue
                y = float(g[value].iloc[0])
                fig.add_trace(go.Scatter(x=[lo, hi], y=[y, y], mode="lines", name=f"{name} · {cons}",
                                         legendgroup=f"{name}{cons}", showlegend=legend,
                                         line=dict(dash=dash, color=colour[cons])), row=r + 1, col=c + 1)
        if col == "heldout_kl":
            fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="budget", showlegend=False,
                                     line=dict(color="grey", width=1)), row=r + 1, col=c + 1)
        fig.update_xaxes(type="log", title_text="KL budget (nats/token)", row=r + 1, col=c + 1)
    fig.update_yaxes(type="log", row=1, col=1)
    return fig.update_layout(title=title, height=760, legend=dict(font=dict(size=10)))


def _rows(df: pd.DataFrame, mask: Any) -> pd.DataFrame:
    """The rows of ``df`` where ``mask`` holds, as a frame."""
    return pd.DataFrame(df.loc[mask])


def write_figure(fig: go.Figure, path: str | Path) -> Path:
    """Write ``fig`` as a self-contained HTML file (plotly.js embedded: it opens offline), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    return path

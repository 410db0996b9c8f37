"""The human-vs-model report: tables and plotly figures built from a :class:`~mechinterp.compare.likeness.Comparison`,
and the memory-ladder figure and report (:func:`ladder_figure`, :func:`write_ladder_report`)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mechinterp.compare.likeness import Comparison
from mechinterp.reports.html import write_report

HUMAN = "human (SAP)"


def _flag_label(name: str, flagged: set[str]) -> str:
    return f"{name} ⚠ perplexity +>5%" if name in flagged else name


def flagged_interventions(cmp: Comparison) -> set[str]:
    se = cmp.side_effects
    if se is None or "flag_perplexity" not in se:
        return set()
    return set(se.loc[se["flag_perplexity"].fillna(False).astype(bool), "intervention"])


def effects_figure(cmp: Comparison) -> go.Figure:
    """Per construction (columns) and ROI (x): human effect and each intervention's predicted effect, ms."""
    c = cmp.constructions
    flagged = flagged_interventions(cmp)
    cons = list(dict.fromkeys(c["construction"]))
    fig = make_subplots(rows=1, cols=len(cons), subplot_titles=cons, shared_yaxes=True)
    for j, con in enumerate(cons, start=1):
        g = c[c["construction"] == con]
        h = g.drop_duplicates("roi").sort_values("roi")
        fig.add_bar(x=[f"ROI {r}" for r in h["roi"]], y=h["human_ms"], name=HUMAN, marker_color="#444",
                    legendgroup=HUMAN, showlegend=j == 1,
                    error_y=dict(type="data", symmetric=False, array=h["human_high"] - h["human_ms"],
                                 arrayminus=h["human_ms"] - h["human_low"]), row=1, col=j)
        for name, gi in g.groupby("intervention", sort=False):
            gi = gi.sort_values("roi")
            label = _flag_label(str(name), flagged)
            fig.add_bar(x=[f"ROI {r}" for r in gi["roi"]], y=gi["predicted_ms"], name=label, legendgroup=label,
                        showlegend=j == 1,
                        error_y=dict(type="data", symmetric=False, array=gi["predicted_high"] - gi["predicted_ms"],
                                     arrayminus=gi["predicted_ms"] - gi["predicted_low"]),
                        hovertemplate=f"{label}<br>%{{x}}: %{{y:.1f}} ms<extra>{con}</extra>", row=1, col=j)
    fig.update_layout(barmode="group", title="Garden-path effect: human vs predicted from surprisal (ms, 95% intervals)",
                      yaxis_title="ambiguous − unambiguous RT (ms)", height=480)
    return fig


def ratio_figure(cmp: Comparison) -> go.Figure:
    """Model / human effect ratio per construction and ROI (log scale; 1 = human-sized)."""
    c = cmp.constructions.copy()
    flagged = flagged_interventions(cmp)
    c["where"] = c["construction"] + " ROI " + c["roi"].astype(str)
    fig = go.Figure()
    for name, g in c.groupby("intervention", sort=False):
        label = _flag_label(str(name), flagged)
        fig.add_scatter(x=g["where"], y=g["ratio"].clip(lower=1e-4), mode="markers", name=label,
                        error_y=dict(type="data", symmetric=False,
                                     array=(g["ratio_high"] - g["ratio"]).clip(lower=0),
                                     arrayminus=(g["ratio"] - g["ratio_low"]).clip(lower=0)))
    fig.add_hline(y=1, line_dash="dash", line_color="#888", annotation_text="human-sized")
    fig.update_layout(title="Predicted / human effect (negative ratios not shown on the log axis)",
                      yaxis_type="log", yaxis_title="ratio", height=420)
    return fig


def items_figure(cmp: Comparison, roi: int = 1) -> go.Figure:
    """Item-level predicted vs human effects at one ROI, one panel per construction."""
    it = cmp.items
    if "human_ms" not in it:
        return go.Figure().update_layout(title="no by-item human data given")
    it = it[it["roi"] == roi]
    cons = list(dict.fromkeys(it["construction"]))
    fig = make_subplots(rows=1, cols=len(cons), subplot_titles=cons)
    for j, con in enumerate(cons, start=1):
        for _k, (name, g) in enumerate(it[it["construction"] == con].groupby("intervention", sort=False)):
            fig.add_scatter(x=g["effect_ms"], y=g["human_ms"], mode="markers", name=str(name), legendgroup=str(name),
                            showlegend=j == 1, text="item " + g["item"].astype(str) + ": " + g["word"].astype(str),
                            hovertemplate="%{text}<br>model %{x:.1f} ms, human %{y:.1f} ms<extra></extra>", row=1, col=j)
        fig.update_xaxes(title_text="predicted (ms)", row=1, col=j)
    fig.update_yaxes(title_text="human (ms)", row=1, col=1)
    fig.update_layout(title=f"Item effects at ROI {roi}: model vs human", height=420)
    return fig


def side_effects_figure(cmp: Comparison) -> go.Figure:
    se = cmp.side_effects
    fig = go.Figure()
    if se is None or "ns_perplexity_ratio" not in se or se["ns_perplexity_ratio"].isna().all():  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: a scalar cell or .all()/.any() typed as Series
        return fig.update_layout(title="no Natural Stories side effects computed")
    colors = ["#c0392b" if f else "#2e86c1" for f in se["flag_perplexity"].fillna(False)]
    fig.add_bar(x=se["intervention"], y=(se["ns_perplexity_ratio"] - 1) * 100, marker_color=colors,
                hovertemplate="%{x}: %{y:.2f}%<extra></extra>")
    fig.add_hline(y=5, line_dash="dash", line_color="#c0392b", annotation_text="+5% flag")
    fig.update_layout(title="Side effect: change in Natural Stories perplexity (%)", yaxis_title="% change", height=380)
    return fig


def linking_figure(cmp: Comparison) -> go.Figure:
    co = cmp.linking.coefficients()
    co = co[co["term"] != "intercept"]
    fig = go.Figure(go.Scatter(x=co["estimate"], y=co["term"], mode="markers",
                               error_x=dict(type="data", symmetric=False, array=co["ci_high"] - co["estimate"],
                                            arrayminus=co["estimate"] - co["ci_low"])))
    fig.add_vline(x=0, line_color="#888")
    fig.update_layout(title="Linking function coefficients (ms per unit, 95% CI)", height=360)
    return fig


def _marked(df: pd.DataFrame, flagged: set[str]) -> pd.DataFrame:
    """The table with flagged interventions' names marked."""
    if "intervention" not in df.columns:
        return df
    return df.assign(intervention=df["intervention"].map(lambda n: _flag_label(str(n), flagged)))


def headline_table(cmp: Comparison) -> pd.DataFrame:
    """Human and each intervention per construction and ROI, compact and rounded, with side effects."""
    t = cmp.table()
    flagged = flagged_interventions(cmp)
    rows = []
    for (con, roi), g in t.groupby(["construction", "roi"], sort=False):  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: groupby keys are Hashable, not tuples
        h = g.iloc[0]
        rows.append({"construction": con, "roi": roi, "row": HUMAN,
                     "effect_ms": f"{h['human_ms']:.1f} [{h['human_low']:.1f}, {h['human_high']:.1f}]",
                     "effect_bits": "", "ratio": "", "inside_human_CI": "", "NS_ppl_change": "", "unamb_ROI_delta_bits": ""})
        for _, r in g.iterrows():
            ppl = r.get("ns_perplexity_ratio")
            rows.append({
                "construction": con, "roi": roi, "row": _flag_label(str(r["intervention"]), flagged),
                "effect_ms": f"{r['predicted_ms']:.1f} [{r['predicted_low']:.1f}, {r['predicted_high']:.1f}]",
                "effect_bits": f"{r['effect_bits']:.2f} [{r['effect_bits_low']:.2f}, {r['effect_bits_high']:.2f}]",
                "ratio": f"{r['ratio']:.3f}", "inside_human_CI": "yes" if r["inside_human_interval"] else "no",  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: a scalar cell or .all()/.any() typed as Series
                "NS_ppl_change": "" if pd.isna(ppl) else f"{(ppl - 1) * 100:+.1f}%",  # pyright: ignore[reportGeneralTypeIssues, reportOptionalOperand]  # pandas stubs: a row cell is not a scalar to them; pd.isna is checked first
                "unamb_ROI_delta_bits": "" if pd.isna(r.get("unamb_roi_delta_bits")) else f"{r['unamb_roi_delta_bits']:+.2f}",  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: a scalar cell or .all()/.any() typed as Series
            })
    return pd.DataFrame(rows)


def efficacy_table(efficacy: pd.DataFrame) -> pd.DataFrame:
    """The efficacy table, compact: P(dispreferred reading) before and after each intervention."""
    e = efficacy[efficacy["intervention"] != "original"]
    return pd.DataFrame({
        "intervention": e["intervention"], "estimator": e["method"], "construction": e["construction"],
        "condition": e["condition"],
        "P(dispreferred) original": e["p_dispreferred_original"].map("{:.3f}".format),
        "P(dispreferred) after": e["p_dispreferred"].map("{:.3f}".format),
        "ratio [95%]": [f"{r:.2f} [{lo:.2f}, {hi:.2f}]" for r, lo, hi in zip(e["ratio"], e["ratio_low"], e["ratio_high"])],
        "collapsed": [f"yes (≤ 1/{f:g})" if c else "no" for c, f in zip(e["collapsed"], e["factor"])],
    })


def write_compare_report(cmp: Comparison, path: str | Path, title: str = "Collapse and compare: human-likeness",
                         provenance: dict[str, Any] | None = None, interventions: dict[str, Any] | None = None,
                         efficacy: pd.DataFrame | None = None) -> Path:
    flagged = flagged_interventions(cmp)
    fit = cmp.linking
    intro = (
        "<p>Predicted garden-path effects (ms) = the surprisal-to-RT link fitted on Natural Stories for this model "
        f"(R² = {fit.r2:.3f}; without surprisal {fit.r2_without_surprisal:.3f}; n = {fit.n} words; features: "
        f"{html.escape(fit.feature_set)}; {fit.ms_per_bit():.2f} ms per bit summed over the word and two spillover "
        "lags) applied to the surprisal of every word of both versions of each item. Intervals: 95% bootstrap over "
        "items with the link's coefficients redrawn in each replicate. Human effects: SAP Benchmark (Huang et al. "
        "2024, JML), posterior means and 95% intervals.</p>")
    blocks: list[tuple[str, Any]] = [("", intro)]
    if flagged:
        blocks.append(("", "<p class='warn'>⚠ Raises Natural Stories perplexity by more than 5%: "
                       + ", ".join(html.escape(f) for f in sorted(flagged)) + ". Effects under these interventions come "
                       "with a damaged language model.</p>"))
    if efficacy is not None and len(efficacy):
        blocks.append(("Efficacy: did each intervention make the model commit?", efficacy_table(efficacy)))
        blocks.append(("", "<p>P(dispreferred reading) at the end of the ambiguous region from the model's "
                       "next-word probabilities (mechinterp.readings), before and after each intervention. "
                       "'collapsed' = the dispreferred reading lost at least the stated factor; an intervention "
                       "that did not collapse the model cannot show that commitment fails to produce human-sized "
                       "effects.</p>"))
    blocks += [
        ("Human vs model per construction and ROI", headline_table(cmp)),
        ("", effects_figure(cmp)),
        ("Ratio to the human effect", ratio_figure(cmp)),
        ("Construction order", _marked(cmp.order, flagged)),
    ]
    if len(cmp.correlations):
        blocks += [("Item-level correlation with human by-item effects (vs noise ceiling)", _marked(cmp.correlations, flagged)),
                   ("", items_figure(cmp, roi=int(cmp.info.get("order_roi", 1))))]
    if cmp.side_effects is not None:
        blocks += [("Side effects", _marked(cmp.side_effects, flagged)), ("", side_effects_figure(cmp))]
    blocks += [("Linking function (Natural Stories)", fit.coefficients()), ("", linking_figure(cmp))]
    if interventions:
        blocks.append(("Interventions", "<pre>" + html.escape(json.dumps(interventions, indent=2, default=str)) + "</pre>"))
    return write_report(path, title, blocks, provenance)


LADDER_SYMBOLS = {"original": "star", "truncate": "circle", "recency": "diamond", "keynoise": "square"}
LADDER_NEEDS = ("label", "ns_perplexity", "ns_d_loglik")


def ladder_figure(tables: pd.DataFrame | Sequence[pd.DataFrame], title: str | None = None) -> go.Figure:
    """The memory-ladder figure: reading-time fit against perplexity at every step, one trace per model and
    step kind (x = Natural Stories perplexity, log axis; y = ΔLogLik per word of surprisal over the
    length + frequency baseline, with its 95% bootstrap interval; points labelled with the step). An inverse U
    (fit rising, then falling, as perplexity grows) is what the ladder looks for.

    Args:
        tables: a ladder table of :func:`mechinterp.compare.ladder.memory_ladder`, or several (e.g. one per
            model), or their concatenation; the rows of one step (one per construction and ROI) are drawn once.
        title: the figure title.

    Returns:
        A plotly figure; a table without the ladder's measures (``label``, ``ns_perplexity``,
        ``ns_d_loglik``) gives an empty figure that names what is missing.

    Example:
        >>> import mechinterp as mi
        >>> import pandas as pd
        >>> table = pd.DataFrame({"model": "m", "step": [0, 1], "kind": ["original", "truncate"],  # as memory_ladder
        ...                       "param": [0.0, 3.0], "label": ["original", "truncate k=3"],
        ...                       "ns_perplexity": [120.0, 400.0], "ns_d_loglik": [0.02, 0.03],
        ...                       "ns_d_loglik_low": [0.01, 0.02], "ns_d_loglik_high": [0.03, 0.04]})
        >>> fig = mi.ladder_figure([table, table.assign(model="other")])  # two models, one figure
        >>> fig.write_html("ladder.html")
    """
    table = pd.concat(list(tables), ignore_index=True) if not isinstance(tables, pd.DataFrame) else tables
    fig = go.Figure()
    missing = [c for c in LADDER_NEEDS if c not in table.columns]
    if missing:
        fig.add_annotation(text=f"not a memory-ladder table: no column {', '.join(missing)}", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_layout(title=title or "Memory ladder")
        return fig
    t = table.assign(model=table["model"] if "model" in table.columns else "model")
    t = t.drop_duplicates(["model", "label"]).copy()
    if "kind" not in t.columns:
        t["kind"] = t["label"].astype(str).str.split().str[0]
    for c in ("ns_d_loglik_low", "ns_d_loglik_high"):
        if c not in t.columns:
            t[c] = t["ns_d_loglik"]
    for model in dict.fromkeys(t["model"]):
        for kind in dict.fromkeys(t.loc[t["model"] == model, "kind"]):
            g = t[(t["model"] == model) & (t["kind"] == kind)]
            if "param" in g.columns:
                g = g.sort_values("param")
            y = g["ns_d_loglik"].astype(float)
            fig.add_trace(go.Scatter(
                x=g["ns_perplexity"], y=y, name=f"{model}: {kind}", legendgroup=str(model),
                mode="markers+text+lines" if len(g) > 1 and kind != "original" else "markers+text",
                text=g["label"].astype(str).str.replace(f"{kind} ", "", regex=False), textposition="top center",
                marker=dict(symbol=LADDER_SYMBOLS.get(str(kind), "circle"), size=10),
                error_y=dict(type="data", symmetric=False, array=g["ns_d_loglik_high"].astype(float) - y,
                             arrayminus=y - g["ns_d_loglik_low"].astype(float)),
                hovertext=[f"{model}<br>{lab}" for lab in g["label"]]))
    fig.update_xaxes(type="log", title="Natural Stories perplexity (log scale)")
    fig.update_yaxes(title="ΔLogLik per word: surprisal over length + frequency")
    fig.update_layout(title=title or "Memory ladder: reading-time fit against perplexity", height=600)
    return fig


def write_ladder_report(table: pd.DataFrame, path: str | Path, title: str = "Memory ladder",
                        provenance: dict[str, Any] | None = None, roi: int = 0) -> Path:
    """An HTML report of one or several models' ladders: the figure, the step table and the per-construction
    table.

    Args:
        table: ladder table(s), concatenated (:func:`mechinterp.compare.ladder.memory_ladder`).
        path: the .html file.
        title: the report title.
        provenance: recorded in the report.
        roi: the ROI of the summary table.

    Returns:
        The path written.

    Example:
        >>> write_ladder_report(pd.concat([gemma_table, smollm_table]), "ladder.html")
    """
    steps = table.drop_duplicates(["model", "step"]) if {"model", "step"} <= set(table.columns) else table
    keep = [c for c in ("model", "step", "label", "ns_words", "ns_perplexity", "ns_d_loglik", "ns_d_loglik_low",
                        "ns_d_loglik_high", "ns_d_r2", "order_matches", "order_share") if c in steps.columns]
    cols = [c for c in ("model", "label", "construction", "roi", "effect_bits", "effect_bits_low", "effect_bits_high",
                        "predicted_ms", "human_ms", "ratio", "item_r", "noise_ceiling", "item_r_all") if c in table.columns]
    blocks: list[tuple[str, Any]] = [
        ("", "<p>Every step degrades the model's memory of the preceding words: context truncation to k tokens, "
             "a recency bias −λ·(i−j) on every head's attention scores, or noise on the keys of distant tokens "
             "(mechinterp.compare.ladder). x: word perplexity on Natural Stories; y: held-out ΔLogLik per word of "
             "surprisal over length and frequency on Natural Stories reading times (95% bootstrap over stories). "
             f"Garden-path effects at ROI {roi} and below at every ROI; predicted ms use the original model's "
             "surprisal-to-RT link.</p>"),
        ("", ladder_figure(table, title)),
        ("Steps", steps[keep]),
        ("Garden-path effects and human-likeness per step, construction and ROI", table[cols]),
    ]
    return write_report(path, title, blocks, provenance)

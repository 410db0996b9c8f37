"""Plotly figures, built from the summary tables (never from private state).

* :func:`accuracy_figure`: held-out accuracy of the reading probe by layer, per construction (columns) and
  model (rows), with its interval, beside the control task, selectivity, the random-direction baseline and
  the lexical baselines (word before the target, first token).
* :func:`readout_figure`: P(preferred reading) on the ambiguous region by layer, ambiguous vs unambiguous
  condition with intervals, and the two anchors (unambiguous training sentences of each reading).
* :func:`transfer_figure`: transfer accuracy (train construction x test construction) at each model's best
  layer per training construction.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from mechinterp.io import atomic_path, write_bytes_atomic

SERIES = [
    # (measure, position, label, colour, dash)
    ("accuracy", "target", "probe at target (grouped held-out)", "#1f77b4", "solid"),
    ("control_accuracy", "target", "control task (H&L)", "#d62728", "dot"),
    ("selectivity", "target", "selectivity", "#9467bd", "dash"),
    ("random_direction_accuracy", "target", "random direction", "#7f7f7f", "dot"),
    ("accuracy", "pre", "baseline: word before target", "#ff7f0e", "dash"),
    ("accuracy", "start", "baseline: first token", "#2ca02c", "dash"),
]


def _band(fig, x, lo, hi, colour, row, col, name):
    fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(hi) + list(lo)[::-1], fill="toself",
                             fillcolor=colour, opacity=0.15, line=dict(width=0), hoverinfo="skip",
                             showlegend=False, legendgroup=name), row=row, col=col)


def _grid(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    return sorted(df["model"].unique()), sorted(df["construction"].unique())


def accuracy_figure(metric_summary: pd.DataFrame, component: str = "resid_post") -> go.Figure:
    ms = metric_summary[metric_summary.component == component]
    models, cons = _grid(ms)
    fig = make_subplots(rows=len(models), cols=len(cons), shared_yaxes=True,
                        subplot_titles=[f"{m} - {c}" for m in models for c in cons])
    for i, m in enumerate(models, 1):
        for j, c in enumerate(cons, 1):
            d = ms[(ms.model == m) & (ms.construction == c)]
            for measure, pos, label, colour, dash in SERIES:
                s = d[(d.measure == measure) & (d.position == pos)].groupby("layer").mean(numeric_only=True).reset_index()
                if s.empty:
                    continue
                _band(fig, s.layer, s.ci_low, s.ci_high, colour, i, j, label)
                fig.add_trace(go.Scatter(x=s.layer, y=s.value, mode="lines+markers", name=label, legendgroup=label,
                                         line=dict(color=colour, dash=dash), showlegend=(i == 1 and j == 1)),
                              row=i, col=j)
            fig.add_hline(y=0.5, line=dict(color="black", width=0.5, dash="dot"), row=i, col=j)
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="accuracy / selectivity", col=1)
    fig.update_layout(title=f"Reading probes ({component}): held-out accuracy, controls and baselines",
                      height=320 * len(models) + 120, width=330 * len(cons) + 200, template="plotly_white")
    return fig


def readout_figure(verdict_summary: pd.DataFrame, component: str = "resid_post") -> go.Figure:
    vs = verdict_summary[verdict_summary.component == component]
    models, cons = _grid(vs)
    fig = make_subplots(rows=len(models), cols=len(cons), shared_yaxes=True,
                        subplot_titles=[f"{m} - {c}" for m in models for c in cons])
    for i, m in enumerate(models, 1):
        for j, c in enumerate(cons, 1):
            d = vs[(vs.model == m) & (vs.construction == c)].sort_values("layer")
            if d.empty:
                continue
            pref, other = d.preferred_reading.iloc[0], d.other_reading.iloc[0]
            for col, label, colour in (("p_ambiguous", "ambiguous region (no cue)", "#d62728"),
                                       ("p_unambiguous", "unambiguous condition (cue)", "#1f77b4")):
                fig.add_trace(go.Scatter(
                    x=d.layer, y=d[col], mode="lines+markers", name=label, legendgroup=label,
                    line=dict(color=colour), showlegend=(i == 1 and j == 1),
                    error_y=dict(type="data", symmetric=False, array=d[col + "_high"] - d[col],
                                 arrayminus=d[col] - d[col + "_low"]),
                    text=d.verdict, hovertemplate="layer %{x}: P=%{y:.2f}<br>%{text}"), row=i, col=j)
            for col, label, dash in (("p_preferred_anchor", "anchor: unambiguous preferred reading", "dash"),
                                     ("p_other_anchor", "anchor: unambiguous other reading", "dot")):
                fig.add_trace(go.Scatter(x=d.layer, y=d[col], mode="lines", name=label, legendgroup=label,
                                         line=dict(color="grey", dash=dash), showlegend=(i == 1 and j == 1)),
                              row=i, col=j)
            fig.layout.annotations[(i - 1) * len(cons) + (j - 1)].text += f"<br><sup>P({pref}) vs {other}</sup>"
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="P(preferred reading)", range=[0, 1], col=1)
    fig.update_layout(title=f"Readout on the ambiguous region before disambiguation ({component})",
                      height=340 * len(models) + 120, width=330 * len(cons) + 200, template="plotly_white")
    return fig


def transfer_figure(metric_summary: pd.DataFrame, component: str = "resid_post") -> go.Figure:
    ms = metric_summary[metric_summary.component == component]
    acc = ms[(ms.measure == "accuracy") & (ms.position == "target")]
    models = sorted(ms.model.unique())
    fig = make_subplots(rows=1, cols=max(1, len(models)), subplot_titles=models)
    for k, m in enumerate(models, 1):
        rows = []
        for c, d in acc[acc.model == m].groupby("construction"):
            L = int(d.loc[d.value.idxmax(), "layer"])
            t = ms[(ms.model == m) & (ms.construction == c) & (ms.layer == L) & (ms.position == "target")
                   & ms.measure.isin(["accuracy", "transfer_accuracy"])]
            for r in t.itertuples():
                rows.append({"train": f"{c} (L{L})", "test": r.target_construction, "value": r.value})
        if not rows:
            continue
        piv = pd.DataFrame(rows).pivot_table(index="train", columns="test", values="value")
        fig.add_trace(go.Heatmap(z=piv.values, x=list(piv.columns), y=list(piv.index), zmin=0, zmax=1,
                                 colorscale="RdBu", zmid=0.5, text=piv.round(2).values, texttemplate="%{text}",
                                 showscale=(k == 1)), row=1, col=k)
    fig.update_layout(title="Transfer across constructions (class 1 = preferred reading; diagonal = grouped held-out)",
                      height=420, width=460 * max(1, len(models)) + 100, template="plotly_white")
    return fig


def write_figures(metric_summary: pd.DataFrame, verdict_summary: pd.DataFrame, directory) -> list:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # the figures reference one plotly.min.js beside them (offline); write it atomically so a kill never
    # leaves a truncated bundle that plotly would then keep
    js = get_plotlyjs().encode()
    bundle = directory / "plotly.min.js"
    if not bundle.exists() or bundle.stat().st_size != len(js):
        write_bytes_atomic(bundle, js)
    out = []
    for comp in sorted(metric_summary.component.unique()) if not metric_summary.empty else []:
        for name, fig in (("accuracy", accuracy_figure(metric_summary, comp)),
                          ("readout", readout_figure(verdict_summary, comp)),
                          ("transfer", transfer_figure(metric_summary, comp))):
            path = directory / f"{name}_{comp}.html"
            with atomic_path(path) as tmp:
                fig.write_html(str(tmp), include_plotlyjs="directory")
            out.append(path)
    return out

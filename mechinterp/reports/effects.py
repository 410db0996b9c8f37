"""Figures for garden-path effects and per-word surprisal."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def effects_figure(summary: pd.DataFrame, title: str = "Garden-path effect by construction") -> go.Figure:
    """Bars of the mean effect (bits) per construction and ROI with bootstrap intervals."""
    fig = go.Figure()
    for roi, g in summary.groupby("roi"):
        fig.add_bar(
            x=g["construction"], y=g["effect_bits"], name=f"ROI {roi}",
            error_y=dict(type="data", symmetric=False, array=g["ci_high"] - g["effect_bits"],
                         arrayminus=g["effect_bits"] - g["ci_low"]),
            customdata=g[["n_items", "n_positive"]],
            hovertemplate="%{x} ROI " + str(roi) + ": %{y:.2f} bits<br>n=%{customdata[0]}, positive %{customdata[1]}<extra></extra>",
        )
    fig.update_layout(barmode="group", title=title, yaxis_title="ambiguous − unambiguous surprisal (bits)",
                      xaxis_title="construction", legend_title="region of interest")
    fig.add_hline(y=0, line_color="#888")
    return fig


def item_effects_figure(item_effects: pd.DataFrame, roi: int = 0) -> go.Figure:
    """Each item's effect at one ROI, per construction (items going the wrong way are visible)."""
    g = item_effects[item_effects["roi"] == roi]
    fig = go.Figure()
    for cons, gc in g.groupby("construction"):
        fig.add_box(y=gc["effect_bits"], name=str(cons), boxpoints="all", jitter=0.4, pointpos=0,
                    text=gc["item"].astype(str) + ": " + gc["word"].astype(str), hoverinfo="text+y")
    fig.update_layout(title=f"Item effects at ROI {roi}", yaxis_title="effect (bits)")
    fig.add_hline(y=0, line_color="#888")
    return fig


def word_surprisal_figure(words: pd.DataFrame, construction: str, item: int) -> go.Figure:
    """Per-word surprisal of one item, one line per condition, aligned by word position."""
    g = words[(words["construction"] == construction) & (words["item"] == item)]
    fig = go.Figure()
    for cond, gc in g.groupby("condition", sort=False):
        gc = gc.sort_values("word_index")
        fig.add_scatter(x=gc["word_index"], y=gc["surprisal_bits"], mode="lines+markers+text", name=str(cond),
                        text=gc["word"], textposition="top center",
                        hovertemplate="%{text}: %{y:.2f} bits<extra>" + str(cond) + "</extra>")
    fig.update_layout(title=f"{construction} item {item}: surprisal per word", xaxis_title="word position",
                      yaxis_title="surprisal (bits)")
    return fig

"""Plotly figures of one item, built only from the tidy tables of :mod:`mechinterp.explore.compute` (so the
explorer and a notebook draw the same thing)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

ROLE_COLOURS = {"ambiguous": "#ff9f1c", "disambiguating": "#d62728"}
OTHER_COLOUR = "#1f77b4"


def region_roles(suite) -> dict[int, str]:
    """Region number -> role (``ambiguous`` / ``disambiguating``) from a suite's ambiguity annotation."""
    amb = suite.ambiguity
    if amb is None:
        return {}
    roles = {int(amb.disambiguating_region): "disambiguating"}
    if amb.ambiguous_region is not None:
        roles[int(amb.ambiguous_region)] = "ambiguous"
    return roles


def words_figure(words: pd.DataFrame, value: str = "surprisal_bits", title: str = "",
                 roles: dict[int, str] | None = None) -> go.Figure:
    """One panel per condition: ``value`` per word (bars, words on the x axis); words of the ambiguous region
    orange and of the disambiguating region red (``roles`` from :func:`region_roles`)."""
    roles = roles or {}
    conds = list(dict.fromkeys(words["condition"]))
    fig = make_subplots(rows=len(conds), cols=1, subplot_titles=conds, vertical_spacing=0.18 if len(conds) > 1 else 0.1)
    for k, cond in enumerate(conds, 1):
        g = words[words["condition"] == cond].sort_values("word_index")
        labels = [f"{w}<br><sub>{i}</sub>" for w, i in zip(g["word"], g["word_index"])]
        colours = [ROLE_COLOURS.get(roles.get(int(r), ""), OTHER_COLOUR) for r in g["region"]]
        fig.add_bar(x=labels, y=g[value], marker_color=colours, name=cond, showlegend=False,
                    customdata=g[["region_name", "n_tokens"]],
                    hovertemplate="%{x}: %{y:.2f}<br>region %{customdata[0]}, %{customdata[1]} token(s)<extra></extra>",
                    row=k, col=1)
        fig.update_yaxes(title_text="bits", row=k, col=1)
    fig.update_layout(title=title or ("Surprisal per word" if value == "surprisal_bits" else "Entropy before each word"),
                      height=260 * len(conds) + 60, margin=dict(t=70, b=30))
    return fig


def effects_bar(effects: pd.DataFrame, title: str = "Garden-path effect of this item") -> go.Figure:
    """Ambiguous minus unambiguous surprisal at each ROI (bars, one group per ``intervention`` if present)."""
    fig = go.Figure()
    groups = effects.groupby("intervention", sort=False) if "intervention" in effects else [("", effects)]
    for name, g in groups:
        fig.add_bar(x=[f"ROI {r}: {w}" for r, w in zip(g["roi"], g["word"])], y=g["effect_bits"], name=str(name) or "effect",
                    hovertemplate="%{x}: %{y:.2f} bits<extra></extra>")
    fig.add_hline(y=0, line_color="#888")
    fig.update_layout(title=title, yaxis_title="ambiguous − unambiguous (bits)", barmode="group", height=320)
    return fig


def probe_curve_figure(summary: pd.DataFrame, title: str = "") -> go.Figure:
    """P(preferred reading) over layers, one line per condition (band: min-max over seeds)."""
    fig = go.Figure()
    for (comp, cond), g in summary.groupby(["component", "condition"], sort=False):  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: groupby keys are Hashable, not tuples
        g = g.sort_values("layer")
        name = f"{cond}" if summary["component"].nunique() == 1 else f"{cond} ({comp})"  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: a scalar cell or .all()/.any() typed as Series
        if (g["n_seeds"] > 1).any():  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: a scalar cell or .all()/.any() typed as Series
            fig.add_scatter(x=list(g["layer"]) + list(g["layer"][::-1]), y=list(g["p_max"]) + list(g["p_min"][::-1]),
                            fill="toself", line=dict(width=0), opacity=0.2, showlegend=False, hoverinfo="skip")
        fig.add_scatter(x=g["layer"], y=g["p_preferred"], mode="lines+markers", name=name,
                        hovertemplate="layer %{x}: P = %{y:.2f}<extra>" + name + "</extra>")
    fig.add_hline(y=0.5, line_color="#888", line_dash="dot")
    pref = summary["preferred_reading"].iloc[0] if "preferred_reading" in summary and len(summary) else "preferred"
    fig.update_layout(title=title or "Reading probe at the ambiguous words", xaxis_title="layer",
                      yaxis_title=f"P({pref})", yaxis_range=[0, 1], height=380)
    return fig


def readout_layers_figure(readout: pd.DataFrame, title: str = "") -> go.Figure:
    """From a saved probe ``readout`` table (rows of one item): P(preferred) per layer and condition, mean
    over seeds."""
    g = readout.groupby(["component", "condition", "layer"], sort=True)["p_preferred"].agg(["mean", "min", "max", "size"])
    s = g.reset_index().rename(columns={"mean": "p_preferred", "min": "p_min", "max": "p_max", "size": "n_seeds"})
    s["construction"] = readout["construction"].iloc[0]
    s["preferred_reading"] = readout["preferred_reading"].iloc[0] if "preferred_reading" in readout else "preferred"
    return probe_curve_figure(s, title or "Saved readout of this item (from the sweep)")


def patching_heatmap(grid: pd.DataFrame, title: str) -> go.Figure:
    """Layer x position heatmap of the normalised patching effect (0 = corrupt run, 1 = clean run)."""
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=list(grid.columns), y=list(grid.index), colorscale="RdBu",
                               zmid=0, colorbar_title="normalised",
                               hovertemplate="layer %{y}, %{x}: %{z:.2f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="position (last token of region)", yaxis_title="layer", height=420,
                      yaxis=dict(dtick=1 if len(grid.index) <= 12 else None))
    return fig


def sae_heatmap(tokens: pd.DataFrame, condition: str, title: str = "") -> go.Figure:
    """Feature x token heatmap of one condition's SAE activations."""
    g = tokens[tokens["condition"] == condition]
    feats = list(dict.fromkeys(g["feature"]))
    positions = sorted(g["position"].unique())
    labels = {p: f"{g.loc[g['position'] == p, 'token'].iloc[0]!s}·{p}" for p in positions}
    z = g.pivot_table(index="feature", columns="position", values="activation").reindex(index=feats, columns=positions)
    fig = go.Figure(go.Heatmap(z=z.to_numpy(), x=[labels[p] for p in positions], y=[f"f{f}" for f in feats],
                               colorscale="Viridis", colorbar_title="activation",
                               hovertemplate="%{y} at %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title or f"SAE features along the {condition} sentence", height=120 + 32 * len(feats),
                      yaxis=dict(autorange="reversed"))
    return fig


def intervention_figure(diff: pd.DataFrame, title: str = "Surprisal with the intervention on") -> go.Figure:
    """Original vs intervened surprisal per word, one panel per condition."""
    conds = list(dict.fromkeys(diff["condition"]))
    fig = make_subplots(rows=len(conds), cols=1, subplot_titles=conds, vertical_spacing=0.18 if len(conds) > 1 else 0.1)
    for k, cond in enumerate(conds, 1):
        g = diff[diff["condition"] == cond].sort_values("word_index")
        x = [f"{w}<br><sub>{i}</sub>" for w, i in zip(g["word"], g["word_index"])]
        fig.add_bar(x=x, y=g["original_bits"], name="original", marker_color="#9aa5b1", showlegend=k == 1,
                    legendgroup="o", row=k, col=1)
        fig.add_bar(x=x, y=g["intervened_bits"], name="intervention on", marker_color="#d62728", showlegend=k == 1,
                    legendgroup="i", row=k, col=1)
        fig.update_yaxes(title_text="bits", row=k, col=1)
    fig.update_layout(title=title, barmode="group", height=260 * len(conds) + 80, margin=dict(t=80, b=30))
    return fig


def human_figure(human: pd.DataFrame, model_ms: pd.DataFrame | None = None, title: str = "") -> go.Figure:
    """Human garden-path effects (ms, 95% intervals) at ROIs 0-2, the paper's model predictions, and this
    item's predicted effect when given (``model_ms``: columns roi, effect_ms, label)."""
    fig = go.Figure()
    h = human[human["source"] == "human"].sort_values("roi")
    fig.add_bar(x=[f"ROI {r}" for r in h["roi"]], y=h["effect"], name="humans (SAP Benchmark)", marker_color="#2ca02c",
                error_y=dict(type="data", symmetric=False, array=h["ci_high"] - h["effect"],
                             arrayminus=h["effect"] - h["ci_low"]))
    for src, colour in (("gpt2", "#7f7f7f"), ("lstm", "#bcbd22")):
        g = human[human["source"] == src].sort_values("roi")
        if len(g):
            fig.add_bar(x=[f"ROI {r}" for r in g["roi"]], y=g["effect"], name=f"{src.upper()} (paper)", marker_color=colour)
    if model_ms is not None and len(model_ms):
        for label, g in model_ms.groupby("label", sort=False):
            g = g.sort_values("roi")
            fig.add_bar(x=[f"ROI {r}" for r in g["roi"]], y=g["effect_ms"], name=str(label))
    fig.update_layout(title=title, barmode="group", yaxis_title="garden-path effect (ms)", height=380)
    fig.add_hline(y=0, line_color="#888")
    return fig

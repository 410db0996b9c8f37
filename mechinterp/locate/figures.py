"""Summaries and figures for patching tables (built only from the table :func:`mechinterp.locate.patching.patch_suite`
writes, so a saved CSV/Parquet can be re-plotted).

* :func:`item_gaps`: each item's clean - corrupt gap; items whose gap is small or goes the wrong way are
  listed and left out of the averages (``min_gap``), because their normalised values divide by ~0.
* :func:`summarise`: per construction x direction x method x site: mean normalised effect over items with a
  percentile-bootstrap 95% interval (resampling items), and the pooled ratio
  ``sum(raw - corrupt) / sum(clean - corrupt)``.
* Figures: layer x position heatmaps per component, heads x layer heatmaps per position, and the per-position
  curves over layers with bootstrap intervals (the curve per position, not one "best layer": patching the
  last token before the disambiguator late in the network restores the effect by construction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mechinterp.effects import bootstrap_mean_ci
from mechinterp.locate.patching.attribution import correlation
from mechinterp.locate.sites import COMPONENTS
from mechinterp.reports.html import write_report

SITE = ["layer", "component", "head", "position", "position_order"]
GROUP = ["suite", "construction", "direction", "method"]
COMPONENT_ORDER = list(COMPONENTS)
DIRECTION_TITLE = {
    "clean_to_corrupt": "clean → corrupt (denoising: restore the unambiguous value in the ambiguous run)",
    "corrupt_to_clean": "corrupt → clean (noising: bring the ambiguous value into the unambiguous run)",
}


def item_gaps(df: pd.DataFrame, min_gap: float = 0.0) -> pd.DataFrame:
    """One row per item: clean and corrupt values, the gap in the metric's expected direction (corrupt
    surprisal is higher; corrupt log-prob difference is lower) and whether the item is used in averages."""
    g = df.drop_duplicates(["suite", "item"])[["suite", "construction", "item", "metric", "clean_value", "corrupt_value"]]
    sign = np.where(g.metric == "surprisal", 1.0, -1.0)
    gap = sign * (g.corrupt_value - g.clean_value)
    return g.assign(gap=gap, used=gap > min_gap).reset_index(drop=True)


def summarise(df: pd.DataFrame, min_gap: float = 0.0, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean normalised effect per group x site with a bootstrap interval over items (items whose gap is at
    most ``min_gap`` left out), plus the pooled ratio of sums."""
    gaps = item_gaps(df, min_gap)
    used = set(zip(gaps.suite[gaps.used], gaps.item[gaps.used].astype(str)))
    d = df[[(s, str(i)) in used for s, i in zip(df.suite, df["item"])]]
    rng = np.random.default_rng(seed)
    rows = []
    for key, g in d.groupby(GROUP + SITE, sort=False):
        mean, lo, hi = bootstrap_mean_ci(g.normalised.to_numpy(), n_boot=n_boot, rng=rng)
        pooled = (g.raw - g.corrupt_value).sum() / (g.clean_value - g.corrupt_value).sum()
        rows.append({**dict(zip(GROUP + SITE, key)), "normalised": mean, "ci_low": lo, "ci_high": hi,
                     "pooled": float(pooled), "n_items": int(g.normalised.notna().sum())})
    return pd.DataFrame(rows)


def _positions(s: pd.DataFrame) -> list[str]:
    return list(s.sort_values("position_order").position.drop_duplicates())


def heatmaps(summary: pd.DataFrame, construction: str, direction: str, method: str = "exact") -> go.Figure | None:
    """Layer x position heatmaps of the mean normalised effect, one panel per component (heads excluded)."""
    s = summary[(summary.construction == construction) & (summary.direction == direction)
                & (summary.method == method) & (summary.component != "head_out")]
    if s.empty:
        return None
    comps = [c for c in COMPONENT_ORDER if c in set(s.component)]
    fig = make_subplots(rows=1, cols=len(comps), subplot_titles=comps, shared_yaxes=True)
    for k, comp in enumerate(comps, 1):
        g = s[s.component == comp]
        pos = _positions(g)
        z = g.pivot_table(index="layer", columns="position", values="normalised").reindex(columns=pos)
        n = g.pivot_table(index="layer", columns="position", values="n_items").reindex(columns=pos)
        fig.add_heatmap(z=z.to_numpy(), x=pos, y=z.index, coloraxis="coloraxis", customdata=n.to_numpy(),
                        hovertemplate=comp + " L%{y} %{x}: %{z:.2f} (n=%{customdata})<extra></extra>", row=1, col=k)
    fig.update_layout(title=f"{construction}, {method} patching, {DIRECTION_TITLE.get(direction, direction)}",
                      coloraxis=dict(colorscale="RdBu", cmid=0, colorbar_title="normalised"),
                      height=420, yaxis_title="layer")
    return fig


def head_heatmaps(summary: pd.DataFrame, construction: str, direction: str, method: str = "exact") -> go.Figure | None:
    """Layer x head heatmaps of the mean normalised effect of patching one head, one panel per position."""
    s = summary[(summary.construction == construction) & (summary.direction == direction)
                & (summary.method == method) & (summary.component == "head_out")]
    if s.empty:
        return None
    pos = _positions(s)
    fig = make_subplots(rows=1, cols=len(pos), subplot_titles=pos, shared_yaxes=True)
    for k, p in enumerate(pos, 1):
        z = s[s.position == p].pivot_table(index="layer", columns="head", values="normalised")
        fig.add_heatmap(z=z.to_numpy(), x=[f"h{h}" for h in z.columns], y=z.index, coloraxis="coloraxis",
                        hovertemplate=p + " L%{y} %{x}: %{z:.3f}<extra></extra>", row=1, col=k)
    fig.update_layout(title=f"{construction}: heads ({method}), {DIRECTION_TITLE.get(direction, direction)}",
                      coloraxis=dict(colorscale="RdBu", cmid=0, colorbar_title="normalised"), height=420,
                      yaxis_title="layer")
    return fig


def curves(summary: pd.DataFrame, construction: str, direction: str, component: str, method: str = "exact") -> go.Figure | None:
    """Normalised effect against layer, one line per position, with bootstrap 95% intervals."""
    s = summary[(summary.construction == construction) & (summary.direction == direction)
                & (summary.method == method) & (summary.component == component)]
    if s.empty:
        return None
    fig = go.Figure()
    for p in _positions(s):
        g = s[s.position == p].sort_values("layer")
        fig.add_scatter(x=g.layer, y=g.normalised, mode="lines+markers", name=p,
                        error_y=dict(type="data", symmetric=False, array=g.ci_high - g.normalised,
                                     arrayminus=g.normalised - g.ci_low))
    fig.add_hline(y=0, line_color="#888")
    fig.add_hline(y=1, line_color="#888", line_dash="dot")
    fig.update_layout(title=f"{construction}: {component} per position ({method}, {direction})",
                      xaxis_title="layer", yaxis_title="normalised effect (0 = corrupt, 1 = clean)", height=380)
    return fig


def attribution_scatter(df: pd.DataFrame) -> go.Figure | None:
    if not {"exact", "attribution"} <= set(df.method):
        return None
    keys = ["suite", "item", "direction", "layer", "component", "head", "position"]
    ex = df[df.method == "exact"].set_index(keys)
    at = df[df.method == "attribution"].set_index(keys)[["raw"]].rename(columns={"raw": "attr"})
    j = ex.join(at, how="inner").reset_index()
    base = np.where(j.direction == "clean_to_corrupt", j.corrupt_value, j.clean_value)
    fig = go.Figure()
    for comp, g in j.assign(ex_eff=j.raw - base, at_eff=j.attr - base).groupby("component"):
        fig.add_scatter(x=g.ex_eff, y=g.at_eff, mode="markers", name=comp, marker=dict(size=4, opacity=0.5))
    r = correlation(df)
    fig.update_layout(title=f"attribution vs exact patching effect (bits): Pearson r = {r.pearson.iloc[0]:.3f}, "
                            f"Spearman = {r.spearman.iloc[0]:.3f}, n = {int(r.n.iloc[0])}",
                      xaxis_title="exact effect (patched − base)", yaxis_title="attribution estimate", height=450)
    return fig


NOTES = """
<p><b>Reading these figures.</b> Clean = the unambiguous condition, corrupt = the ambiguous one. Each cell is the
mean over items of <code>(patched − corrupt) / (clean − corrupt)</code> for the metric on the disambiguating
word: 0 = the corrupt run's value, 1 = the clean run's. In the clean → corrupt direction a high value means the
site carries what the cue changed; in corrupt → clean an important site pulls the value from 1 toward 0.</p>
<p><b>Positions</b> are each region's last token, resolved in the ambiguous sentence and mapped to the same token
of the unambiguous one (the versions are aligned token by token; the cue exists only in the unambiguous version,
has no counterpart and is not patched — its information is seen where it arrives).</p>
<p class='warn'><b>Trivially complete late.</b> The last token before the disambiguator predicts it, so patching
the residual stream there in the last layers restores the whole effect by construction. Read where each
position's curve <i>rises</i> (when the information arrives there) and the earlier positions and components,
not one "best layer".</p>
"""


def report_blocks(df: pd.DataFrame, min_gap: float = 0.0, n_boot: int = 1000) -> list[tuple[str, Any]]:
    summary = summarise(df, min_gap=min_gap, n_boot=n_boot)
    gaps = item_gaps(df, min_gap)
    blocks: list[tuple[str, Any]] = [("", NOTES)]
    if summary.empty:  # every item's gap is at or below min_gap: nothing to average, say so and show the gaps
        blocks.append(("No item to average", f"<p class='warn'>No item's clean-corrupt gap is above {min_gap} bits "
                                             "(--min-gap), so no mean effect is shown; the items and their gaps "
                                             "are listed below.</p>"))
        blocks.append(("Items (gap = how much worse the corrupt run is, bits)", gaps.round(3)))
        return blocks
    for cons in summary.construction.drop_duplicates():
        for direction in summary.direction.drop_duplicates():
            for method in [m for m in ("exact", "attribution") if m in set(summary.method)]:
                suffix = f" — {cons}, {direction}, {method}"
                for title, fig in (("Components by layer and position" + suffix, heatmaps(summary, cons, direction, method)),
                                   ("Heads" + suffix, head_heatmaps(summary, cons, direction, method))):
                    if fig is not None:
                        blocks.append((title, fig))
                if method == "exact":
                    for comp in [c for c in COMPONENT_ORDER if c != "head_out" and c in set(summary.component)]:
                        fig = curves(summary, cons, direction, comp, method)
                        if fig is not None:
                            blocks.append((f"{comp} per position{suffix}", fig))
    top = (summary[summary.method == "exact"].sort_values("normalised", ascending=False)
           .groupby(["construction", "direction"]).head(8))
    blocks.append(("Largest mean effects (exact)", top.round(3)))
    fig = attribution_scatter(df)
    if fig is not None:
        blocks.append(("Attribution vs exact patching", fig))
        blocks.append(("Correlation by component", correlation(df, by=["construction", "component"]).round(3)))
    blocks.append((f"Items (gap = how much worse the corrupt run is, bits; items with gap <= {min_gap} are left out of averages)",
                   gaps.round(3)))
    skipped = df.attrs.get("skipped") or []
    if skipped:
        blocks.append(("Sites with no counterpart (not patched)", pd.DataFrame(skipped).drop_duplicates("site")))
    return blocks


def write_patching_report(df: pd.DataFrame, path: str | Path, provenance: dict | None = None, min_gap: float = 0.0,
                          title: str = "Activation patching") -> Path:
    return write_report(path, title, report_blocks(df, min_gap=min_gap), provenance)

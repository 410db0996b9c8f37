"""Beyond surprisal for ONE item: every word-level predictor of :func:`mechinterp.word_predictors`, word by word
in both versions, beside the item's human garden-path effect (SAP Benchmark, by item), and the memory-ladder
table when one was saved. Used by the explorer's "Beyond surprisal" page and by
``notebooks/04_beyond_surprisal.ipynb`` (so both draw the same figures).

* :func:`item_predictors`: the predictor table of the item's conditions (columns and formulas in
  :mod:`mechinterp.compare.predictors`), with ``offset`` = words from the disambiguator (0 = ROI 0);
* :func:`predictor_columns`: the predictor columns of such a table that hold a value somewhere;
* :func:`item_human_effect`: the SAP by-item human effect (ms, 95% interval) at ROIs 0-2, or None;
* :func:`roi_differences`: ambiguous - unambiguous of every predictor at ROIs 0-2 (what ``mechinterp fit``
  regresses the human effect on);
* :func:`predictors_figure`: one panel per predictor (both versions, aligned on the disambiguator) under a
  panel of the human effect;
* :func:`ladder_tables`, :func:`ladder_figure`: saved memory-ladder tables under a results catalogue, and
  their figure when the installed workbench draws one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import mechinterp
from mechinterp.compare.humans import load_sap_effects, named_subset, published_effects
from mechinterp.compare.predictors import word_predictors
from mechinterp.effects import garden_path_effects
from mechinterp.errors import ConfigError
from mechinterp.explore.compute import ROIS, has_pair
from mechinterp.explore.inputs import one_item
from mechinterp.explore.results import Catalogue, ResultTable
from mechinterp.locate.attention import Head
from mechinterp.stimuli.constructions import canonical_construction

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Item, Suite

#: predictor families in the order they are shown, by column prefix (see mechinterp.compare.predictors).
FAMILIES: tuple[tuple[str, str], ...] = (
    ("surprisal_bits", "surprise"),
    ("entropy_bits", "uncertainty"),
    ("entropy_change_bits", "uncertainty"),
    ("reading_", "parse belief (behaviour)"),
    ("probe_", "parse belief (probe)"),
    ("repr_", "representational reanalysis"),
    ("attn_amb_", "routing"),
)
UNITS = {"surprisal_bits": "bits", "entropy_bits": "bits", "entropy_change_bits": "bits", "reading_kl_bits": "bits",
         "reading_p_preferred": "P", "reading_tv": "TV"}
VERSION_COLOURS = {True: "#d62728", False: "#1f77b4"}  # ambiguous, unambiguous
HUMAN_COLOUR = "#2ca02c"
LADDER_COMMAND = "ladder"  # the provenance command of a saved memory-ladder table
LADDER_HOW = ("No memory-ladder table for this model under the results directory. Write one with "
              "`mechinterp ladder` (see `mechinterp ladder --help`) into the results directory, then press "
              "'Rescan results'.")


def default_layers(n_layers: int) -> list[int]:
    """A few layers for the representational distances: a quarter, half and three quarters of the way up."""
    return sorted({max(0, min(n_layers - 1, round(n_layers * f))) for f in (0.25, 0.5, 0.75)})


# ---- compute ---------------------------------------------------------------------------------------------------
def add_offsets(table: pd.DataFrame, suite: "Suite") -> pd.DataFrame:
    """``table`` with ``offset``: the word's index minus that of the first word of the disambiguating region in
    the same condition (0 = ROI 0; NaN when the suite names no disambiguating region or the condition lacks it)."""
    out = table.copy()
    region = suite.ambiguity.disambiguating_region if suite.ambiguity is not None else None
    out["offset"] = np.nan
    if region is None:
        return out
    for _, g in out.groupby(["item", "condition"], sort=False):
        start = g.loc[g["region"] == region, "word_index"]
        if len(start):
            out.loc[g.index, "offset"] = g["word_index"] - int(start.min())
    return out


def item_predictors(model: "Model", suite: "Suite", item: "Item",
                    probes: "Sequence[Any] | Mapping[str, Any]" = (), heads: Iterable[Any] = (),
                    layers: Iterable[int] | None = None, readings: bool = True, batch_size: int = 16) -> pd.DataFrame:
    """Every word-level predictor of the item's conditions (:func:`mechinterp.word_predictors`) and ``offset``.

    Args:
        model: the model.
        suite, item: the item (its conditions are scored; the representational distances need both versions).
        probes: reading probes (or a mapping label -> probe) for the ``probe_*`` columns.
        heads: heads for the routing columns (``"L3H0"`` labels, ``mi.Head`` or (layer, head) pairs).
        layers: layers of the representational distances; None: :func:`default_layers`.
        readings: run the per-prefix reading estimator (the ``reading_*`` columns).

    Example:
        >>> import mechinterp as mi
        >>> suite = mi.load_suite("sap:ClassicGP")
        >>> t = item_predictors(mi.load_model("gemma3-270m"), suite, suite.items[24], layers=[9])
        >>> t[["condition", "offset", "word", "surprisal_bits", "reading_tv", "repr_cos_L9"]]
    """
    chosen = default_layers(model.n_layers) if layers is None else list(layers)
    table = word_predictors(model, one_item(suite, item), probes=probes, heads=heads, layers=chosen,
                            batch_size=batch_size, readings=readings)
    return add_offsets(table, suite)


def predictor_columns(table: pd.DataFrame) -> list[str]:
    """The predictor columns of an :func:`item_predictors` table that hold a value somewhere, in family order."""
    out: list[str] = []
    for prefix, _ in FAMILIES:
        for c in table.columns:
            if c.startswith(prefix) and c not in out and bool(table[c].notna().any()):
                out.append(c)
    return out


def family(column: str) -> str:
    """The predictor family of a column (``surprise``, ``parse belief (probe)``, ...)."""
    return next((f for p, f in FAMILIES if column.startswith(p)), "other")


def item_human_effect(suite: "Suite", item: "Item") -> pd.DataFrame | None:
    """The SAP Benchmark's human by-item garden-path effect of ``item`` at ROIs 0-2 (columns roi, effect,
    ci_low, ci_high; ms), or None when the item is not a SAP item with one."""
    subset = named_subset(suite)
    if subset is None:
        return None
    try:
        h = load_sap_effects(None, subset, "item")
    except ConfigError:
        return None
    cons = canonical_construction(suite.construction_of(item))
    keep = (h["construction"] == cons) & (h["item"] == item.number) & h["roi"].isin(ROIS)
    out = pd.DataFrame(h.loc[keep, ["construction", "item", "roi", "effect", "ci_low", "ci_high"]])
    return None if out.empty else out.sort_values("roi").reset_index(drop=True)


def construction_human_effect(construction: str, subset: str = "ClassicGP") -> pd.DataFrame | None:
    """The SAP Benchmark's human effect for a construction (mean over items) at ROIs 0-2, or None."""
    h = published_effects(subset, "human")
    out = pd.DataFrame(h.loc[h["construction"] == canonical_construction(construction),
                             ["construction", "roi", "effect", "ci_low", "ci_high"]])
    return None if out.empty else out.sort_values("roi").reset_index(drop=True)


def roi_differences(table: pd.DataFrame, suite: "Suite", item: "Item",
                    columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    """Ambiguous - unambiguous of every predictor column at ROIs 0-2 (one row per ROI, one column per
    predictor, and the ROI's word), or None without both versions. For ``repr_*`` (a distance between the
    versions, the same on both rows) the value itself is given, not a difference."""
    if not has_pair(suite, item):
        return None
    one = one_item(suite, item)
    cols = list(columns) if columns is not None else predictor_columns(table)
    out: pd.DataFrame | None = None
    for c in cols:
        w = table.drop(columns=["surprisal_bits"]).rename(columns={c: "surprisal_bits"}) if c != "surprisal_bits" \
            else table
        e = garden_path_effects(w, one, ROIS)
        vals = e["surprisal_ambiguous"] if c.startswith("repr_") else e["effect_bits"]
        col = e[["roi", "word"]].assign(**{c: vals.to_numpy()})
        out = col if out is None else out.merge(col, on=["roi", "word"])
    return out


# ---- figures ---------------------------------------------------------------------------------------------------
def _label(column: str) -> str:
    return f"{column} ({UNITS[column]})" if column in UNITS else column


def predictors_figure(table: pd.DataFrame, columns: Sequence[str] | None = None,
                      human: pd.DataFrame | None = None, human_label: str = "", title: str = "") -> go.Figure:
    """One panel per predictor: its value at every word of each version (ambiguous red, unambiguous blue),
    words aligned on the disambiguator (x = ``offset``, 0 = ROI 0; ROIs 0-2 shaded). With ``human`` (columns
    roi, effect, ci_low, ci_high) a first panel shows the human garden-path effect in ms at ROIs 0-2, on the
    same x axis. ``repr_*`` columns (distances between the versions) are drawn once."""
    cols = list(columns) if columns is not None else predictor_columns(table)
    if not cols:
        raise ConfigError("no predictor column with a value to draw")
    aligned = "offset" in table.columns and bool(table["offset"].notna().any())
    x_col = "offset" if aligned else "word_index"
    panels = ([human_label or "human garden-path effect (ms)"] if human is not None and len(human) else []) + \
        [_label(c) for c in cols]
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, subplot_titles=panels,
                        vertical_spacing=min(0.06, 0.5 / max(1, len(panels))))
    row = 1
    if human is not None and len(human):
        h = human.sort_values("roi")
        fig.add_bar(x=h["roi"], y=h["effect"], marker_color=HUMAN_COLOUR, name="humans", showlegend=True,
                    error_y=dict(type="data", symmetric=False, array=h["ci_high"] - h["effect"],
                                 arrayminus=h["effect"] - h["ci_low"]),
                    hovertemplate="ROI %{x}: %{y:.0f} ms<extra>humans</extra>", row=1, col=1)
        fig.update_yaxes(title_text="ms", row=1, col=1)
        row = 2
    versions = list(dict.fromkeys(zip(table["condition"], table["ambiguous"])))
    for k, c in enumerate(cols):
        for cond, amb in versions:
            if c.startswith("repr_") and not amb:
                continue  # the same distance on both versions' rows
            g = pd.DataFrame(table[table["condition"] == cond]).sort_values("word_index")
            colour = VERSION_COLOURS.get(bool(amb), "#7f7f7f")
            name = f"{cond} (between versions)" if c.startswith("repr_") else str(cond)
            fig.add_scatter(x=g[x_col], y=g[c], mode="lines+markers", name=name, legendgroup=name,
                            showlegend=k == 0 or (c.startswith("repr_") and not any(x.startswith("repr_")
                                                                                   for x in cols[:k])),
                            line=dict(color=colour), customdata=g[["word", "word_index"]],
                            hovertemplate="%{customdata[0]} (word %{customdata[1]}): %{y:.3f}<extra>" + name
                                          + "</extra>", row=row + k, col=1)
    if aligned:
        fig.add_vrect(x0=min(ROIS) - 0.5, x1=max(ROIS) + 0.5, fillcolor="#ffdd57", opacity=0.18, line_width=0,
                      row="all", col="all")
        amb_rows = pd.DataFrame(table[table["ambiguous"].astype(bool)]).sort_values("word_index")
        ticks = amb_rows if len(amb_rows) else table.sort_values("word_index")
        ticks = ticks.drop_duplicates("offset")
        fig.update_xaxes(tickmode="array", tickvals=ticks["offset"].tolist(),
                         ticktext=[f"{w}<br><sub>{int(o):+d}</sub>" for w, o in zip(ticks["word"], ticks["offset"])],
                         row=len(panels), col=1)
        fig.update_xaxes(title_text="words (ambiguous version), counted from the disambiguator (ROIs 0-2 shaded)",
                         row=len(panels), col=1)
    fig.update_layout(title=title or "Every predictor, word by word", height=170 * len(panels) + 140,
                      margin=dict(t=80, b=60), legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1,
                                                           xanchor="right"))
    return fig


# ---- the memory ladder -------------------------------------------------------------------------------------------
def ladder_tables(cat: Catalogue, weights_sha256: str | None = None, model: str | None = None) -> list[ResultTable]:
    """The saved memory-ladder tables of a results catalogue (recognised by their provenance: command
    ``ladder``), those of the given model only."""
    return [t for t in cat.of_kind("ladder") if t.matches_model(weights_sha256, model)]


def ladder_figure(table: pd.DataFrame) -> go.Figure | None:
    """The workbench's own ladder figure (``mechinterp.ladder_figure``) of a saved ladder table, or None when
    the installed workbench does not draw one (then show the table)."""
    draw = getattr(mechinterp, "ladder_figure", None) if "ladder_figure" in mechinterp.__all__ else None
    return draw(table) if draw is not None else None


MAX_HEADS = 16


def parse_heads(text: str, n_layers: int | None = None) -> list[str]:
    """Heads typed as ``L3H0, L5H1`` (comma- or space-separated) -> their labels, at most :data:`MAX_HEADS`;
    ConfigError naming the first bad one."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if len(parts) > MAX_HEADS:
        raise ConfigError(f"{len(parts)} heads typed: at most {MAX_HEADS} (each adds one routing column)")
    heads = [Head.parse(p) for p in parts]
    if n_layers is not None:
        for h in heads:
            if not 0 <= h.layer < n_layers:
                raise ConfigError(f"head {h}: layer {h.layer} is out of range (the model has layers 0-{n_layers - 1})")
    return list(dict.fromkeys(str(h) for h in heads))

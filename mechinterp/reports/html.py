"""Assemble a self-contained HTML report (plotly.js embedded once, no CDN) from figures and tables."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import plotly.graph_objects as go

from mechinterp.io import write_text_atomic

Block = go.Figure | pd.DataFrame | str


def _table(df: pd.DataFrame, max_rows: int = 200) -> str:
    return df.head(max_rows).to_html(index=False, float_format=lambda x: f"{x:.3g}", border=0, classes="tbl")


def render(title: str, blocks: Sequence[tuple[str, Block]], provenance: dict[str, Any] | None = None) -> str:
    """``blocks`` are (heading, content) pairs: a plotly figure, a table, or HTML text."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        ".tbl{border-collapse:collapse;font-size:13px}.tbl td,.tbl th{padding:3px 8px;border-bottom:1px solid #ddd}"
        ".warn{background:#fff3cd;padding:.5em 1em;border-left:4px solid #e0a800}"
        "pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    first_fig = True
    for heading, block in blocks:
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(block, go.Figure):
            parts.append(block.to_html(full_html=False, include_plotlyjs=True if first_fig else False))
            first_fig = False
        elif isinstance(block, pd.DataFrame):
            parts.append(_table(block))
        else:
            parts.append(str(block))
    if provenance is not None:
        parts.append("<h2>Provenance</h2><pre>" + html.escape(json.dumps(provenance, indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | Path, title: str, blocks: Sequence[tuple[str, Block]], provenance: dict | None = None) -> Path:
    return write_text_atomic(path, render(title, blocks, provenance))

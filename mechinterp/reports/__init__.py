"""HTML reports built from result tables (plotly figures, fully offline)."""

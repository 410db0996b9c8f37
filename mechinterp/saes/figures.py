"""Plotly figures and report blocks for SAE quality, feature statistics and feature cards, built from the
result tables and records (never from private state). Reports embed plotly.js (no CDN)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

if TYPE_CHECKING:
    from mechinterp.saes.cards import FeatureCard
    from mechinterp.saes.features import FeatureConfig, FeatureResults

KIND_COLOURS = {"reading": "#1f77b4", "cue/lexical": "#ff7f0e", "n.s.": "#bbbbbb"}


# ---- quality ---------------------------------------------------------------------------------------
def quality_table(q: dict[str, Any]) -> pd.DataFrame:
    h, s = q.get("heldout", {}), q.get("spliced") or {}
    rows = [
        ("site", q.get("site")), ("width (latents)", q.get("d_sae")), ("k", q.get("k")),
        ("tokens seen", q.get("tokens_seen")), ("training wall time (s)", q.get("train_time_s")),
        ("activation caching (s)", q.get("cache_time_s")), ("held-out tokens", h.get("n_tokens")),
        ("L0", h.get("l0")), ("fraction of variance explained (held-out)", h.get("fve")),
        ("mean cosine(x, x_hat)", h.get("cosine")), ("dead fraction (never fires on held-out)", h.get("dead_fraction")),
        ("dense fraction (fires on >10% of tokens)", h.get("dense_fraction")),
    ]
    if s:
        rows += [
            ("held-out predictions scored", s.get("n_tokens")), ("CE clean (nats)", s.get("ce_clean")),
            ("CE with SAE spliced in", s.get("ce_sae")), ("CE mean-ablated", s.get("ce_mean")),
            ("CE zero-ablated", s.get("ce_zero")), ("CE recovered vs zero-ablation", s.get("ce_recovered_vs_zero")),
            ("CE recovered vs mean-ablation", s.get("ce_recovered_vs_mean")), ("KL(clean || SAE)", s.get("kl_sae")),
            ("KL(clean || mean-ablated)", s.get("kl_mean")), ("KL(clean || zero-ablated)", s.get("kl_zero")),
        ]
    return pd.DataFrame(rows, columns=["statistic", "value"]).astype({"value": object})


def density_figure(q: dict[str, Any]) -> go.Figure:
    d = np.asarray([v for v in q.get("log10_density", []) if v is not None], dtype=float)
    fig = go.Figure(go.Histogram(x=d, nbinsx=60, marker_color="#1f77b4"))
    fig.update_layout(title="Latent firing frequency on held-out tokens (dead latents at -10)",
                      xaxis_title="log10(fraction of tokens where the latent fires)", yaxis_title="latents")
    return fig


def ce_figure(q: dict[str, Any]) -> go.Figure:
    s = q.get("spliced") or {}
    names = ["clean", "SAE spliced in", "mean-ablated", "zero-ablated"]
    vals = [s.get("ce_clean"), s.get("ce_sae"), s.get("ce_mean"), s.get("ce_zero")]
    fig = go.Figure(go.Bar(x=names, y=vals, marker_color=["#2ca02c", "#1f77b4", "#ff7f0e", "#d62728"]))
    fig.update_layout(title="Next-token cross-entropy on held-out text (site replaced at non-BOS positions)",
                      yaxis_title="nats / token")
    return fig


def quality_blocks(q: dict[str, Any]) -> list[tuple[str, Any]]:
    blocks: list[tuple[str, Any]] = [("Quality", quality_table(q)), ("", density_figure(q))]
    if q.get("spliced"):
        blocks.append(("", ce_figure(q)))
    return blocks


# ---- features --------------------------------------------------------------------------------------
def _group(df: pd.DataFrame, suite: str, construction: str | None) -> pd.DataFrame:
    g = df[df["suite"] == suite]
    return g if construction is None else g[g["construction"] == construction]  # pyright: ignore[reportReturnType]  # pandas stubs type this frame expression as DataFrame | Series


def volcano_figure(stats: pd.DataFrame, suite: str, position: str = "ambiguous", construction: str | None = None) -> go.Figure:
    g = _group(stats, suite, construction)
    g = g[(g["position"] == position) & g["tested"]]
    fig = go.Figure()
    for kind, gk in g.groupby("kind"):
        fig.add_scatter(
            x=gk["cohen_dz"], y=-np.log10(gk["q"].clip(lower=1e-300)), mode="markers", name=str(kind),
            marker=dict(color=KIND_COLOURS.get(str(kind), "#555"), size=7),
            text=[f"feature {f}<br>{r}<br>amb {a:.2f} / unamb {u:.2f}" for f, r, a, u in
                  zip(gk["feature"], gk["reading"], gk["mean_ambiguous"], gk["mean_unambiguous"])],
            hovertemplate="%{text}<br>d_z %{x:.2f}, q %{customdata:.2g}<extra></extra>", customdata=gk["q"],
        )
    fig.update_layout(title=f"{suite} {construction or ''}: features at the {position} position (right: more active when ambiguous)",
                      xaxis_title="Cohen's d_z (ambiguous − unambiguous)", yaxis_title="−log10 q (BH)")
    return fig


def baseline_figure(stats: pd.DataFrame, suite: str, construction: str | None = None) -> go.Figure:
    g = _group(stats, suite, construction)
    g = g[(g["position"] == "ambiguous") & g["tested"]]
    fig = go.Figure()
    for kind, gk in g.groupby("kind"):
        fig.add_scatter(x=gk["baseline_dz"], y=gk["cohen_dz"], mode="markers", name=str(kind),
                        marker=dict(color=KIND_COLOURS.get(str(kind), "#555"), size=7),
                        text=[f"feature {f}" for f in gk["feature"]],
                        hovertemplate="%{text}<br>baseline d_z %{x:.2f}<br>ambiguous d_z %{y:.2f}<extra></extra>")
    fig.update_layout(title=f"{suite}: lexical baseline — effect before the ambiguous region vs at it",
                      xaxis_title="d_z at the token before the ambiguous region (cue)",
                      yaxis_title="d_z at the ambiguous region")
    return fig


def attribution_figure(attr: pd.DataFrame, suite: str, n: int = 15, construction: str | None = None) -> go.Figure:
    g = _group(attr, suite, construction)
    g = g[g["window"] == "from_ambiguous"]
    g = g.reindex(g["attr_effect_bits"].abs().sort_values(ascending=False).index).head(n)
    fig = go.Figure(go.Bar(
        x=g["attr_effect_bits"], y=[f"f{f}" for f in g["feature"]], orientation="h",
        error_x=dict(type="data", array=g["sd_effect_bits"] / np.sqrt(g["n_items"].clip(lower=1))),
        marker_color=np.where(g["attr_effect_bits"] > 0, "#d62728", "#1f77b4"), name="activation × gradient"))
    if "ablation_effect_bits" in g:
        fig.add_scatter(x=g["ablation_effect_bits"], y=[f"f{f}" for f in g["feature"]], mode="markers",
                        marker=dict(symbol="diamond", color="black", size=9), name="zero-ablation")
    fig.update_layout(title=f"{suite}: garden-path effect flowing through each feature (ambiguous region → "
                            "disambiguator)", xaxis_title="bits of the effect (mean over items, ±1 s.e.)",
                      yaxis=dict(autorange="reversed"))
    return fig


def features_blocks(res: "FeatureResults", cfg: "FeatureConfig") -> list[tuple[str, Any]]:
    blocks: list[tuple[str, Any]] = [
        ("", "<p>Features compared at the ambiguous region between the ambiguous and unambiguous conditions "
             "(sign-flip permutation tests, Benjamini-Hochberg q &lt; " + f"{cfg.alpha}" + "). "
             "<b>Lexical baseline</b>: the same test at the token before the ambiguous region (the cue in the "
             "unambiguous condition); features that already differ there in the same direction are labelled "
             "<i>cue/lexical</i>, not <i>reading</i>.</p>"),
        ("Garden-path effect and attribution totals", res.effects),
        ("Top features per reading", res.summary),
        ("Are features of both readings active at the ambiguous word?", res.coactivation),
    ]
    groups = res.stats[["suite", "construction"]].drop_duplicates().itertuples(index=False) if not res.stats.empty else []
    for suite, cons in groups:
        blocks.append((f"Suite {suite} ({cons})", volcano_figure(res.stats, suite, construction=cons)))
        blocks.append(("", baseline_figure(res.stats, suite, construction=cons)))
        if res.attribution is not None:
            blocks.append(("", attribution_figure(res.attribution, suite, construction=cons)))
    return blocks


# ---- cards -----------------------------------------------------------------------------------------
def sentence_figure(tokens: list[str], acts: list[float], feature: int, title: str = "") -> go.Figure:
    fig = go.Figure(go.Bar(x=list(range(len(tokens))), y=acts, marker_color="#1f77b4",
                           text=tokens, hovertemplate="%{text}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title or f"Feature {feature} along the sentence",
                      xaxis=dict(tickmode="array", tickvals=list(range(len(tokens))), ticktext=tokens),
                      yaxis_title="activation")
    return fig


def _highlight(rows: pd.DataFrame) -> str:
    out = ["<table class='tbl'><tr><th>activation</th><th>source</th><th>context</th></tr>"]
    for _, r in rows.iterrows():
        out.append(
            f"<tr><td>{r['activation']:.3f}</td><td>{html.escape(str(r['where']))}</td><td>"
            f"{html.escape(str(r['left']))}<b style='background:#ffe08a'>{html.escape(str(r['token']))}</b>"
            f"{html.escape(str(r['right']))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def card_blocks(card: "FeatureCard") -> list[tuple[str, Any]]:
    blocks: list[tuple[str, Any]] = [(f"Feature {card.feature}", pd.DataFrame(
        [{"statistic": k, "value": v} for k, v in card.stats.items()]).astype({"value": object}))]
    for src, label in (("training", "Top contexts in the training text"), ("stimuli", "Top contexts in the stimuli")):
        rows = card.contexts[card.contexts["source"] == src]
        blocks.append((label, _highlight(rows) if len(rows) else "<p>(the feature never fires here)</p>"))
    blocks.append(("Activation along an example sentence",
                   sentence_figure(card.sentence_tokens, card.sentence_acts, card.feature, card.sentence)))
    if card.probe_cosines is not None and len(card.probe_cosines):
        blocks.append(("Cosine of the decoder direction with probe directions", card.probe_cosines))
    if card.top_tokens is not None and len(card.top_tokens):
        blocks.append(("Tokens the decoder direction promotes (direct path through the unembedding; ignores "
                       "later layers and the final norm)", card.top_tokens))
    return blocks

"""The plain-language summary of the workbench report (`mechinterp demo`), computed from its tables.

Each function reads one stage's tidy table and returns one sentence; :func:`summary_table` puts them
together as the answers to the report's questions. No sentence is written in advance: every number, layer,
verdict and yes/no comes from the tables, so a different model (or a different run) gets different words.
"""

from __future__ import annotations

import html
import math
from typing import Sequence

import pandas as pd

QUESTIONS = {
    "effect": "Does it stumble where people do?",
    "hold": "Which reading does it hold?",
    "where": "Where?",
    "forced": "What happens when it is forced to one?",
    "humans": "Does forcing it make it read like a person?",
}


def _ci(value: float, low: float, high: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def _join(parts: Sequence[str]) -> str:
    parts = list(parts)
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def effect_sentence(effects: pd.DataFrame, roi: int = 0) -> str:
    """Garden-path effects at one ROI, per construction.

    Args:
        effects: :func:`mechinterp.effects.summarise_effects` output (construction, roi, effect_bits, ci_low,
            ci_high, n_items).
        roi: 0 = the disambiguating word.

    Returns:
        One sentence.

    Example:
        >>> effect_sentence(summarise_effects(items))
    """
    e = effects[effects["roi"] == roi]
    if e.empty:
        return f"No garden-path effect could be computed at ROI {roi}."
    parts = [f"{r.construction} {_ci(r.effect_bits, r.ci_low, r.ci_high)} bits (n = {int(r.n_items)})"
             for r in e.itertuples()]
    above = int((e["ci_low"] > 0).sum())
    return (f"At the disambiguating word the ambiguous version costs more surprisal than the unambiguous one: "
            f"{_join(parts)}; {above} of {len(e)} construction(s) have a 95% interval above zero.")


def patching_sentence(summary: pd.DataFrame, threshold: float = 0.5) -> str:
    """Where the information the cue adds sits, from a clean -> corrupt patching summary.

    Args:
        summary: :func:`mechinterp.locate.figures.summarise` output for one construction.
        threshold: The share of the effect a site must restore to count as carrying it.

    Returns:
        One sentence: the earliest (layer, position) restoring at least ``threshold`` of the effect, and the
        earliest such layer at an earlier position than the last one before the disambiguator.

    Example:
        >>> patching_sentence(summarise(patch_table))
    """
    s = summary[(summary["direction"] == "clean_to_corrupt") & (summary["method"] == "exact")] if len(summary) else summary
    if s.empty:
        return "Patching found no item with a clear garden-path gap, so it locates nothing."
    cons = s["construction"].iloc[0]
    comp = s["component"].iloc[0]
    n = int(s["n_items"].max())
    last_order = s["position_order"].max()
    best = s.loc[s["normalised"].idxmax()]
    text = (f"Patching {comp} from the unambiguous into the ambiguous run ({cons}, {n} item(s)), the largest "
            f"restoration is {best.normalised:.2f} of the effect at the {best.position} token, layer {int(best.layer)}")
    carried = s[s["normalised"] >= threshold].sort_values(["layer", "position_order"])
    early = carried[carried["position_order"] < last_order]
    if len(early):
        r = early.iloc[0]
        text += (f"; an earlier position already carries at least {threshold:.0%} of it: {r.position} from "
                 f"layer {int(r.layer)} ({r.normalised:.2f})")
    else:
        late = carried[carried["position_order"] == last_order]
        if len(late):
            text += (f"; only the last token before the disambiguator ({late.iloc[0].position}) carries at least "
                     f"{threshold:.0%} of it, from layer {int(late.iloc[0].layer)}")
        else:
            text += f"; no site restores {threshold:.0%} of it"
    return text + "."


def probe_sentence(verdicts: pd.DataFrame) -> str:
    """Which reading the probes read on the ambiguous word, at the most accurate layer and across layers.

    Args:
        verdicts: The ``verdicts`` table of :func:`mechinterp.probes.run_probes` (one construction).

    Returns:
        One sentence.

    Example:
        >>> probe_sentence(run_probes(model, suite, layers=[0, 6]).verdicts)
    """
    if verdicts.empty:
        return "No reading probe could be trained."
    v = verdicts.sort_values("layer")
    best = v.loc[v["accuracy"].idxmax()]
    counts = v["verdict"].value_counts()
    across = _join([f"{k} at {n} layer(s)" for k, n in counts.items()])
    return (f"Reading probes for {best.construction}, trained on generated unambiguous sentences, are most accurate at "
            f"layer {int(best.layer)} (held-out accuracy {best.accuracy:.2f}); there the ambiguous word reads "
            f"P({best.preferred_reading}) = {best.p_ambiguous:.2f} against {best.p_unambiguous:.2f} with the cue "
            f"(anchors {best.p_preferred_anchor:.2f} / {best.p_other_anchor:.2f}): \u201c{best.verdict}\u201d. "
            f"Across the {len(v)} layers read: {across}.")


def collapse_sentence(effects: pd.DataFrame, side: pd.DataFrame, intervention: str, roi: int = 0,
                      original: str = "original", efficacy: pd.DataFrame | None = None) -> str:
    """How one intervention changes the garden-path effect, and what it costs elsewhere.

    Args:
        effects: ``summarise_effects(..., by=("intervention", "construction", "roi"))`` of the collapse run.
        side: The collapse run's side-effects table (one row per intervention).
        intervention: The intervention's name.
        roi: The ROI reported.
        original: The name of the unmodified model's rows.
        efficacy: The collapse run's efficacy table (P(dispreferred reading) before and after, per construction
            and condition); when given, the sentence first says whether the intervention committed the model.

    Returns:
        One sentence.

    Example:
        >>> collapse_sentence(summ, res.side_effects, "commit", efficacy=res.efficacy)
    """
    e = effects[effects["roi"] == roi].set_index(["intervention", "construction"])
    parts = []
    for cons in dict.fromkeys(c for _, c in e.index):
        if (original, cons) in e.index and (intervention, cons) in e.index:
            a, b = e.loc[(original, cons)], e.loc[(intervention, cons)]
            parts.append(f"{cons} {a.effect_bits:+.2f} \u2192 {b.effect_bits:+.2f} bits")
    text = f"Under {intervention}, the effect at ROI {roi} goes {_join(parts) or 'unmeasured'}"
    if efficacy is not None and len(efficacy):
        amb = efficacy[(efficacy["intervention"] == intervention) & (efficacy["condition"] == "ambiguous")]
        if "method" in amb.columns and bool((amb["method"] == "exact").any()):
            amb = amb[amb["method"] == "exact"]
        moved = [f"{r.construction} {r.p_dispreferred_original:.2f} \u2192 {r.p_dispreferred:.2f}"
                 for r in amb.itertuples()]
        n_collapsed = int(amb["collapsed"].astype(bool).sum())
        if moved:
            text = (f"Efficacy first: in the ambiguous sentences, P(dispreferred reading) at the end of the "
                    f"ambiguous region goes {_join(moved)} under {intervention}, so it committed the model in "
                    f"{n_collapsed} of {len(moved)} construction(s). " + text)
    row = side[side["intervention"] == intervention]
    if len(row):
        r = row.iloc[0]
        ppl = r.get("ns_perplexity_ratio")
        if ppl is not None and not (isinstance(ppl, float) and math.isnan(ppl)):
            text += f"; Natural Stories perplexity changes by {(ppl - 1) * 100:+.1f}%"
            if bool(r.get("flag_perplexity")):
                text += " (more than 5%: a damaged language model)"
            sp = r.get("ns_perplexity_scoped_ratio")
            if sp is not None and not (isinstance(sp, float) and math.isnan(sp)):
                text += (f" with the intervention on every word, and by {(sp - 1) * 100:+.1f}% when it acts only on "
                         "the noun phrases right after a verb")
        d = r.get("unamb_roi_delta_bits")
        if d is not None and not (isinstance(d, float) and math.isnan(d)):
            text += f", and the unambiguous sentences' ROI surprisal by {d:+.2f} bits"
    return text + "."


def compare_sentence(table: pd.DataFrame, order: pd.DataFrame, ms_per_bit: float, intervention: str,
                     roi: int = 1, original: str = "original") -> str:
    """Predicted against human garden-path effects (ms), before and after the intervention.

    Args:
        table: :meth:`mechinterp.compare.likeness.Comparison.table`.
        order: :attr:`mechinterp.compare.likeness.Comparison.order`.
        ms_per_bit: The linking fit's ms per bit.
        intervention: The intervention's name.
        roi: The ROI reported (1 = the word after the disambiguator, where the SAP effects peak).
        original: The name of the unmodified model's rows.

    Returns:
        One sentence.

    Example:
        >>> compare_sentence(cmp.table(), cmp.order, fit.ms_per_bit(), "commit")
    """
    t = table[table["roi"] == roi]
    parts = []
    for cons, g in t.groupby("construction", sort=False):
        g = g.set_index("intervention")
        if original not in g.index:
            continue
        a = g.loc[original]
        p = f"{cons} {a.predicted_ms:.0f} ms"
        if intervention in g.index:
            p += f" (\u2192 {g.loc[intervention].predicted_ms:.0f} ms forced)"
        parts.append(p + f" vs people {a.human_ms:.0f} ms")
    text = f"With a link of {ms_per_bit:.1f} ms per bit, at ROI {roi} the model predicts {_join(parts)}"
    ratios = t.groupby("intervention")["ratio"].mean()
    if original in ratios and intervention in ratios:  # pyright: ignore[reportOperatorIssue]  # pandas stubs: a row cell typed as Series/scalar union
        text += (f"; the mean model-to-human ratio goes from {ratios[original]:.2f} to {ratios[intervention]:.2f}")
    o = order[order["roi"] == roi] if len(order) else order
    if len(o):
        verdicts = [f"{'matches' if bool(r.matches) else 'does not match'} people's ({r.human_order}) "
                    f"{'unmodified' if r.intervention == original else 'forced'}"
                    for r in o.itertuples() if r.intervention in (original, intervention)]
        text += "; the order of constructions " + _join(verdicts)
    return text + "."


def summary_table(sentences: dict[str, str]) -> pd.DataFrame:
    """The summary as a table: one row per question.

    Args:
        sentences: Keys of :data:`QUESTIONS` to their answers.

    Returns:
        Columns ``key``, ``question``, ``answer``, in the order of :data:`QUESTIONS`.

    Example:
        >>> summary_table({"effect": effect_sentence(summary)})
    """
    rows = [{"key": k, "question": q, "answer": sentences[k]} for k, q in QUESTIONS.items() if k in sentences]
    return pd.DataFrame(rows, columns=["key", "question", "answer"])


def summary_html(summary: pd.DataFrame, model_name: str) -> str:
    """The summary as the report's opening HTML block.

    Args:
        summary: :func:`summary_table` output.
        model_name: The model's display name.

    Returns:
        HTML text.

    Example:
        >>> summary_html(summary_table(sentences), "Gemma-3-270M")
    """
    items = "".join(f"<li><b>{html.escape(r.question)}</b> {html.escape(r.answer)}</li>" for r in summary.itertuples())
    return (f"<div class='summary'><p>What {html.escape(model_name)} does with a temporarily ambiguous sentence, "
            f"computed from the tables of this run:</p><ul>{items}</ul></div>")

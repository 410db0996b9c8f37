"""Attribution patching: the first-order (gradient) estimate of every patch of a sweep at once.

For a base run with activation ``a`` at a site and the other version's activation ``a'`` there, exact
patching measures ``m(a')``; attribution patching estimates it as ``m(a) + (a' - a) . dm/da`` (Nanda 2023,
"Attribution patching"; Syed, Rager & Conmy 2023). One forward and one backward pass of the base sentence
give ``dm/da`` for every site and position, so a whole sweep costs two passes per item and direction
instead of one pass per site.

Gradients are taken by adding a zero tensor (a leaf that requires grad) to each site's activation through
:func:`mechinterp.locate.hooks.write_site`, so the same definitions hold as for exact patching: for ``resid_mid``
the gradient is the one of the sum ``resid_pre + attn_out``; for ``head_out`` it is the gradient at the
``o_proj`` output, shared by all heads of a layer (each head's estimate differs by its activation difference).
For Gemma that point is before the post-attention norm, whose nonlinearity the linear estimate ignores.
Positions with several tokens (``all``) sum the per-token terms.

Rows have ``method = "attribution"`` and the same columns as exact patching; ``raw`` is the estimated
metric. :func:`correlation` compares the two methods' effects (``raw - base value``).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from mechinterp.locate.hooks import base_model, write_site
from mechinterp.locate.patching.metrics import metric_from_hidden
from mechinterp.locate.patching.plan import PairContext, PatchConfig, result_row, roles
from mechinterp.locate.sites import Site

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite


def _grad_site(site: Site) -> Site:
    """The site whose gradient a site needs (all heads of a layer share the o_proj-output gradient)."""
    return Site(site.layer, site.component, None, 0 if site.component == "head_out" else None)


def gradients(model: "Model", ids: list[int], sites: list[Site], spec: Any) -> tuple[float, dict[Site, torch.Tensor]]:
    """The metric of the unpatched sentence and ``d metric / d activation`` ``[seq, d_model]`` at each site."""
    keys = list(dict.fromkeys(_grad_site(s) for s in sites))
    x = torch.tensor([ids[: spec.length]], device=model.device)
    deltas = {k: torch.zeros(1, x.shape[1], model.d_model, device=model.device, dtype=model.dtype,
                             requires_grad=True) for k in keys}
    with torch.enable_grad(), ExitStack() as stack:
        for k, d in deltas.items():
            stack.enter_context(write_site(model, k, lambda a, d=d: a + d))
        hidden = base_model(model)(input_ids=x, use_cache=False).last_hidden_state
        m = metric_from_hidden(model, hidden, spec)[0]
        grads = torch.autograd.grad(m, list(deltas.values()), allow_unused=True)
    out = {k: (g[0] if g is not None else torch.zeros_like(deltas[k][0])).detach().float() for k, g in zip(keys, grads)}
    return float(m.detach()), out


def attribution_rows(model: "Model", suite: "Suite", ctx: PairContext, config: PatchConfig) -> list[dict[str, Any]]:
    """Attribution estimates for every planned site of one item, in each direction of ``config``."""
    rows: list[dict[str, Any]] = []
    if not ctx.planned:
        return rows
    for direction in config.directions:
        base, source = roles(direction)
        spec = ctx.specs[base]
        value, grads = gradients(model, list(ctx.pair.version(base).input_ids), [p.site for p in ctx.planned], spec)
        b_acts, s_acts = ctx.acts.of(base), ctx.acts.of(source)
        for p in ctx.planned:
            key = p.site.unpositioned
            bpos, spos = list(ctx.positions(p, base)), list(ctx.positions(p, source))
            if max(bpos) >= spec.length:  # after the last position the metric reads: no effect
                est = value
            else:
                diff = s_acts[key][0, spos] - b_acts[key][0, bpos]
                g = grads[_grad_site(p.site)][bpos]
                est = value + float((diff * g).sum())
            rows.append(result_row(suite, model, ctx, p, direction, "attribution", est, config))
    return rows


def correlation(df: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Pearson and Spearman correlation between attribution and exact effects (``raw - unpatched base
    value``), overall or per group (e.g. ``by=["component"]``). One row per group with n, r, rho."""
    keys = ["suite", "item", "direction", "layer", "component", "head", "position"]
    ex = df[df.method == "exact"].set_index(keys)
    at = df[df.method == "attribution"].set_index(keys)
    j = ex.join(at[["raw"]].rename(columns={"raw": "raw_attr"}), how="inner")
    base = np.where(j.index.get_level_values("direction") == "clean_to_corrupt", j.corrupt_value, j.clean_value)
    j = j.assign(effect_exact=j.raw - base, effect_attr=j.raw_attr - base).reset_index()
    groups = j.groupby(by) if by else [((), j)]
    out = []
    for name, g in groups:
        rec = dict(zip(by or [], name if isinstance(name, tuple) else (name,)))
        ok = g[["effect_exact", "effect_attr"]].dropna()
        if len(ok) >= 3 and ok.effect_exact.std() > 0 and ok.effect_attr.std() > 0:
            rec.update(n=len(ok), pearson=stats.pearsonr(ok.effect_exact, ok.effect_attr)[0],
                       spearman=stats.spearmanr(ok.effect_exact, ok.effect_attr)[0])
        else:
            rec.update(n=len(ok), pearson=float("nan"), spearman=float("nan"))
        out.append(rec)
    return pd.DataFrame(out)

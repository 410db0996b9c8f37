"""Exact activation patching, many patches per forward pass.

For one item and direction, the sites are sorted by layer and split into chunks of ``rows_per_pass``; each
chunk is ONE forward pass of the base sentence stacked B times, row r patched at site r. Rows are identical up
to the first patched layer, so that prefix runs once and is expanded to B rows at the chunk's first layer;
the sentence is cut after the last token the metric reads, and the LM head is applied only at the positions
the metric needs. ``tests/test_locate_patching.py`` checks the result equals patching one site per full
forward pass (<= 1e-5).
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.locate.hooks import (
    at_positions,
    base_model,
    block,
    forward_pre_hook,
    pre_input,
    pre_replace,
    read_site,
    write_site,
)
from mechinterp.locate.patching.metrics import (
    MetricSpec,
    metric_from_hidden,
    metric_from_logits,
    unpatched_metric,
)
from mechinterp.locate.patching.plan import Direction, PairContext, PatchConfig, Planned, result_row, roles
from mechinterp.locate.sites import Site
from mechinterp.tokenization import TokenizedText

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite


@dataclass(frozen=True)
class Patch:
    site: Site  # unpositioned
    positions: tuple[int, ...]  # in the base sentence
    values: Float[Tensor, "k d"]  # what to write there


def _expand_at(model: "Model", layer: int, rows: int):
    """Expand the (single-row) hidden state entering block ``layer`` to ``rows`` identical rows: the layers
    before the first patched one run once for the whole chunk."""
    def hook(_m: Any, args: tuple, kwargs: dict) -> Any:
        x = pre_input(args, kwargs)
        if x.shape[0] == rows:
            return None
        return pre_replace(args, kwargs, x.expand(rows, *x.shape[1:]).contiguous())

    return forward_pre_hook(block(model, layer), hook)


def _chunks(seq: Sequence[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(seq), size):
        yield list(seq[i : i + size])


@torch.no_grad()
def run_patches(
    model: "Model", base_ids: Sequence[int], patches: Sequence[Patch], spec: MetricSpec, rows_per_pass: int = 64
) -> np.ndarray:
    """The metric of the base sentence with each patch applied alone, ``rows_per_pass`` patches per forward
    pass (one row each). With no patches: the unpatched value (one number)."""
    n = max([spec.length] + [max(p.positions) + 1 for p in patches])
    ids = torch.tensor([list(base_ids[:n])], device=model.device)
    dec = base_model(model)
    if not patches:
        return np.array([unpatched_metric(model, base_ids, spec)])
    order = sorted(range(len(patches)), key=lambda i: patches[i].site.layer)
    out = np.empty(len(patches))
    for chunk in _chunks(order, rows_per_pass):
        groups: dict[Site, list[tuple[int, Patch]]] = defaultdict(list)
        for r, i in enumerate(chunk):
            groups[patches[i].site].append((r, patches[i]))
        first = min(patches[i].site.layer for i in chunk)
        with ExitStack() as stack:
            stack.enter_context(_expand_at(model, first, len(chunk)))  # before the writes: they see B rows
            for site, members in groups.items():
                rows = [r for r, p in members for _ in p.positions]
                pos = [t for _, p in members for t in p.positions]
                vals = torch.cat([p.values for _, p in members])
                stack.enter_context(write_site(model, site, at_positions(rows, pos, vals)))
            hidden = dec(input_ids=ids, use_cache=False).last_hidden_state
        out[chunk] = metric_from_hidden(model, hidden, spec).cpu().numpy()
    return out


@torch.no_grad()
def patch_one(
    model: "Model",
    base: TokenizedText,
    source: TokenizedText,
    site: Site,
    base_positions: Sequence[int],
    source_positions: Sequence[int],
    spec: MetricSpec,
) -> float:
    """Reference implementation: one patch, one full forward pass (all logits), no batching tricks."""
    s = site.unpositioned
    with read_site(model, s) as cap:
        model.hf(input_ids=torch.tensor([source.input_ids], device=model.device), use_cache=False)
    vals = cap.value[0, list(source_positions)]
    with write_site(model, s, at_positions([0] * len(base_positions), list(base_positions), vals)):
        lg = model.hf(input_ids=torch.tensor([base.input_ids], device=model.device), use_cache=False).logits
    return float(metric_from_logits(lg, spec)[0])


def exact_values(model: "Model", ctx: PairContext, config: PatchConfig) -> list[tuple[Planned, Direction, float]]:
    """(planned site, direction, patched metric) for every planned site of one item and each direction. A patch
    whose source activation equals the base activation (positions before the cue have identical prefixes in
    both versions) changes nothing: its value is the unpatched base value and it is not run."""
    out = []
    for direction in config.directions:
        base, source = roles(direction)
        src, dst = ctx.acts.of(source), ctx.acts.of(base)
        patches: list[Patch | None] = []
        for p in ctx.planned:
            key = p.site.unpositioned
            new = src[key][0, list(ctx.positions(p, source))]
            same = config.skip_identical and torch.equal(new, dst[key][0, list(ctx.positions(p, base))])
            patches.append(None if same else Patch(key, ctx.positions(p, base), new))
        todo = [q for q in patches if q is not None]
        raws = iter(run_patches(model, ctx.pair.version(base).input_ids, todo, ctx.specs[base], config.rows_per_pass)
                    if todo else [])
        for p, q in zip(ctx.planned, patches):
            out.append((p, direction, ctx.values[base] if q is None else float(next(raws))))
    return out


def exact_rows(model: "Model", suite: "Suite", ctx: PairContext, config: PatchConfig) -> list[dict[str, Any]]:
    """Exact patching rows of one item (:func:`exact_values`, one row each)."""
    return [result_row(suite, model, ctx, p, direction, "exact", raw, config)
            for p, direction, raw in exact_values(model, ctx, config)]

"""Reading the activations of :class:`~mechinterp.locate.sites.Site` values on any backend.

The same site gives the same tensor read through plain HF hooks (:mod:`mechinterp.locate.hooks`),
TransformerLens bridge hook points (``blocks.L.hook_resid_pre`` ...) or nnsight module proxies;
``tests/test_locate_activations.py`` compares all three. :func:`collect` gathers one row per sequence (or
token) for batches of tokenized sentences; :func:`read_batch` returns full ``[batch, seq, d_model]`` tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.errors import ConfigError, RegionError
from mechinterp.forward import batches, pad_batch
from mechinterp.locate.hooks import head_contribution, layout_of, read_sites, run_until
from mechinterp.locate.sites import Component, RegionPos, Site, resolve_positions
from mechinterp.tokenization import TokenizedText

if TYPE_CHECKING:
    from mechinterp.models import Backend, Model
    from mechinterp.stimuli.types import Suite


_TL_NAMES = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "head_out": "attn.hook_z",
}


def tl_hook_name(site: Site) -> str:
    """The TransformerLens hook point that holds ``site`` (``head_out`` reads ``attn.hook_z``, the per-head
    input of W_O, and multiplies by the head's W_O slice). Internal: user code passes Sites."""
    return f"blocks.{site.layer}.{_TL_NAMES[site.component]}"


Key = tuple  # (layer, component, head): Site.key


def _stop(keys: Iterable[Key]) -> tuple[int, bool]:
    """(layer, before): the earliest point where every key has been read."""
    last = max(k[0] for k in keys)
    only_pre = all(k[1] == "resid_pre" for k in keys if k[0] == last)
    return last, only_pre


def _read_hf(model: "Model", inputs: dict[str, Tensor], keys: list[Key]) -> dict[Key, Tensor]:
    sites = [Site(L, c, None, h) for L, c, h in keys]
    last, before = _stop(keys)
    with read_sites(model, sites) as caps:
        run_until(model, last, before=before, **inputs)
    return {s.key: caps[s].value for s in sites}


def _read_tl(model: "Model", inputs: dict[str, Tensor], keys: list[Key]) -> dict[Key, Tensor]:
    names = {tl_hook_name(Site(L, c, None, h)) for L, c, h in keys}
    last, _ = _stop(keys)
    _, cache = model.tl.run_with_cache(
        inputs["input_ids"], attention_mask=inputs["attention_mask"], position_ids=inputs["position_ids"],
        names_filter=lambda n: n in names, stop_at_layer=last + 1, use_cache=False,
    )
    out = {}
    for L, c, h in keys:
        t = cache[tl_hook_name(Site(L, c, None, h))]
        if c == "head_out":
            t = head_contribution(model, L, h, t.flatten(-2))
        out[(L, c, h)] = t.detach()
    return out


def _envoy(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


_ORDER = {"resid_pre": 0, "head_out": 1, "attn_out": 2, "resid_mid": 3, "mlp_out": 4, "resid_post": 5}


def _read_nnsight(model: "Model", inputs: dict[str, Tensor], keys: list[Key]) -> dict[Key, Tensor]:
    lay = layout_of(model)
    lm = model.nnsight
    base = getattr(lm, model.hf.base_model_prefix)
    blocks = _envoy(base, lay.blocks)
    box: dict[Key, Any] = {}
    # nnsight needs module accesses in execution order
    order = sorted(keys, key=lambda k: (k[0], _ORDER[k[1]], -1 if k[2] is None else k[2]))
    with lm.trace(dict(inputs), use_cache=False) as tracer:
        for L, c, h in order:
            blk = blocks[L]
            if c == "resid_pre":
                box[(L, c, h)] = blk.input.save()
            elif c == "resid_post":
                box[(L, c, h)] = blk.output.save()
            elif c == "attn_out":
                box[(L, c, h)] = _envoy(blk, lay.attn_add).output.save()
            elif c == "mlp_out":
                box[(L, c, h)] = _envoy(blk, lay.mlp_add).output.save()
            elif c == "resid_mid":
                box[(L, c, h)] = _envoy(blk, lay.mlp_norm).input.save()
            elif c == "head_out":
                box[(L, c, h)] = _envoy(blk, lay.o_proj).input.save()
        tracer.stop()
    out = {}
    for L, c, h in keys:
        t = box[(L, c, h)]
        t = t[0] if isinstance(t, tuple) else t
        if c == "head_out":
            t = head_contribution(model, L, h, t)
        out[(L, c, h)] = t.detach()
    return out


_READERS = {"hf": _read_hf, "transformer_lens": _read_tl, "nnsight": _read_nnsight}


def read_batch(
    model: "Model", batch: Any, sites: Sequence[Site], backend: "Backend" = "hf"
) -> dict[Site, Float[Tensor, "batch seq d"]]:
    """Full ``[batch, seq, d_model]`` activations of ``sites`` (positions ignored) for a padded
    :class:`~mechinterp.forward.Batch`, stopping after the last layer needed."""
    if backend not in _READERS:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(_READERS)}")
    for s in sites:
        s.check(model)
    keys = list(dict.fromkeys(s.key for s in sites))
    inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    with torch.no_grad():
        got = _READERS[backend](model, inputs, keys)
    return {s: got[s.key] for s in sites}


@dataclass(frozen=True)
class Collected:
    """Activations per site, one row per (sequence, position), and for each row its sequence index and token
    index (``-1`` for a ``mean`` row)."""

    tensors: dict[Site, Float[Tensor, "n d"]]
    rows: dict[Site, torch.Tensor]  # int64 [n, 2]: (sequence index, token index)


def _row_tokens(site: Site, seq: TokenizedText, suite: "Suite | None") -> list[int]:
    if site.position is None:
        return list(range(len(seq)))
    return resolve_positions(site.position, seq, suite)


@dataclass(frozen=True)
class _RowPlan:
    """Where one position's rows are in a padded batch: gather ``act[batch_rows, token_cols]``; ``rows`` holds
    each row's (sequence, token) (token ``-1`` for a ``mean`` row), ``seq`` each gathered token's sequence, and
    for ``mean``, ``segment`` maps each gathered token to its output row."""

    batch_rows: Tensor
    token_cols: Tensor
    seq: Tensor
    rows: list[tuple[int, int]]
    segment: Tensor | None


def _row_plan(site: Site, batch: Any, ids: Sequence[int], chunk: Sequence[TokenizedText], suite: "Suite | None",
              missing: Literal["raise", "skip"]) -> _RowPlan:
    mean = isinstance(site.position, RegionPos) and site.position.which == "mean"
    b_idx: list[int] = []
    t_idx: list[int] = []
    seq: list[int] = []
    seg: list[int] = []
    rows: list[tuple[int, int]] = []
    for b, (j, s) in enumerate(zip(ids, chunk)):
        try:
            toks = _row_tokens(site, s, suite)
        except RegionError:
            if missing == "skip":
                continue
            raise
        off = batch.offsets[b]
        b_idx += [b] * len(toks)
        t_idx += [off + t for t in toks]
        if mean:
            seg += [len(rows)] * len(toks)
            seq.append(j)
            rows.append((j, -1))
        else:
            seq += [j] * len(toks)
            rows += [(j, t) for t in toks]
    as_long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return _RowPlan(as_long(b_idx), as_long(t_idx), as_long(seq), rows, as_long(seg) if mean else None)


def collect_rows(
    model: "Model",
    seqs: Sequence[TokenizedText],
    sites: Sequence[Site],
    backend: "Backend" = "hf",
    batch_size: int = 16,
    suite: "Suite | None" = None,
    missing: Literal["raise", "skip"] = "raise",
) -> Collected:
    """Like :func:`collect`, also returning which (sequence, token) each row came from. With
    ``missing="skip"`` a sequence where a site's region is missing or empty contributes no row to it.

    Each site's rows of a batch are taken with one gather (sites at the same position share the index), and
    each site's rows are put back in sequence order once, at the end."""
    if not sites:
        raise ConfigError("no sites to collect")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    # batches of similar length (less padding); results go back to sequence order
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    parts: dict[Site, list[Tensor]] = {s: [] for s in sites}
    keys: dict[Site, list[Tensor]] = {s: [] for s in sites}
    rows: dict[Site, list[tuple[int, int]]] = {s: [] for s in sites}
    for idx in batches(len(order), batch_size):
        ids = [order[k] for k in idx]
        chunk = [seqs[i] for i in ids]
        batch = pad_batch([s.input_ids for s in chunk], model.pad_token_id, "right", device=model.device)
        acts = read_batch(model, batch, [s.unpositioned for s in sites], backend)
        plans: dict[Any, _RowPlan] = {}
        for site in sites:
            if site.position not in plans:
                plans[site.position] = _row_plan(site, batch, ids, chunk, suite, missing)
            plan = plans[site.position]
            act = acts[site.unpositioned]
            x = act[plan.batch_rows.to(act.device), plan.token_cols.to(act.device)].float().cpu()
            if plan.segment is not None:
                n = len(plan.rows)
                sums = torch.zeros(n, x.shape[-1]).index_add_(0, plan.segment, x)
                x = sums / torch.bincount(plan.segment, minlength=n).clamp(min=1).unsqueeze(1).float()
            parts[site].append(x)
            keys[site].append(plan.seq)
            rows[site] += plan.rows
    d = model.d_model
    tensors: dict[Site, Tensor] = {}
    out_rows: dict[Site, Tensor] = {}
    for s in sites:
        r = torch.tensor(rows[s], dtype=torch.long).reshape(-1, 2)
        if not parts[s]:
            tensors[s], out_rows[s] = torch.empty(0, d), r
            continue
        perm = torch.argsort(torch.cat(keys[s]), stable=True)  # sequence order; tokens stay in order
        tensors[s], out_rows[s] = torch.cat(parts[s])[perm], r[perm]
    return Collected(tensors=tensors, rows=out_rows)


def collect(
    model: "Model",
    seqs: Sequence[TokenizedText],
    sites: Sequence[Site],
    backend: "Backend" = "hf",
    batch_size: int = 16,
    suite: "Suite | None" = None,
) -> dict[Site, Float[Tensor, "n d"]]:
    """Activations of ``sites`` for ``seqs``: for each site a ``[n, d_model]`` tensor with one row per
    sequence, in order (positions ``last``/``first``/``mean`` and TokenPos). Position ``all`` (and a site
    without a position) gives one row per token instead: each sequence's tokens in order, sequences
    concatenated in order (use :func:`collect_rows` to get each row's sequence and token).

    Sequences are right-padded in batches of ``batch_size`` (grouped by length) and the forward pass stops after the last layer
    any site needs; results do not depend on the batch size or padding (tested). Region names are resolved
    with ``suite``. A missing or empty region raises RegionError."""
    return collect_rows(model, seqs, sites, backend, batch_size, suite).tensors


def collect_tokens(
    model: "Model",
    seqs: Sequence[TokenizedText],
    layer: int,
    component: Component,
    backend: "Backend" = "hf",
    batch_size: int = 16,
    skip_bos: bool = True,
    head: int | None = None,
) -> Float[Tensor, "n_tokens d"]:
    """One row per real (non-pad) token of every sequence, in order, BOS left out unless ``skip_bos=False``
    (for SAE training: Gemma's BOS has a huge norm)."""
    site = Site(layer, component, None, head)
    got = collect_rows(model, seqs, [site], backend, batch_size)
    x, rows = got.tensors[site], got.rows[site]
    if skip_bos:
        x = x[rows[:, 1] != 0]
    return x

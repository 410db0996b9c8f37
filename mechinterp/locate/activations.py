"""Reading the activations of :class:`~mechinterp.locate.sites.Site` values on any backend.

The same site gives the same tensor read through plain HF hooks (:mod:`mechinterp.locate.hooks`),
TransformerLens bridge hook points (``blocks.L.hook_resid_pre`` ...) or nnsight module proxies;
``tests/test_locate_activations.py`` compares all three. :func:`collect` gathers one row per sequence (or
token) for batches of tokenized sentences; :func:`read_batch` returns full ``[batch, seq, d_model]`` tensors.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.errors import ConfigError, RegionError
from mechinterp.forward import batches, pad_batch
from mechinterp.locate.hooks import head_contribution, layout_of, read_sites, run_until, write_site
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


def _read_hf(model: "Model", inputs: dict[str, Tensor], keys: list[Key],
             each: Callable[[Key, Tensor], None] | None = None) -> dict[Key, Tensor]:
    sites = [Site(L, c, None, h) for L, c, h in keys]
    last, before = _stop(keys)
    if each is None:
        with read_sites(model, sites) as caps:
            run_until(model, last, before=before, **inputs)
        return {s.key: caps[s].value for s in sites}
    # handed over inside the hook (a write function that returns None changes nothing), so the full
    # activation can be freed as soon as the caller has taken what it needs
    with ExitStack() as stack:
        for s in sites:
            stack.enter_context(write_site(model, s, lambda x, k=s.key: each(k, x.detach())))
        run_until(model, last, before=before, **inputs)
    return {}


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
    model: "Model", batch: Any, sites: Sequence[Site], backend: "Backend" = "hf",
    each: Callable[[Site, Tensor], None] | None = None,
) -> dict[Site, Float[Tensor, "batch seq d"]]:
    """Full ``[batch, seq, d_model]`` activations of ``sites`` (positions ignored) for a padded
    :class:`~mechinterp.forward.Batch`, stopping after the last layer needed.

    With ``each``, every activation is handed to ``each(site, activation)`` instead and nothing is returned
    (on the HF backend from inside the forward pass, so the caller can keep only the rows it needs)."""
    if backend not in _READERS:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(_READERS)}")
    for s in sites:
        s.check(model)
    keys = list(dict.fromkeys(s.key for s in sites))
    by_key: dict[Key, list[Site]] = {}
    for s in sites:
        by_key.setdefault(s.key, []).append(s)
    inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    with torch.no_grad():
        if each is None:
            got = _READERS[backend](model, inputs, keys)
            return {s: got[s.key] for s in sites}

        def hand_over(k: Key, x: Tensor) -> None:
            for s in by_key[k]:
                each(s, x)

        if backend == "hf":
            _read_hf(model, inputs, keys, hand_over)
        else:
            for k, x in _READERS[backend](model, inputs, keys).items():
                hand_over(k, x)
    return {}


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
    """Where one position's rows are, in a padded batch and in the output: gather ``act[batch_rows,
    token_cols]`` and put the result at output rows ``dest`` (for ``mean``, ``segment`` maps each gathered
    token to its place in ``dest`` first)."""

    batch_rows: Tensor
    token_cols: Tensor
    dest: Tensor
    segment: Tensor | None


def _positions(site: Site, seqs: Sequence[TokenizedText], suite: "Suite | None",
               missing: Literal["raise", "skip"]) -> list[list[int] | None]:
    """Each sequence's token indices for ``site``'s position (None: region missing or empty, skipped)."""
    out: list[list[int] | None] = []
    for s in seqs:
        try:
            out.append(_row_tokens(site, s, suite))
        except RegionError:
            if missing == "skip":
                out.append(None)
                continue
            raise
    return out


def collect_rows(
    model: "Model",
    seqs: Sequence[TokenizedText],
    sites: Sequence[Site],
    backend: "Backend" = "hf",
    batch_size: int = 16,
    suite: "Suite | None" = None,
    missing: Literal["raise", "skip"] = "raise",
    share: bool = False,
) -> Collected:
    """Like :func:`collect`, also returning which (sequence, token) each row came from. With
    ``missing="skip"`` a sequence where a site's region is missing or empty contributes no row to it. With
    ``share=True``, sites at the same position that read the very same memory in every batch (for example
    ``resid_post`` of layer L and ``resid_pre`` of layer L+1) get one shared output tensor (``is`` the same
    object) instead of two equal copies.

    Every row's place in the output (sequence order, tokens in order) is known before the forward pass, so each
    site's rows of a batch are taken with one gather (sites at the same position share the index) and written
    straight to their place. On the HF backend the gather happens inside the hook, so a full ``[batch, seq,
    d_model]`` activation is never kept."""
    if not sites:
        raise ConfigError("no sites to collect")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    d = model.d_model
    by_pos = {s.position: s for s in sites}
    toks = {p: _positions(s, seqs, suite, missing) for p, s in by_pos.items()}
    mean = {p: isinstance(p, RegionPos) and p.which == "mean" for p in by_pos}
    first: dict[Any, list[int]] = {}  # each sequence's first output row, per position
    rows: dict[Any, Tensor] = {}
    for p, per_seq in toks.items():
        starts, pairs, n = [], [], 0
        for j, t in enumerate(per_seq):
            starts.append(n)
            if t is None:
                continue
            got = [(j, -1)] if mean[p] else [(j, k) for k in t]
            pairs += got
            n += len(got)
        first[p] = starts
        rows[p] = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
    tensors = {s: torch.empty(len(rows[s.position]), d) for s in sites}
    owner = {s: s for s in sites}  # the site that writes each output tensor (another one's when shared)

    def plan(p: Any, batch: Any, ids: Sequence[int]) -> _RowPlan:
        b_idx: list[int] = []
        t_idx: list[int] = []
        dest: list[int] = []
        seg: list[int] = []
        for b, j in enumerate(ids):
            t = toks[p][j]
            if t is None:
                continue
            off, at = batch.offsets[b], first[p][j]
            b_idx += [b] * len(t)
            t_idx += [off + k for k in t]
            if mean[p]:
                seg += [len(dest)] * len(t)
                dest.append(at)
            else:
                dest += range(at, at + len(t))
        as_long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
        return _RowPlan(as_long(b_idx), as_long(t_idx), as_long(dest), as_long(seg) if mean[p] else None)

    def take(pl: _RowPlan, act: Tensor) -> Tensor:
        x = act[pl.batch_rows.to(act.device), pl.token_cols.to(act.device)].float().cpu()
        if pl.segment is not None:
            n = len(pl.dest)
            sums = torch.zeros(n, x.shape[-1]).index_add_(0, pl.segment, x)
            x = sums / torch.bincount(pl.segment, minlength=n).clamp(min=1).unsqueeze(1).float()
        return x

    # batches of similar length (less padding)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    unpositioned = list(dict.fromkeys(s.unpositioned for s in sites))
    wanted = {u: [s for s in sites if s.unpositioned == u] for u in unpositioned}
    for n_batch, idx in enumerate(batches(len(order), batch_size)):
        ids = [order[k] for k in idx]
        batch = pad_batch([seqs[i].input_ids for i in ids], model.pad_token_id, "right", device=model.device)
        plans = {p: plan(p, batch, ids) for p in by_pos}
        seen: list[tuple[Tensor, int, Site]] = []  # this batch's activations so far (held: no address reuse)

        def gather(u: Site, act: Tensor, plans: dict[Any, _RowPlan] = plans,
                   seen: list[tuple[Tensor, int, Site]] = seen, first: bool = n_batch == 0) -> None:
            src = next((s0 for a0, v0, s0 in seen if _same_memory(a0, v0, act)), None) if share else None
            if share and (v := _version(act)) is not None:
                seen.append((act, v, u))
            for s in wanted[u]:
                twin = None if src is None else next((t for t in wanted[src] if t.position == s.position), None)
                if twin is not None and (first or tensors[s] is tensors[twin]):
                    tensors[s], owner[s] = tensors[twin], owner[twin]  # same rows, same memory: in place
                    continue
                if owner[s] != s:  # shared so far, different memory in this batch: its own copy from now on
                    tensors[s], owner[s] = tensors[s].clone(), s
                pl = plans[s.position]
                tensors[s].index_copy_(0, pl.dest, take(pl, act))

        read_batch(model, batch, unpositioned, backend, gather)
    return Collected(tensors=tensors, rows={s: rows[s.position] for s in sites})


def _version(t: Tensor) -> int | None:
    """The tensor's in-place modification counter (None for inference-mode tensors, which have none)."""
    try:
        return t._version
    except RuntimeError:
        return None


def _same_memory(a: Tensor, version: int, b: Tensor) -> bool:
    """``b`` views exactly the memory of ``a`` (held alive by the caller), unmodified since ``a`` was seen."""
    return (a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.device == b.device
            and a.storage_offset() == b.storage_offset() and a.shape == b.shape and a.stride() == b.stride()
            and a.dtype == b.dtype and _version(b) == version)


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

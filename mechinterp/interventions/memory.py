"""Memory edits inside attention: a recency bias on every head's scores, and noise on the keys of distant tokens.

Two graded ways to degrade what a model remembers of the words before (the third, context truncation, is
:mod:`mechinterp.interventions.truncation`). Both act on the attention scores of every head of every layer,
for query position ``i`` and key position ``j <= i`` (positions are the model's position ids, so padding does
not shift them), with ``s_ij = scaling * q_i . k_j`` the score the model computes:

* :class:`RecencyBias` (``lam`` >= 0)::

      s_ij  ->  s_ij - lam * (i - j)

  an ALiBi-like linear penalty on distance (Press et al. 2022); ``lam = 0`` is the original model.

* :class:`KeyNoise` (``sigma`` >= 0, ``distance`` >= 0, ``seed``): the key of every token more than
  ``distance`` positions back is read with noise::

      k_j  ->  k_j + sigma * rms(k_j) * eps_j        for i - j > distance
      s_ij ->  s_ij + scaling * q_i . (sigma * rms(k_j) * eps_j)

  with ``rms(k_j)`` the root mean square of the key vector (per head, so the noise is relative to the key's
  own size), and ``eps_j ~ N(0, I)`` fixed per (seed, layer, key-value head, position): the same token at the
  same position always gets the same noise, in whatever batch. The value vectors are untouched, so the noise
  blurs *where* a head looks, not what it reads there. ``sigma = 0`` is the original model.

Both are added to the additive attention mask (after Gemma's optional logit softcapping, which Gemma-3 does not
use; for a softcapped model the added terms are not capped), so sliding-window layers keep their window and
grouped-query attention its sharing of keys (the noise is drawn per key-value head and shared by the query
heads of its group).

Mechanism: the context manager of ``.apply(model)`` registers an attention function with transformers'
``AttentionInterface`` (and the eager mask with ``AttentionMaskInterface``) under :data:`ATTENTION_NAME`, points
the model's ``config._attn_implementation`` at it, and marks every attention module with the active edits; the
function adds the terms above to the mask and calls the model family's own eager attention
(``eager_attention_forward`` of the module's modeling file), so with no edit it *is* the original computation.
Everything is restored on exit, also when the forward pass raised. Only the plain Hugging Face backend is
supported (models loaded by :func:`mechinterp.load_model` use eager attention); a forward pass during which
no edited attention ran (a model whose modules the TransformerLens bridge has taken over computes attention
itself) raises ConfigError rather than returning unedited numbers.
"""

from __future__ import annotations

import math
import sys
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Sequence

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from mechinterp.errors import ConfigError
from mechinterp.locate.hooks import forward_hook, forward_pre_hook

if TYPE_CHECKING:
    from mechinterp.models import Model

ATTENTION_NAME = "mechinterp_memory"
NOISE_CHUNK = 256  # positions per seeded block of key noise
_ACTIVE: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[MemoryEdit, ...]]" = weakref.WeakKeyDictionary()
_CALLS = [0]  # edited attention calls so far (the guard of memory_edits checks each forward pass made some)


def distances(query: Tensor, key: Tensor, position_ids: Tensor | None) -> tuple[Tensor, Tensor]:
    """(distance ``i - j`` as ``[batch, 1, q, k]`` float, key positions ``[batch, k]`` long) of one attention call.

    Positions are the position ids when they cover every key (no cache), else the sequence indices (the
    queries being the last ``q`` of the ``k`` keys)."""
    q_len, k_len = query.shape[-2], key.shape[-2]
    if position_ids is not None and position_ids.shape[-1] == k_len == q_len:
        pk = position_ids.to(query.device).long().reshape(-1, k_len)
        pq = pk
    else:
        pk = torch.arange(k_len, device=query.device)[None]
        pq = pk[:, k_len - q_len:]
    d = pq[:, :, None] - pk[:, None, :]
    return d[:, None].to(torch.float32), pk


class MemoryEdit:
    """An additive edit of attention scores (subclasses: :class:`RecencyBias`, :class:`KeyNoise`)."""

    def scores(self, module: Any, query: Tensor, key: Tensor, dist: Tensor, key_pos: Tensor,
               scaling: float) -> Tensor | None:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    @property
    def is_identity(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def apply(self, model: "Model") -> "ContextManager[None]":
        """Apply this edit to every forward pass of ``model`` (plain HF backend) inside a ``with`` block; the
        model is restored when the block ends, also on error.

        Args:
            model: a model loaded by :func:`mechinterp.load_model` (Gemma, Llama/SmolLM2 ...).

        Returns:
            A context manager (:func:`memory_edits` with this one edit).

        Example:
            >>> with RecencyBias(0.5).apply(model):
            ...     words = mi.suite_surprisal(model, suite)
        """
        return memory_edits(model, [self])


@dataclass(frozen=True)
class RecencyBias(MemoryEdit):
    """Subtract ``lam * (i - j)`` from the score of query ``i`` over key ``j`` in every head."""

    lam: float

    def __post_init__(self) -> None:
        if not (isinstance(self.lam, (int, float)) and math.isfinite(self.lam) and self.lam >= 0):
            raise ConfigError(f"the recency bias needs a finite lambda >= 0, got {self.lam!r}")

    @property
    def is_identity(self) -> bool:
        return self.lam == 0

    def scores(self, module: Any, query: Tensor, key: Tensor, dist: Tensor, key_pos: Tensor,
               scaling: float) -> Tensor | None:
        return -self.lam * dist.clamp(min=0)

    def describe(self) -> dict[str, Any]:
        return {"kind": "recency", "lam": self.lam}

    @property
    def label(self) -> str:
        return f"recency lam={self.lam:g}"


@dataclass(frozen=True)
class KeyNoise(MemoryEdit):
    """Read the keys of tokens more than ``distance`` positions back with seeded relative noise ``sigma``."""

    sigma: float
    distance: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma >= 0):
            raise ConfigError(f"key noise needs a finite sigma >= 0, got {self.sigma!r}")
        if not isinstance(self.distance, int) or self.distance < 0:
            raise ConfigError(f"key noise needs a whole distance >= 0, got {self.distance!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"key noise needs a whole seed >= 0, got {self.seed!r}")

    @property
    def is_identity(self) -> bool:
        return self.sigma == 0

    def noise(self, layer: int, n_heads: int, dim: int, positions: Tensor) -> Tensor:
        """``eps`` of the module docstring, ``[n_heads, *positions.shape, dim]`` (float32, CPU-generated in
        blocks of :data:`NOISE_CHUNK` positions, each seeded by (seed, layer, block))."""
        flat = positions.reshape(-1).long().clamp(min=0).cpu()
        blocks = torch.unique(flat // NOISE_CHUNK)
        table = torch.cat([torch.randn(n_heads, NOISE_CHUNK, dim, generator=torch.Generator().manual_seed(
            ((self.seed * 1_000_003 + layer) * 1_000_033 + int(b)) % (2 ** 63))) for b in blocks], dim=1)
        rank = torch.searchsorted(blocks, flat // NOISE_CHUNK)
        out = table[:, rank * NOISE_CHUNK + flat % NOISE_CHUNK]
        return out.reshape(n_heads, *positions.shape, dim)

    def scores(self, module: Any, query: Tensor, key: Tensor, dist: Tensor, key_pos: Tensor,
               scaling: float) -> Tensor | None:
        b, h_kv, k_len, dim = key.shape
        layer = int(getattr(module, "layer_idx", 0) or 0)
        eps = self.noise(layer, h_kv, dim, key_pos).to(key.device)  # [h_kv, b or 1, k, d]
        eps = eps.permute(1, 0, 2, 3).expand(b, h_kv, k_len, dim)
        rms = key.float().pow(2).mean(-1, keepdim=True).sqrt()
        n = self.sigma * rms * eps  # [b, h_kv, k, d]
        n_rep = query.shape[1] // h_kv
        if n_rep > 1:
            n = n.repeat_interleave(n_rep, dim=1)
        extra = scaling * torch.matmul(query.float(), n.transpose(2, 3))  # [b, h, q, k]
        return torch.where(dist > self.distance, extra, torch.zeros((), device=extra.device))

    def describe(self) -> dict[str, Any]:
        return {"kind": "keynoise", "sigma": self.sigma, "distance": self.distance, "seed": self.seed}

    @property
    def label(self) -> str:
        return f"keynoise sigma={self.sigma:g} d>{self.distance}"


def eager_of(module: Any) -> Callable[..., Any]:
    """The model family's own eager attention function (``eager_attention_forward`` of the module's file)."""
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if fn is None:
        raise ConfigError(f"{type(module).__name__} has no eager attention function to edit: memory edits support "
                          "models whose attention goes through transformers' attention interface (Gemma, Llama ...)")
    return fn


def memory_attention(module: Any, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                     **kwargs: Any) -> tuple[Tensor, Any]:
    """The attention function registered as :data:`ATTENTION_NAME`: the module's eager attention with the
    active edits' terms added to the mask (module docstring)."""
    edits = _ACTIVE.get(module, ())  # identity edits run too: they add exact zeros
    if edits:
        _CALLS[0] += 1
        scaling = kwargs.get("scaling")
        scaling = float(scaling) if scaling is not None else float(module.head_dim) ** -0.5
        dist, key_pos = distances(query, key, kwargs.get("position_ids"))
        extra = None
        for e in edits:
            term = e.scores(module, query, key, dist, key_pos, scaling)
            if term is not None:
                extra = term if extra is None else extra + term
        if extra is not None:
            extra = extra.to(query.dtype)
            if attention_mask is not None and attention_mask.dtype == torch.bool:
                attention_mask = torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device).masked_fill(
                    ~attention_mask, torch.finfo(query.dtype).min)
            attention_mask = extra if attention_mask is None else attention_mask[..., : key.shape[-2]] + extra
    return eager_of(module)(module, query, key, value, attention_mask, **kwargs)


def attention_modules(model: "Model") -> list[torch.nn.Module]:
    """The self-attention modules of ``model`` (those with a ``layer_idx`` and an eager attention function)."""
    mods = [m for m in model.hf.modules() if hasattr(m, "layer_idx") and type(m).__name__.endswith("Attention")
            and getattr(sys.modules.get(type(m).__module__), "eager_attention_forward", None) is not None]
    if not mods:
        raise ConfigError(f"{model.name}: no attention module that memory edits can reach (they need a transformers "
                          "model whose attention goes through the attention interface: Gemma, Llama ...)")
    return mods


@contextmanager
def memory_edits(model: "Model", edits: Sequence[MemoryEdit]) -> Iterator[None]:
    """Apply ``edits`` (their terms add up) to every forward pass of ``model`` inside the block; the model's
    attention implementation and its modules are restored on exit, also on error.

    Args:
        model: a model loaded by :func:`mechinterp.load_model`, run with the plain HF backend.
        edits: :class:`RecencyBias` and :class:`KeyNoise` instances.

    Returns:
        A context manager.

    Example:
        >>> with memory_edits(model, [RecencyBias(0.2), KeyNoise(1.0, distance=4)]):
        ...     words = mi.sentence_surprisal(model, ["The old man the boat."])
    """
    for e in edits:
        if not isinstance(e, MemoryEdit):
            raise ConfigError(f"not a memory edit: {e!r}")
    mods = attention_modules(model)
    config = model.hf.config
    before = config._attn_implementation
    if before not in ("eager", ATTENTION_NAME):
        raise ConfigError(f"memory edits need eager attention; {model.name} runs {before!r} "
                          "(load it with mechinterp.load_model)")
    AttentionInterface.register(ATTENTION_NAME, memory_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    saved = {m: _ACTIVE.get(m) for m in mods}
    start = [0]

    def before_forward(_m: Any, _args: tuple, _kwargs: dict) -> None:
        start[0] = _CALLS[0]

    def after_forward(_m: Any, _args: tuple, _out: Any) -> None:
        if edits and _CALLS[0] == start[0]:
            raise ConfigError(
                f"the memory edits did not reach the attention of {model.name}: its attention modules are wrapped "
                "(the transformer_lens backend takes over the modules of a model it has run); load the model afresh "
                "(mechinterp.load_model(..., cached=False)) and run it on the hf backend")

    try:
        with forward_pre_hook(model.hf, before_forward), forward_hook(model.hf, after_forward):
            for m in mods:
                _ACTIVE[m] = (*(_ACTIVE.get(m) or ()), *edits)
            config._attn_implementation = ATTENTION_NAME
            yield
    finally:
        config._attn_implementation = before
        for m, old in saved.items():
            if old is None:
                _ACTIVE.pop(m, None)
            else:
                _ACTIVE[m] = old

"""Attention probabilities of chosen heads, read with a forward hook on the attention module.

Models load with ``attn_implementation="eager"`` (:mod:`mechinterp.models.loaded`), whose attention modules
return ``(output, weights)`` with ``weights[b, h, q, k]`` = softmax over keys of the (masked, scaled, for
Gemma soft-capped) query-key scores, i.e. exactly what each head mixes values with. :func:`read_attention`
hooks the attention module of each layer it needs for the duration of a ``with`` block and keeps only the
rows of the requested heads. Other attention implementations (``sdpa``, flash) return no weights; the hook
then raises :class:`~mechinterp.errors.ConfigError` naming the fix. Only the HF backend runs these modules
(the TransformerLens bridge re-implements attention), so this reads ``model.hf`` forward passes.
"""

from __future__ import annotations

import re
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from torch import Tensor, nn

from mechinterp.errors import ConfigError
from mechinterp.locate.hooks import block_part, forward_hook, layout_of

if TYPE_CHECKING:
    from mechinterp.models import Model

_LABEL = re.compile(r"^L(\d+)H(\d+)$", re.I)


@dataclass(frozen=True, order=True)
class Head:
    """One attention head: ``layer`` and ``head`` index (``L11H0`` is ``Head(11, 0)``).

    Args:
        layer: The layer (block) index.
        head: The head index within the layer (query heads).

    Example:
        >>> import mechinterp as mi
        >>> mi.Head.parse("L11H0") == mi.Head(11, 0), str(mi.Head(8, 1))
        (True, 'L8H1')
    """

    layer: int
    head: int

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}"

    @classmethod
    def parse(cls, value: "Head | str | tuple[int, int]") -> "Head":
        """A head from a ``Head``, an ``"L11H0"`` label or a ``(layer, head)`` pair."""
        if isinstance(value, Head):
            return value
        if isinstance(value, str):
            m = _LABEL.match(value.strip())
            if not m:
                raise ConfigError(f"head {value!r} is not written as L<layer>H<head> (e.g. L11H0)")
            return cls(int(m.group(1)), int(m.group(2)))
        try:
            layer, head = value
            return cls(int(layer), int(head))
        except (TypeError, ValueError):
            raise ConfigError(f"head {value!r} is not a (layer, head) pair") from None

    def check(self, model: "Model") -> None:
        if not 0 <= self.layer < model.n_layers:
            raise ConfigError(f"head {self}: layer {self.layer} is out of range for {model.name} "
                              f"(layers 0-{model.n_layers - 1})")
        if not 0 <= self.head < model.n_heads:
            raise ConfigError(f"head {self}: head {self.head} is out of range for {model.name} "
                              f"(heads 0-{model.n_heads - 1})")


def attention_module(model: "Model", layer: int) -> nn.Module:
    """The attention module of block ``layer`` (the parent of its output projection)."""
    path = layout_of(model).o_proj.rsplit(".", 1)[0]
    return block_part(model, layer, path)


@contextmanager
def read_attention(model: "Model", heads: Iterable["Head | str | tuple[int, int]"]) -> Iterator[dict[Head, list[Tensor]]]:
    """Record the attention probabilities ``[batch, query, key]`` of ``heads`` at every forward pass of
    ``model.hf`` run inside the block (one list entry per pass); every hook is removed on exit, also on error.

    Args:
        model: A loaded model (eager attention).
        heads: ``Head`` values, ``"L11H0"`` labels or ``(layer, head)`` pairs.

    Yields:
        Head -> list of float32 ``[batch, query, key]`` tensors (rows of padding included; mask them).

    Raises:
        ConfigError: a head is out of range, or the attention implementation returns no weights.

    Example:
        >>> with read_attention(model, ["L1H0"]) as att:
        ...     model.hf(input_ids=ids)
        >>> att[Head(1, 0)][0].shape  # [batch, query, key]
    """
    wanted = list(dict.fromkeys(Head.parse(h) for h in heads))
    for h in wanted:
        h.check(model)
    out: dict[Head, list[Tensor]] = {h: [] for h in wanted}
    by_layer: dict[int, list[Head]] = {}
    for h in wanted:
        by_layer.setdefault(h.layer, []).append(h)
    with ExitStack() as stack:
        for layer, hs in by_layer.items():

            def grab(_m: nn.Module, _i: tuple, result: Any, hs: list[Head] = hs) -> None:
                weights = result[1] if isinstance(result, tuple) and len(result) > 1 else None
                if weights is None:
                    impl = getattr(model.hf.config, "_attn_implementation", "?")
                    raise ConfigError(f"attention implementation {impl!r} returns no attention weights: load the "
                                      "model with attn_implementation='eager' (load_model does)")
                for h in hs:
                    out[h].append(weights[:, h.head].detach().float())

            stack.enter_context(forward_hook(attention_module(model, layer), grab))
        yield out

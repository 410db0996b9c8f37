"""Torch hooks that read or write an activation :class:`~mechinterp.locate.sites.Site`, as context managers.

Every hook here is a plain torch forward (pre-)hook on one of the *original* Hugging Face modules of
``model.hf``. TransformerLens's ``TransformerBridge`` and nnsight both run those same modules, so a hook
registered here fires whichever backend runs the forward pass (``tests/test_locate_hooks.py`` checks this). Each
context manager removes every hook it added when the block exits, also when the forward pass raised.

Where each component lives (``Layout``, found from the module tree; see :mod:`mechinterp.locate.sites` for the
definitions):

=================  ==========================  ==========================  ===========================
component          Gemma-2/3                   Llama (SmolLM2)             GPT-2
=================  ==========================  ==========================  ===========================
resid_pre(L)       input of block L            input of block L            input of block L
resid_mid(L)       input of                    input of                    input of ``ln_2``
                   ``pre_feedforward_layernorm`` ``post_attention_layernorm``
resid_post(L)      output of block L           output of block L           output of block L
attn_out(L)        output of                   output of ``o_proj``        output of ``attn.c_proj``
                   ``post_attention_layernorm``
mlp_out(L)         output of                   output of ``mlp``           output of ``mlp``
                   ``post_feedforward_layernorm``
head_out(L, h)     input of ``o_proj``, head h's slice times its slice of W_O (no bias)
=================  ==========================  ==========================  ===========================

Adding a layout: an architecture whose blocks match none of these gets a ConfigError naming it at the first
site use. To support it, add a :class:`Layout` to ``_LAYOUTS`` below, giving the attribute paths of the table's
modules in its blocks and the ``marks`` (submodule names) that recognise its blocks, ahead of any layout whose
marks its blocks also have; then add the family to ``tiny_model_dir`` in ``tests/conftest.py`` so that
``tests/test_architectures.py`` runs the workbench on it.

Note: the attention module itself (``self_attn``) is *not* hooked: the TransformerLens bridge
re-implements attention around the original q/k/v/o projections, so a hook on ``self_attn`` would not fire
under that backend, while hooks on ``o_proj`` and on the norms do.

Writing: ``write_site(model, site, fn)`` calls ``fn(value)`` with the site's full activation
``[batch, seq, d_model]`` and uses what it returns instead. Two components are not the output of one module
and are written through an equivalent edit:

* ``resid_mid(L)`` = ``resid_pre(L) + attn_out(L)``, and the block keeps its own copy of the sum for the
  residual connection, so it is written by replacing ``attn_out(L)`` with ``fn(resid_mid) - resid_pre(L)``
  (the block then adds ``resid_pre(L)`` back; exact up to one float rounding of that subtraction).
* ``head_out(L, h)`` is written by adding ``fn(head_out) - head_out`` to the ``o_proj`` output (before the
  Gemma post-attention norm, which then sees the edited sum of heads).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from mechinterp.errors import ConfigError
from mechinterp.locate.sites import Site

if TYPE_CHECKING:
    from mechinterp.models import Model

WriteFn = Callable[[Tensor], "Tensor | None"]


class StopForward(Exception):
    """Raised by :func:`stop_after` to end a forward pass once the activations needed were read."""


# ---- the module layout ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Where the sites of one architecture live, as attribute paths (relative to a block where noted).

    Args:
        family: The layout's name, its key in ``_LAYOUTS``.
        models: The model families it covers, for messages.
        marks: Submodules every block of the family has (and no earlier layout's blocks all have): how the
            layout is recognised.
        blocks: From the base model, the block list, e.g. ``"layers"`` / ``"h"``.
        embed: From the base model, the token embedding (its input is the token ids).
        final_norm: From the base model, the norm after the last block.
        attn_add: In a block, the module whose output is what attention adds to the residual stream.
        mlp_add: In a block, the module whose output is what the MLP adds to the residual stream.
        mlp_norm: In a block, the module whose input is ``resid_mid``.
        o_proj: In a block, the attention output projection (its input is the concatenated heads).

    Example:
        >>> from mechinterp.locate.hooks import layout_of
        >>> import mechinterp as mi
        >>> layout_of(mi.load_model("gemma3-270m")).attn_add
        'post_attention_layernorm'
    """

    family: str
    models: str
    marks: tuple[str, ...]
    blocks: str
    embed: str
    final_norm: str
    attn_add: str
    mlp_add: str
    mlp_norm: str
    o_proj: str


#: The known layouts, tried in this order (a Gemma block also has every submodule of a Llama block).
_LAYOUTS: dict[str, Layout] = {
    "gemma": Layout("gemma", "Gemma-2/3", marks=("pre_feedforward_layernorm", "post_feedforward_layernorm"),
                    blocks="layers", embed="embed_tokens", final_norm="norm", attn_add="post_attention_layernorm",
                    mlp_add="post_feedforward_layernorm", mlp_norm="pre_feedforward_layernorm",
                    o_proj="self_attn.o_proj"),
    "llama": Layout("llama", "Llama, SmolLM2, Mistral, Qwen2", marks=("self_attn", "mlp", "post_attention_layernorm"),
                    blocks="layers", embed="embed_tokens", final_norm="norm", attn_add="self_attn.o_proj",
                    mlp_add="mlp", mlp_norm="post_attention_layernorm", o_proj="self_attn.o_proj"),
    "gpt2": Layout("gpt2", "GPT-2", marks=("attn", "ln_2"), blocks="h", embed="wte", final_norm="ln_f",
                   attn_add="attn.c_proj", mlp_add="mlp", mlp_norm="ln_2", o_proj="attn.c_proj"),
}


def unwrap(module: nn.Module) -> nn.Module:
    """The original HF module inside a TransformerLens bridge component (the module itself otherwise).

    Building ``model.tl`` replaces modules of ``model.hf`` with bridge wrappers that keep the original as
    ``_original_component``; hooks go on the original, which every backend runs."""
    while True:
        inner = module.__dict__.get("_modules", {}).get("_original_component")
        if inner is None:
            return module
        module = inner


def _child(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = unwrap(module)
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return unwrap(module)


def base_model(model: "Model") -> nn.Module:
    """The decoder without its LM head (``LlamaModel``, ``Gemma3TextModel``, ``GPT2Model``)."""
    return unwrap(model.hf.base_model)


def _has(module: nn.Module, path: str) -> bool:
    try:
        _child(module, path)
    except (AttributeError, IndexError, TypeError):
        return False
    return True


def layout_of(model: "Model") -> Layout:
    """The :class:`Layout` of ``model``: the first of ``_LAYOUTS`` whose block list the base model has and whose
    marks its first block has.

    Args:
        model: A loaded model.

    Returns:
        Its layout.

    Raises:
        ConfigError: For an architecture no layout matches; the message says how to add one.

    Example:
        >>> from mechinterp.locate.hooks import layout_of
        >>> import mechinterp as mi
        >>> layout_of(mi.load_model("smollm2-135m")).family
        'llama'
    """
    base = base_model(model)
    lists = []
    for lay in _LAYOUTS.values():
        try:
            first = _child(base, f"{lay.blocks}.0")
        except (AttributeError, IndexError, TypeError):
            continue
        lists.append(f"{lay.blocks!r} holds {type(first).__name__} blocks")
        if all(_has(first, m) for m in lay.marks):
            return lay
    found = "; ".join(dict.fromkeys(lists)) or f"it has none of the block lists {_block_lists()}"
    known = "; ".join(f"{lay.family} ({lay.models}: blocks in {lay.blocks!r} with {', '.join(lay.marks)})"
                      for lay in _LAYOUTS.values())
    raise ConfigError(
        f"unsupported architecture {type(model.hf).__name__}: its base model {type(base).__name__} matches no "
        f"known module layout ({found}). Known layouts: {known}. To add a layout, add a Layout entry to the "
        f"_LAYOUTS dict in {__name__.replace('.', '/')}.py naming where the block list, the embedding, and each "
        "block's attention output, MLP output, MLP-input norm and attention output projection live (see the "
        "module docstring there)"
    )


def _block_lists() -> str:
    return " or ".join(dict.fromkeys(repr(lay.blocks) for lay in _LAYOUTS.values()))


def block(model: "Model", layer: int) -> nn.Module:
    lay = layout_of(model)
    blocks = _child(base_model(model), lay.blocks)
    if not 0 <= layer < len(blocks):
        raise ConfigError(f"layer {layer} is out of range: {model.name} has layers 0-{len(blocks) - 1}")
    return unwrap(blocks[layer])


def block_part(model: "Model", layer: int, path: str) -> nn.Module:
    return _child(block(model, layer), path)


def embedding(model: "Model") -> nn.Module:
    return _child(base_model(model), layout_of(model).embed)


def head_weight(model: "Model", layer: int, head: int) -> Float[Tensor, "d_head d_model"]:
    """Head ``head``'s slice of the output projection W_O of ``layer``, as a ``[d_head, d_model]`` matrix:
    ``head_out = z[..., head, :] @ head_weight``."""
    if not 0 <= head < model.n_heads:
        raise ConfigError(f"head {head} is out of range: {model.name} has heads 0-{model.n_heads - 1}")
    o = block_part(model, layer, layout_of(model).o_proj)
    dh = model.d_head
    sl = slice(head * dh, (head + 1) * dh)
    if isinstance(o, nn.Linear):  # weight [d_model, n_heads*d_head]
        return o.weight[:, sl].T
    return o.weight[sl, :]  # GPT-2 Conv1D: weight [n_heads*d_head, d_model]


def head_contribution(model: "Model", layer: int, head: int, z: Float[Tensor, "... hd"]) -> Float[Tensor, "... d"]:
    """``head_out`` from the concatenated head outputs ``z`` (the input of ``o_proj``)."""
    dh = model.d_head
    return z[..., head * dh : (head + 1) * dh] @ head_weight(model, layer, head)


# ---- low-level hooks --------------------------------------------------------------------------------
def _first(x: Any) -> Tensor:
    return x[0] if isinstance(x, tuple) else x


def _replace_first(x: Any, new: Tensor) -> Any:
    return (new, *x[1:]) if isinstance(x, tuple) else new


def pre_input(args: tuple, kwargs: dict) -> Tensor:
    return args[0] if args else kwargs["hidden_states"]


def pre_replace(args: tuple, kwargs: dict, new: Tensor) -> tuple[tuple, dict]:
    if args:
        return (new, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": new}


@contextmanager
def forward_hook(module: nn.Module, fn: Callable[[nn.Module, tuple, Any], Any]) -> Iterator[None]:
    """``module.register_forward_hook(fn)`` for the duration of the block (removed even on error)."""
    handle = unwrap(module).register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def forward_pre_hook(module: nn.Module, fn: Callable[[nn.Module, tuple, dict], Any]) -> Iterator[None]:
    """``module.register_forward_pre_hook(fn, with_kwargs=True)`` for the duration of the block."""
    handle = unwrap(module).register_forward_pre_hook(fn, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def stop_after(model: "Model", layer: int, before: bool = False) -> Iterator[None]:
    """Raise :class:`StopForward` when block ``layer`` finishes (or, with ``before``, when it starts):
    the caller catches it (see :func:`run_until`) to skip the rest of the model, the LM head included."""

    def stop(*_: Any) -> None:
        raise StopForward

    ctx = forward_pre_hook(block(model, layer), stop) if before else forward_hook(block(model, layer), stop)
    with ctx:
        yield


# ---- reading ----------------------------------------------------------------------------------------
@dataclass
class Capture:
    """What a read hook saw: the site's activation ``[batch, seq, d_model]`` at each forward pass."""

    site: Any
    values: list[Tensor] = field(default_factory=list)
    keep_grad: bool = False

    @property
    def value(self) -> Float[Tensor, "batch seq d"]:
        if not self.values:
            raise RuntimeError(f"no forward pass reached {self.site}")
        return self.values[-1]

    def _add(self, t: Tensor) -> None:
        self.values.append(t if self.keep_grad else t.detach())


def _component_hook(model: "Model", site: Site, fn: Callable[[Tensor], Tensor | None]) -> ExitStack:
    """Register hooks that call ``fn(value)`` with the site's activation and, if ``fn`` returns a tensor,
    write it back. Returns the ExitStack holding the hooks (the caller enters it)."""
    lay = layout_of(model)
    stack = ExitStack()
    L, comp = site.layer, site.component
    if comp == "resid_pre":

        def pre(_m: nn.Module, args: tuple, kwargs: dict) -> Any:
            new = fn(pre_input(args, kwargs))
            return None if new is None else pre_replace(args, kwargs, new)

        stack.enter_context(forward_pre_hook(block(model, L), pre))
    elif comp == "resid_post":

        def post(_m: nn.Module, _i: tuple, out: Any) -> Any:
            new = fn(_first(out))
            return None if new is None else _replace_first(out, new)

        stack.enter_context(forward_hook(block(model, L), post))
    elif comp in ("attn_out", "mlp_out"):
        mod = block_part(model, L, lay.attn_add if comp == "attn_out" else lay.mlp_add)

        def out_hook(_m: nn.Module, _i: tuple, out: Any) -> Any:
            new = fn(_first(out))
            return None if new is None else _replace_first(out, new)

        stack.enter_context(forward_hook(mod, out_hook))
    elif comp == "resid_mid":
        box: dict[str, Tensor] = {}

        def grab(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            box["pre"] = pre_input(args, kwargs)

        def mid(_m: nn.Module, _i: tuple, out: Any) -> Any:
            pre = box.pop("pre")
            attn = _first(out)
            new = fn(pre + attn)
            return None if new is None else _replace_first(out, new - pre)

        stack.enter_context(forward_pre_hook(block(model, L), grab))
        stack.enter_context(forward_hook(block_part(model, L, lay.attn_add), mid))
    elif comp == "head_out":
        if site.head is None:
            raise ConfigError(f"site {site} is a head_out site without a head: give head=<index>")
        o = block_part(model, L, lay.o_proj)
        hbox: dict[str, Tensor] = {}
        W = head_weight(model, L, site.head)
        dh = model.d_head
        sl = slice(site.head * dh, (site.head + 1) * dh)

        def zgrab(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            hbox["head"] = pre_input(args, kwargs)[..., sl] @ W

        def zwrite(_m: nn.Module, _i: tuple, out: Any) -> Any:
            head = hbox.pop("head")
            new = fn(head)
            return None if new is None else _replace_first(out, _first(out) + (new - head))

        stack.enter_context(forward_pre_hook(o, zgrab))
        stack.enter_context(forward_hook(o, zwrite))
    else:
        raise ConfigError(f"unknown component {comp!r}")
    return stack


@contextmanager
def read_site(model: "Model", site_or_module: Site | nn.Module, keep_grad: bool = False) -> Iterator[Capture]:
    """Record the activation of one site (all positions, ``[batch, seq, d_model]``) at every forward pass
    run inside the block, on any backend. ``site.position`` is ignored here (positions are per sequence; see
    :func:`mechinterp.locate.activations.collect`). An ``nn.Module`` records that module's output (first element of a
    tuple). ``keep_grad`` keeps the autograd graph (for attribution)."""
    if isinstance(site_or_module, nn.Module):
        cap = Capture(site_or_module, keep_grad=keep_grad)
        with forward_hook(site_or_module, lambda _m, _i, out: cap._add(_first(out))):
            yield cap
        return
    site_or_module.check(model)
    cap = Capture(site_or_module, keep_grad=keep_grad)

    def record(x: Tensor) -> None:
        cap._add(x)

    with _component_hook(model, site_or_module, record):
        yield cap


@contextmanager
def read_sites(model: "Model", sites: Sequence[Site], keep_grad: bool = False) -> Iterator[dict[Site, Capture]]:
    """:func:`read_site` for several sites at once; sites that differ only in position share one hook."""
    with ExitStack() as stack:
        by_key: dict[tuple, Capture] = {}
        out: dict[Site, Capture] = {}
        for s in sites:
            k = s.key
            if k not in by_key:
                by_key[k] = stack.enter_context(read_site(model, s, keep_grad=keep_grad))
            out[s] = by_key[k]
        yield out


@contextmanager
def write_site(model: "Model", site_or_module: Site | nn.Module, fn: WriteFn) -> Iterator[None]:
    """Replace a site's activation by ``fn(activation)`` (``[batch, seq, d_model]`` in, same shape out;
    returning None leaves it unchanged) in every forward pass run inside the block, on any backend.

    ``site.position`` is ignored: ``fn`` sees every position and decides what to change (see
    :func:`at_positions`). An ``nn.Module`` has its output (first element of a tuple) replaced."""
    if isinstance(site_or_module, nn.Module):

        def hook(_m: nn.Module, _i: tuple, out: Any) -> Any:
            new = fn(_first(out))
            return None if new is None else _replace_first(out, new)

        with forward_hook(site_or_module, hook):
            yield
        return
    site_or_module.check(model)
    with _component_hook(model, site_or_module, fn):
        yield


def at_positions(
    rows: Sequence[int] | Tensor, positions: Sequence[int] | Tensor, values: Float[Tensor, "n d"]
) -> Callable[[Tensor], Tensor]:
    """A :func:`write_site` function that sets ``act[rows[i], positions[i]] = values[i]`` (on a copy)."""
    r = torch.as_tensor(rows, dtype=torch.long)
    p = torch.as_tensor(positions, dtype=torch.long)

    def fn(act: Tensor) -> Tensor:
        new = act.clone()
        new[r.to(act.device), p.to(act.device)] = values.to(act.dtype).to(act.device)
        return new

    return fn


def run_until(model: "Model", layer: int | None, before: bool = False, **inputs: Any) -> Any:
    """Run the decoder (no LM head) on ``inputs`` and stop once block ``layer`` is done (or starts, with
    ``before``). Returns the decoder output when it ran to the end, else None."""
    dec = base_model(model)
    if layer is None:
        return dec(**inputs, use_cache=False)
    with stop_after(model, layer, before=before):
        try:
            return dec(**inputs, use_cache=False)
        except StopForward:
            return None


#: Modules whose hooks belong to the libraries, not to the workbench: transformers installs inert, permanent
#: output-capturing hooks the first time hidden states or attentions are requested
#: (``transformers.utils.output_capturing``), and TransformerLens's bridge wires permanent capture hooks onto
#: the modules it wraps (``BlockBridge._maybe_wire_capture_hooks``).
LIBRARY_HOOK_MODULES = ("transformers.", "transformer_lens.")


def hooks_on(model: "Model", include_library: bool = False) -> set[tuple[str, str, int]]:
    """Every forward / forward-pre / backward hook on the modules of ``model.hf``, as (module name, kind, hook
    id), leaving out the libraries' own permanent hooks unless ``include_library``. Used to check that the
    context managers of this package leave nothing behind."""
    out = set()
    for name, mod in model.hf.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            for key, fn in getattr(mod, kind).items():
                if include_library or not getattr(fn, "__module__", "").startswith(LIBRARY_HOOK_MODULES):
                    out.add((name, kind, key))
    return out

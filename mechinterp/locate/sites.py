"""Typed activation sites: what they are, how they are written down, and which tokens they cover.

A :class:`Site` is a value (layer, component, position, head); user code never builds hook-name strings.
Components, for block ``L`` (all are ``[d_model]`` vectors at one token):

* ``resid_pre(L)``: the residual stream entering block L. ``resid_pre(0)`` is the token embedding as the
  first block receives it: for Gemma-3 *after* the ``sqrt(d_model)`` embedding scale, for GPT-2 the token plus
  position embedding.
* ``attn_out(L)``: exactly what the attention sublayer adds to the residual stream. Llama/SmolLM2: the
  ``o_proj`` output. GPT-2: the ``attn.c_proj`` output, bias included. Gemma-2/3: the output of
  ``post_attention_layernorm`` (Gemma normalises the attention output before adding it; see
  ``Gemma3DecoderLayer.forward``).
* ``resid_mid(L)`` = ``resid_pre(L) + attn_out(L)``: the residual stream between attention and MLP.
* ``mlp_out(L)``: exactly what the MLP sublayer adds. Llama/GPT-2: the ``mlp`` output; Gemma-2/3: the
  output of ``post_feedforward_layernorm``.
* ``resid_post(L)`` = ``resid_mid(L) + mlp_out(L)``: the block's output, = ``resid_pre(L + 1)``.
* ``head_out(L, h)``: head h's term of the attention output projection, ``z_h @ W_O[h]`` where ``z_h`` is
  head h's slice of the ``o_proj`` input and ``W_O[h]`` its slice of the projection (no bias). For Llama,
  ``attn_out = sum_h head_out``; for GPT-2, ``attn_out = sum_h head_out + b_O``. For Gemma-3 the
  post-attention RMSNorm is nonlinear, so ``attn_out = post_attention_layernorm(sum_h head_out)``: head_out
  there lives in the *pre-norm* attention output space, its sum is not attn_out, and patching a head means
  replacing its term before the norm (the norm is then recomputed on the edited sum).

Positions: :class:`TokenPos` (a token index, BOS = 0, negative from the end) or :class:`RegionPos` (a
region of a stimulus condition, by number, region name or role -- ``ambiguous``, ``disambiguating``,
``cue`` -- resolved through a :class:`~mechinterp.stimuli.types.Suite`, and which of its tokens:
``last``, ``first``, ``all``, or the ``mean`` over them). Token positions come from
:mod:`mechinterp.tokenization`, the one place positions are resolved.

Backends: :mod:`mechinterp.locate.activations` reads the same site as the same tensor through plain HF hooks
(:mod:`mechinterp.locate.hooks`), TransformerLens bridge hook points (``blocks.L.hook_resid_pre`` ...) or
nnsight module proxies; ``tests/test_locate_activations.py`` compares all three.

Site specs (:func:`parse_sites`), entries separated by commas::

    COMPONENTS@LAYERS[:POSITION][:head=HEADS]
    COMPONENTS  one or more components joined by '|'         resid_post | attn_out|mlp_out
    LAYERS      a layer list (:mod:`mechinterp.layers`)       0-17 | 3 | *  | 0-3+8 | every 3
    POSITION    token=I[+I...] or region=R[/WHICH][+R[/WHICH]...]  token=-1 | region=np/last+verb/mean
                (a region without /WHICH takes the last one given, default 'last'; region=* = every region)
    HEADS       the same grammar for heads (head_out only; default all heads)

e.g. ``"resid_post@0-17:region=ambiguous/last,mlp_out@3:token=-1"``. ``region=*`` means every region
(needs ``regions=``). A site without a position covers every token of the sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence, get_args

from mechinterp.errors import ConfigError, RegionError
from mechinterp.layers import parse_indices
from mechinterp.tokenization import TokenizedText

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite

#: Components that are one ``[d_model]`` vector per token for the whole layer (no head): what probes, SAEs,
#: interventions and sweeps take.
WholeComponent = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]
WHOLE_COMPONENTS: tuple[WholeComponent, ...] = get_args(WholeComponent)
#: Every component a site can have (``head_out`` needs a head).
Component = Literal[WholeComponent, "head_out"]
COMPONENTS: tuple[Component, ...] = get_args(Component)
RESIDUAL: tuple[Component, ...] = ("resid_pre", "resid_mid", "resid_post")
Which = Literal["last", "first", "all", "mean"]
WHICH: tuple[Which, ...] = get_args(Which)


@dataclass(frozen=True)
class TokenPos:
    """A token index in the sequence (BOS = 0; negative counts from the end, -1 = last token).

    Args:
        index: The token's index.

    Example:
        >>> import mechinterp as mi
        >>> str(mi.Site(3, "mlp_out", mi.TokenPos(-1)))
        'mlp_out@3:token=-1'
    """

    index: int

    @property
    def label(self) -> str:
        return f"token={self.index}"


@dataclass(frozen=True)
class RegionPos:
    """Tokens of a region: by number, or by name / role (``ambiguous``, ``disambiguating``, ``cue``)
    resolved with a Suite; ``which`` of its tokens (``mean`` averages them into one vector).

    Args:
        region: The region's number, its name in the suite's ``region_meta`` (``"np"``) or a role of the
            suite's ambiguity annotation (``"ambiguous"``, ``"disambiguating"``, ``"cue"``).
        which: ``"last"`` (default), ``"first"``, ``"all"`` of its tokens, or their ``"mean"``.

    Example:
        >>> import mechinterp as mi
        >>> mi.RegionPos("ambiguous", "mean").label
        'ambiguous/mean'
    """

    region: int | str
    which: Which = "last"

    def __post_init__(self) -> None:
        if self.which not in WHICH:
            raise ConfigError(f"region position {self.region!r}: 'which' must be one of {', '.join(WHICH)}, got {self.which!r}")

    @property
    def label(self) -> str:
        return f"{self.region}/{self.which}"


Position = TokenPos | RegionPos


@dataclass(frozen=True)
class Site:
    """Where an activation lives: block ``layer``, ``component``, optional position and head.

    Args:
        layer: The block, counted from 0.
        component: ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out`` or ``head_out``
            (module docstring: what each one is on each architecture).
        position: A :class:`TokenPos` or :class:`RegionPos`; None for every token of the sequence.
        head: The attention head (``head_out`` only).

    Example:
        >>> import mechinterp as mi
        >>> site = mi.Site(1, "resid_post", mi.RegionPos("ambiguous", "last"))
        >>> str(site)
        'resid_post@1:region=ambiguous/last'
    """

    layer: int
    component: Component
    position: Position | None = None
    head: int | None = None

    def __post_init__(self) -> None:
        if self.component not in COMPONENTS:
            raise ConfigError(f"unknown component {self.component!r}: choose one of {', '.join(COMPONENTS)}")
        if self.head is not None and self.component != "head_out":
            raise ConfigError(f"only head_out sites take a head (got {self.component} with head={self.head})")
        if self.layer < 0:
            raise ConfigError(f"layer must be >= 0, got {self.layer}")

    @property
    def position_label(self) -> str:
        if self.position is None:
            return "all"
        return self.position.label

    def __str__(self) -> str:
        s = f"{self.component}@{self.layer}"
        if isinstance(self.position, TokenPos):
            s += f":token={self.position.index}"
        elif isinstance(self.position, RegionPos):
            s += f":region={self.position.region}/{self.position.which}"
        if self.head is not None:
            s += f":head={self.head}"
        return s

    def at(self, position: Position | None) -> "Site":
        """This site at another position."""
        return Site(self.layer, self.component, position, self.head)

    @property
    def unpositioned(self) -> "Site":
        return Site(self.layer, self.component, None, self.head)

    @property
    def key(self) -> tuple[int, str, int | None]:
        """(layer, component, head): what identifies the tensor, whatever the position."""
        return (self.layer, self.component, self.head)

    def check(self, model: "Model") -> None:
        """ConfigError unless ``model`` has this site's layer (and head)."""
        if not 0 <= self.layer < model.n_layers:
            raise ConfigError(f"site {self}: layer {self.layer} is out of range (model has layers 0-{model.n_layers - 1})")
        if self.component == "head_out" and (self.head is None or not 0 <= self.head < model.n_heads):
            raise ConfigError(f"site {self}: head_out needs a head in 0-{model.n_heads - 1}")


# ---- parsing ----------------------------------------------------------------------------------------------
def _ints(text: str, upper: int | None, what: str, entry: str) -> list[int]:
    """Layers or heads in the layer-list grammar (:mod:`mechinterp.layers`)."""
    try:
        return parse_indices(text, upper, what)
    except ConfigError as exc:
        raise ConfigError(f"site spec {entry!r}: {exc}") from None


def _positions(text: str, entry: str, regions: Sequence[int | str] | None) -> list[Position]:
    key, _, val = text.partition("=")
    key = key.strip()
    if not val:
        raise ConfigError(f"site spec {entry!r}: bad position {text!r} (use token=I or region=R/which)")
    if key == "token":
        try:
            return [TokenPos(int(v)) for v in val.split("+")]
        except ValueError:
            raise ConfigError(f"site spec {entry!r}: token position {val!r} is not an integer") from None
    if key == "region":
        pieces = [p.strip().partition("/") for p in val.split("+")]
        default = pieces[-1][2] or "last"  # a piece without /WHICH takes the last piece's
        out: list[Position] = []
        for name, _, which in pieces:
            which = which or default
            if which not in WHICH:
                raise ConfigError(f"site spec {entry!r}: bad token choice {which!r} (use {', '.join(WHICH)})")
            if not name:
                raise ConfigError(f"site spec {entry!r}: empty region name")
            if name == "*":
                if regions is None:
                    raise ConfigError(f"site spec {entry!r}: region=* needs the list of regions (regions=)")
                out.extend(RegionPos(r, which) for r in regions)
            else:
                out.append(RegionPos(int(name) if name.lstrip("-").isdigit() else name, which))
        return out
    raise ConfigError(f"site spec {entry!r}: unknown position kind {key!r} (use token= or region=)")


def parse_sites(
    spec: str, n_layers: int, n_heads: int | None = None, regions: Sequence[int | str] | None = None
) -> list[Site]:
    """Parse a site spec (grammar in the module docstring) into sites, in spec order
    (component, layer, position, head).

    Args:
        spec: The spec, e.g. ``"resid_post@0-17:region=ambiguous/last,mlp_out@3:token=-1"``.
        n_layers: The model's layer count (for ``*``, ``every K`` and range checks).
        n_heads: The model's head count (for ``head_out`` without ``:head=``, which means every head).
        regions: The regions ``region=*`` expands to (for a suite: every region before the disambiguator).

    Returns:
        The sites.

    Raises:
        ConfigError: A bad part of the spec, named.

    Example:
        >>> import mechinterp as mi
        >>> [str(s) for s in mi.parse_sites("resid_post@0-1:region=ambiguous/last", n_layers=2)]
        ['resid_post@0:region=ambiguous/last', 'resid_post@1:region=ambiguous/last']
    """
    if not spec or not spec.strip():
        raise ConfigError("empty site spec: give e.g. 'resid_post@0-5:region=ambiguous/last'")
    sites: list[Site] = []
    for entry in spec.split(","):
        entry = entry.strip()
        if not entry:
            raise ConfigError(f"site spec {spec!r} has an empty entry (two commas in a row?)")
        comps_s, at, rest = entry.partition("@")
        if not at:
            raise ConfigError(f"site spec {entry!r}: missing '@LAYERS' (e.g. resid_post@0-5)")
        comps = [c.strip() for c in comps_s.split("|")]
        for c in comps:
            if c not in COMPONENTS:
                raise ConfigError(f"site spec {entry!r}: unknown component {c!r} (choose from {', '.join(COMPONENTS)})")
        parts = rest.split(":")
        layers = _ints(parts[0], n_layers, "layer", entry)
        positions: list[Position | None] = [None]
        heads_s: str | None = None
        for p in parts[1:]:
            p = p.strip()
            if p.startswith("head="):
                heads_s = p[len("head="):]
            elif p.startswith(("token=", "region=")):
                positions = list(_positions(p, entry, regions))
            else:
                raise ConfigError(f"site spec {entry!r}: unknown part {p!r} (use token=, region= or head=)")
        if heads_s is not None and comps != ["head_out"]:
            raise ConfigError(f"site spec {entry!r}: head= only applies to head_out alone")
        for comp in comps:
            heads: list[int | None] = [None]
            if comp == "head_out":
                heads = list(_ints(heads_s or "*", n_heads, "head", entry))
            for L in layers:
                for pos in positions:
                    for h in heads:
                        sites.append(Site(L, comp, pos, h))  # pyright: ignore[reportArgumentType]  # component names are checked by Site
    return list(dict.fromkeys(sites))


# ---- positions ----------------------------------------------------------------------------------------------
def region_number(region: int | str, suite: "Suite | None") -> int:
    """A region's number from a number, a numeric string, or a name / role looked up in ``suite``."""
    if isinstance(region, int):
        return region
    if str(region).lstrip("-").isdigit():
        return int(region)
    if suite is None:
        raise RegionError(f"region {region!r} is a name: pass the suite (suite=) to resolve it, or use its number")
    return suite.region_number(region)


def resolve_positions(position: Position, tokenized: TokenizedText, suite: "Suite | None" = None) -> list[int]:
    """Token indices of ``position`` in ``tokenized``. ``mean`` and ``all`` give every token of the region
    (the caller averages for ``mean``). RegionError if the region is missing or empty or a token index is
    out of range."""
    n = len(tokenized)
    if isinstance(position, TokenPos):
        i = position.index + n if position.index < 0 else position.index
        if not 0 <= i < n:
            raise RegionError(f"token {position.index} is out of range for {tokenized.text!r} ({n} tokens incl. BOS)")
        return [i]
    if isinstance(position, RegionPos):
        num = region_number(position.region, suite)
        toks = tokenized.tokens_of_region(num)
        if len(toks) == 0:
            raise RegionError(f"region {position.region!r} (number {num}) is empty in {tokenized.text!r}")
        if position.which == "last":
            return [toks[-1]]
        if position.which == "first":
            return [toks[0]]
        return list(toks)
    raise ConfigError(f"not a position: {position!r}")


def region_of_token(tokenized: TokenizedText, token: int) -> int:
    """The region number a token belongs to (0 for BOS or a token outside every region)."""
    for n, (a, b) in tokenized.region_spans.items():
        if a <= token < b:
            return int(n)
    return 0

"""Activation patching between the two versions of each item, many patches per forward pass.

For every item the **clean** run is the unambiguous condition and the **corrupt** run the ambiguous one
(``suite.ambiguity.unambiguous_condition`` / ``ambiguous_condition``). Two directions:

* ``clean_to_corrupt`` (denoising): run the corrupt sentence, replace one site's activation by the clean
  run's, and see how far the metric moves toward the clean value.
* ``corrupt_to_clean`` (noising): run the clean sentence with one corrupt activation patched in.

Metrics (bits; measured on the sentence that is run, always on its disambiguating region):

* ``surprisal``: surprisal of the disambiguating word, the sum over its tokens of ``-log2 p(token | prefix)``.
* ``logprob_diff``: ``log2 P(disambiguating word | prefix) - log2 P(alternative | prefix)``, where the
  alternative is a one-token continuation consistent with the other (preferred, garden-path) reading, e.g.
  ``","`` after "While the man hunted the deer" (the NP was an object and the clause ends) and ``"."``
  after "The horse raced past the barn" (a main verb). Defaults per construction in
  :data:`DEFAULT_ALTERNATIVES`; ``PatchConfig.alternative`` overrides.

Each row reports ``raw`` (the metric of the patched run), ``clean_value`` and ``corrupt_value`` (the metric of
the unpatched clean / corrupt runs) and ``normalised = (raw - corrupt_value) / (clean_value - corrupt_value)``:
0 = the corrupt run's value, 1 = the clean run's, in both directions (noising starts at 1 and an important
site pulls it toward 0). The same formula is used for every metric.

**Aligning versions of different lengths.** The two versions are the same words except the cue (present in
the unambiguous version only). Their token sequences are aligned with ``difflib.SequenceMatcher``: every
token of the ambiguous version is matched to the identical token of the unambiguous one, and the cue's
tokens are left unmatched. A position is resolved in the ambiguous version (``np/last`` = last token of the
NP region there) and mapped through the alignment to the unambiguous version, so region k's last token
pairs with region k's last token whenever those are the same word. Consequences:

* The cue region has no tokens in the ambiguous version, so cue sites have no counterpart and are skipped in
  both directions (listed in ``skipped``); its information is seen where it arrives, at later positions.
* When the cue attaches to a word (NP/Z's comma: "hunted," is one word of the verb region), the verb
  region's last token is "hunted" in both versions; the comma token is the unmatched cue.
* A ``TokenPos`` is an index into the ambiguous version (negative from its end), mapped the same way.
* ``all`` patches every token of the region (pairs by alignment); ``mean`` cannot be patched.
* Positions after the last token that predicts the metric cannot change it (causal attention): their
  effect is exactly 0 and they are still reported. So are positions before the cue (e.g. NP/Z's verb,
  MV/RR's subject): their prefix is the same in both versions, so both runs hold identical activations
  there, the patch is the identity and is not run (raw = the unpatched value).

**Batching.** For one item and direction, the sites are sorted by layer and split into chunks of
``rows_per_pass``; each chunk is ONE forward pass of the base sentence stacked B times, row r patched at
site r. Rows are identical up to the first patched layer, so that prefix runs once and is expanded to B rows
at the chunk's first layer; the sentence is cut after the last token the metric reads, and the LM head is
applied only at the positions the metric needs. ``tests/test_locate_patching.py`` checks the result equals
patching one site per full forward pass (<= 1e-5).
"""

from __future__ import annotations

import difflib
import math
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.errors import ConfigError, RegionError
from mechinterp.locate.hooks import base_model, forward_pre_hook, write_site
from mechinterp.progress import progress
from mechinterp.locate.sites import RegionPos, Site, TokenPos, parse_sites, read_batch, region_number, resolve_positions
from mechinterp.tokenization import TokenizedText, tokenize_condition

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Item, Suite

Direction = Literal["clean_to_corrupt", "corrupt_to_clean"]
DIRECTIONS: tuple[Direction, ...] = ("clean_to_corrupt", "corrupt_to_clean")
MetricName = Literal["surprisal", "logprob_diff"]
LN2 = math.log(2.0)

#: One-token continuations consistent with the preferred (garden-path) reading, per construction.
DEFAULT_ALTERNATIVES: dict[str, str] = {"NP/Z": ",", "NP/S": ".", "MV/RR": "."}

COLUMNS = [
    "suite", "construction", "item", "direction", "method", "layer", "component", "head", "position",
    "region", "position_order", "base_token", "source_token", "metric", "raw", "normalised", "clean_value",
    "corrupt_value",
]


@dataclass(frozen=True)
class PatchConfig:
    """How to patch: the metric, the directions, and how many patched rows go into one forward pass."""

    metric: MetricName = "surprisal"
    directions: tuple[Direction, ...] = DIRECTIONS
    rows_per_pass: int = 64
    alternative: str | None = None  # logprob_diff: overrides DEFAULT_ALTERNATIVES
    target: int | str = "disambiguating"  # the region whose tokens the metric scores
    skip_identical: bool = True  # do not run patches whose source equals the base activation (identity)

    def __post_init__(self) -> None:
        if self.metric not in ("surprisal", "logprob_diff"):
            raise ConfigError(f"unknown metric {self.metric!r}: choose surprisal or logprob_diff")
        for d in self.directions:
            if d not in DIRECTIONS:
                raise ConfigError(f"unknown direction {d!r}: choose from {', '.join(DIRECTIONS)}")
        if self.rows_per_pass < 1:
            raise ConfigError(f"rows_per_pass must be >= 1, got {self.rows_per_pass}")


# ---- the two versions of an item ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """An item's clean (unambiguous) and corrupt (ambiguous) versions, tokenized and aligned."""

    item: "Item"
    construction: str
    clean: TokenizedText
    corrupt: TokenizedText
    to_clean: dict[int, int]  # corrupt token index -> matched clean token index

    def version(self, which: Literal["clean", "corrupt"]) -> TokenizedText:
        return self.clean if which == "clean" else self.corrupt


def align_tokens(a: TokenizedText, b: TokenizedText) -> dict[int, int]:
    """Token index in ``a`` -> index of the identical token in ``b``, from the longest matching blocks."""
    sm = difflib.SequenceMatcher(None, list(a.input_ids), list(b.input_ids), autojunk=False)
    out: dict[int, int] = {}
    for blk in sm.get_matching_blocks():
        for k in range(blk.size):
            out[blk.a + k] = blk.b + k
    return out


def make_pair(model: "Model", suite: "Suite", item: "Item") -> Pair:
    if suite.ambiguity is None:
        raise ConfigError(f"suite {suite.name!r} has no ambiguity annotation: patching needs its two conditions")
    amb = suite.ambiguity
    corrupt = tokenize_condition(model, item.condition(amb.ambiguous_condition))
    clean = tokenize_condition(model, item.condition(amb.unambiguous_condition))
    return Pair(item, suite.construction_of(item), clean, corrupt, align_tokens(corrupt, clean))


def aligned_positions(pair: Pair, position: Any, suite: "Suite") -> tuple[list[int], list[int]]:
    """(corrupt token indices, clean token indices) that ``position`` pairs up; RegionError if it has no
    counterpart (e.g. the cue region)."""
    if isinstance(position, RegionPos) and position.which == "mean":
        raise ConfigError("a 'mean' position cannot be patched: use last, first or all")
    if position is None:
        raise ConfigError("patching needs sites with a position (e.g. region=np/last)")
    corrupt = resolve_positions(position, pair.corrupt, suite)
    clean = [pair.to_clean.get(t) for t in corrupt]
    if any(c is None for c in clean):
        # the token changed between versions (tokenization differs around the cue): fall back to the region
        if isinstance(position, RegionPos):
            alt = resolve_positions(position, pair.clean, suite)
            if len(alt) == len(corrupt):
                return corrupt, alt
        raise RegionError(f"position {position.label} of {pair.corrupt.text!r} has no counterpart in {pair.clean.text!r}")
    return corrupt, [int(c) for c in clean]  # type: ignore[arg-type]


def position_label(position: Any, suite: "Suite") -> tuple[str, int]:
    """A readable label ("np/last") and a sort order (region number, or a large number for tokens)."""
    if isinstance(position, RegionPos):
        num = region_number(position.region, suite)
        name = suite.region_meta.get(num, str(num))
        return f"{name}/{position.which}", num
    if isinstance(position, TokenPos):
        return position.label, 1000 + position.index
    return "all", 0


# ---- metrics -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """What the metric reads from one base sentence: the target tokens and, for logprob_diff, the
    alternative token at the target's onset."""

    name: MetricName
    targets: tuple[int, ...]  # token positions scored
    target_ids: tuple[int, ...]
    alt_id: int | None = None

    @property
    def reads(self) -> list[int]:
        """Positions whose next-token distribution is needed."""
        return [t - 1 for t in self.targets]

    @property
    def length(self) -> int:
        """Tokens the forward pass needs (everything after the last read position is irrelevant)."""
        return self.targets[-1]

    def from_logprobs(self, logp: Float[Tensor, "batch reads vocab"]) -> Float[Tensor, "batch"]:
        idx = torch.tensor(self.target_ids, device=logp.device)
        tgt = logp.gather(-1, idx[None, :, None].expand(logp.shape[0], -1, 1)).squeeze(-1).sum(-1)
        if self.name == "surprisal":
            return -tgt / LN2
        return (tgt - logp[:, 0, self.alt_id]) / LN2


def metric_spec(model: "Model", suite: "Suite", tokenized: TokenizedText, pair: Pair, config: PatchConfig) -> MetricSpec:
    region = region_number(config.target, suite)
    toks = list(tokenized.tokens_of_region(region))
    if not toks:
        raise RegionError(f"target region {config.target!r} is empty in {tokenized.text!r}")
    ids = tuple(tokenized.input_ids[t] for t in toks)
    alt_id = None
    if config.metric == "logprob_diff":
        alt = config.alternative or DEFAULT_ALTERNATIVES.get(pair.construction)
        if alt is None:
            raise ConfigError(
                f"metric logprob_diff needs an alternative continuation for construction {pair.construction!r}: "
                "give one (e.g. --alternative ',')"
            )
        enc = model.tokenizer(alt, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ConfigError(f"alternative continuation {alt!r} is {len(enc)} tokens: use a one-token continuation")
        alt_id = int(enc[0])
    return MetricSpec(config.metric, tuple(toks), ids, alt_id)


def lm_logits(model: "Model", hidden: Float[Tensor, "... d"]) -> Float[Tensor, "... vocab"]:
    """The LM head on final (already normed) hidden states, with the model's logit soft-capping if any."""
    out = model.hf.get_output_embeddings()(hidden)
    cap = getattr(model.hf.config, "final_logit_softcapping", None)
    if cap:
        out = torch.tanh(out / cap) * cap
    return out


def metric_from_hidden(model: "Model", hidden: Float[Tensor, "batch seq d"], spec: MetricSpec) -> Float[Tensor, "batch"]:
    lg = lm_logits(model, hidden[:, spec.reads]).float()
    return spec.from_logprobs(torch.log_softmax(lg, -1))


def metric_from_logits(logits_: Float[Tensor, "batch seq vocab"], spec: MetricSpec) -> Float[Tensor, "batch"]:
    return spec.from_logprobs(torch.log_softmax(logits_[:, spec.reads].float(), -1))


# ---- one patch = (site, base positions, source vectors) ---------------------------------------------------------
@dataclass(frozen=True)
class Patch:
    site: Site  # unpositioned
    positions: tuple[int, ...]  # in the base sentence
    values: Float[Tensor, "k d"]  # what to write there


def _expand_at(model: "Model", layer: int, rows: int):
    """Expand the (single-row) hidden state entering block ``layer`` to ``rows`` identical rows: the layers
    before the first patched one run once for the whole chunk."""
    from mechinterp.locate.hooks import _pre_input, _pre_replace, block

    def hook(_m: Any, args: tuple, kwargs: dict) -> Any:
        x = _pre_input(args, kwargs)
        if x.shape[0] == rows:
            return None
        return _pre_replace(args, kwargs, x.expand(rows, *x.shape[1:]).contiguous())

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
    from mechinterp.locate.hooks import at_positions

    n = max([spec.length] + [max(p.positions) + 1 for p in patches])
    ids = torch.tensor([list(base_ids[:n])], device=model.device)
    dec = base_model(model)
    if not patches:
        hidden = dec(input_ids=ids, use_cache=False).last_hidden_state
        return metric_from_hidden(model, hidden, spec).cpu().numpy()
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
    from mechinterp.locate.hooks import at_positions, read_site

    s = site.unpositioned
    with read_site(model, s) as cap:
        model.hf(input_ids=torch.tensor([source.input_ids], device=model.device), use_cache=False)
    vals = cap.value[0, list(source_positions)]
    with write_site(model, s, at_positions([0] * len(base_positions), list(base_positions), vals)):
        lg = model.hf(input_ids=torch.tensor([base.input_ids], device=model.device), use_cache=False).logits
    return float(metric_from_logits(lg, spec)[0])


# ---- sweeps -------------------------------------------------------------------------------------------------
def default_regions(suite: "Suite") -> list[int]:
    """Regions a sweep's ``region=*`` means: every region before the disambiguating one except the cue."""
    if suite.ambiguity is None:
        raise ConfigError(f"suite {suite.name!r} has no ambiguity annotation")
    amb = suite.ambiguity
    numbers = sorted({r.number for it in suite.items for c in it.conditions for r in c.regions})
    return [n for n in numbers if n < amb.disambiguating_region and n != amb.cue_region]


def parse_sweep(spec: str | None, model: "Model", suite: "Suite", heads: bool = True) -> list[Site]:
    """Sites of a patching sweep. ``region=*`` = each region before the disambiguator except the cue (see
    :func:`default_regions`). Without a spec: resid_pre, attn_out and mlp_out at every layer, and (``heads``)
    every head, at each of those regions' last token."""
    if not spec:
        spec = "resid_pre|attn_out|mlp_out@*:region=*/last" + (",head_out@*:region=*/last:head=*" if heads else "")
    sites = parse_sites(spec, model.n_layers, model.n_heads, regions=default_regions(suite))
    for s in sites:
        if s.position is None:
            raise ConfigError(f"sweep site {s} has no position: add e.g. :region=*/last")
        if isinstance(s.position, RegionPos) and s.position.which == "mean":
            raise ConfigError(f"sweep site {s}: a 'mean' position cannot be patched (use last, first or all)")
    return sites


@dataclass
class PairActivations:
    """Unpatched activations (full length, batch 1) of both versions at every site of a sweep."""

    clean: dict[Site, Tensor]
    corrupt: dict[Site, Tensor]

    def of(self, which: Literal["clean", "corrupt"]) -> dict[Site, Tensor]:
        return self.clean if which == "clean" else self.corrupt


def pair_activations(model: "Model", pair: Pair, sites: Sequence[Site]) -> PairActivations:
    from mechinterp.forward import pad_batch

    keys = list(dict.fromkeys(s.unpositioned for s in sites))
    got = {}
    for which in ("clean", "corrupt"):
        b = pad_batch([pair.version(which).input_ids], model.pad_token_id, device=model.device)  # type: ignore[arg-type]
        got[which] = read_batch(model, b, keys)
    return PairActivations(got["clean"], got["corrupt"])


@dataclass(frozen=True)
class Planned:
    """One site of one item, its paired token positions in each version, and its labels."""

    site: Site
    corrupt_positions: tuple[int, ...]
    clean_positions: tuple[int, ...]
    label: str
    order: int
    region: int


def plan_sites(pair: Pair, sites: Sequence[Site], suite: "Suite", skipped: list[dict] | None = None) -> list[Planned]:
    out = []
    cache: dict[Any, Any] = {}
    for s in sites:
        if s.position not in cache:
            try:
                cache[s.position] = aligned_positions(pair, s.position, suite)
            except RegionError as exc:
                cache[s.position] = exc
        got = cache[s.position]
        label, order = position_label(s.position, suite)
        if isinstance(got, RegionError):
            if skipped is not None:
                skipped.append({"item": pair.item.key, "site": str(s), "reason": str(got)})
            continue
        cor, cle = got
        region = region_number(s.position.region, suite) if isinstance(s.position, RegionPos) else 0
        out.append(Planned(s, tuple(cor), tuple(cle), label, order, region))
    return out


def _tok(model: "Model", ids: Sequence[int], positions: Sequence[int]) -> str:
    return " ".join(str(model.tokenizer.convert_ids_to_tokens(int(ids[p]))) for p in positions)


def _roles(direction: Direction) -> tuple[Literal["clean", "corrupt"], Literal["clean", "corrupt"]]:
    """(base, source) of a direction."""
    return ("corrupt", "clean") if direction == "clean_to_corrupt" else ("clean", "corrupt")


@dataclass
class PairContext:
    """Everything exact and attribution patching share for one item."""

    pair: Pair
    planned: list[Planned]
    specs: dict[str, MetricSpec]
    values: dict[str, float]  # unpatched metric of each version
    acts: PairActivations

    def positions(self, p: Planned, which: str) -> tuple[int, ...]:
        return p.clean_positions if which == "clean" else p.corrupt_positions


def pair_context(model: "Model", suite: "Suite", item: "Item", sites: Sequence[Site], config: PatchConfig,
                 skipped: list[dict] | None = None) -> PairContext:
    pair = make_pair(model, suite, item)
    planned = plan_sites(pair, sites, suite, skipped)
    specs = {w: metric_spec(model, suite, pair.version(w), pair, config) for w in ("clean", "corrupt")}  # type: ignore[arg-type]
    values = {w: float(run_patches(model, pair.version(w).input_ids, [], specs[w])[0]) for w in specs}  # type: ignore[arg-type]
    acts = pair_activations(model, pair, [p.site for p in planned] or list(sites[:1]))
    return PairContext(pair, planned, specs, values, acts)


def _row(suite: "Suite", model: "Model", ctx: PairContext, p: Planned, direction: Direction, method: str,
         raw: float, config: PatchConfig) -> dict[str, Any]:
    base, source = _roles(direction)
    clean, corrupt = ctx.values["clean"], ctx.values["corrupt"]
    gap = clean - corrupt
    return {
        "suite": suite.name,
        "construction": ctx.pair.construction,
        "item": ctx.pair.item.key,
        "direction": direction,
        "method": method,
        "layer": p.site.layer,
        "component": p.site.component,
        "head": -1 if p.site.head is None else p.site.head,
        "position": p.label,
        "region": p.region,
        "position_order": p.order,
        "base_token": _tok(model, ctx.pair.version(base).input_ids, ctx.positions(p, base)),
        "source_token": _tok(model, ctx.pair.version(source).input_ids, ctx.positions(p, source)),
        "metric": config.metric,
        "raw": raw,
        "normalised": (raw - corrupt) / gap if abs(gap) > 1e-9 else float("nan"),
        "clean_value": clean,
        "corrupt_value": corrupt,
    }


def exact_rows(model: "Model", suite: "Suite", ctx: PairContext, config: PatchConfig) -> list[dict[str, Any]]:
    """Exact patching rows of one item. A patch whose source activation equals the base activation (positions
    before the cue have identical prefixes in both versions) changes nothing: its value is the unpatched base
    value and it is not run."""
    rows = []
    for direction in config.directions:
        base, source = _roles(direction)
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
            raw = ctx.values[base] if q is None else float(next(raws))
            rows.append(_row(suite, model, ctx, p, direction, "exact", raw, config))
    return rows


def patch_suite(
    model: "Model",
    suite: "Suite",
    sites: Sequence[Site],
    config: PatchConfig = PatchConfig(),
    items: Sequence["Item"] | None = None,
    attribution: bool = False,
    exact: bool = True,
) -> pd.DataFrame:
    """Exact (and/or attribution) patching of every item of ``suite`` at ``sites``: one row per item x site
    x direction x method (columns :data:`COLUMNS`). Sites that cannot be aligned in an item (the cue) are
    left out and listed in ``df.attrs["skipped"]``."""
    from mechinterp.locate.patching.attribution import attribution_rows

    if not exact and not attribution:
        raise ConfigError("nothing to do: ask for exact and/or attribution patching")
    rows: list[dict[str, Any]] = []
    skipped: list[dict] = []
    for item in progress(list(items if items is not None else suite.items), desc=f"patching {suite.name}"):
        ctx = pair_context(model, suite, item, sites, config, skipped)
        if exact:
            rows += exact_rows(model, suite, ctx, config)
        if attribution:
            rows += attribution_rows(model, suite, ctx, config)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["skipped"] = skipped
    return df

"""The plan shared by exact and attribution patching: an item's two versions aligned token by token, the paired
positions of every site, the metric each version is scored on, and the row each patch reports.

For every item the **clean** run is the unambiguous condition and the **corrupt** run the ambiguous one. Two
directions: ``clean_to_corrupt`` (denoising: run the corrupt sentence with one clean activation patched in)
and ``corrupt_to_clean`` (noising). Each row reports ``raw`` (the metric of the patched run), ``clean_value``
and ``corrupt_value`` (the unpatched runs) and ``normalised = (raw - corrupt_value) / (clean_value -
corrupt_value)``: 0 = the corrupt run's value, 1 = the clean run's, in both directions.

How versions of different lengths are aligned (the cue's tokens have no counterpart) is explained in
``docs/alignment.md``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Sequence

from torch import Tensor

from mechinterp.errors import ConfigError, RegionError
from mechinterp.forward import pad_batch
from mechinterp.locate.activations import read_batch
from mechinterp.locate.patching.metrics import (
    DEFAULT_ALTERNATIVES,
    NAMED,
    MetricName,
    MetricSpec,
    is_callable_metric,
    metric_name,
    unpatched_metric,
)
from mechinterp.locate.sites import (
    RegionPos,
    Site,
    TokenPos,
    region_number,
    resolve_positions,
)
from mechinterp.tokenization import TokenizedText, tokenize_condition

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Item, Suite

Direction = Literal["clean_to_corrupt", "corrupt_to_clean"]
DIRECTIONS: tuple[Direction, ...] = ("clean_to_corrupt", "corrupt_to_clean")


COLUMNS = [
    "suite", "construction", "item", "direction", "method", "layer", "component", "head", "position",
    "region", "position_order", "base_token", "source_token", "metric", "raw", "normalised", "clean_value",
    "corrupt_value",
]


@dataclass(frozen=True)
class PatchConfig:
    """How to patch: the metric, the directions, and how many patched rows go into one forward pass.

    ``metric`` is a name (``"surprisal"``, ``"logprob_diff"``) or any callable ``metric(logprobs, spec) ->
    Tensor[batch]`` (:mod:`.metrics`); the named callables are stored by name."""

    metric: MetricName = "surprisal"  # or a metric callable (metrics.MetricFn); the CLI offers the names
    directions: tuple[Direction, ...] = DIRECTIONS
    rows_per_pass: int = 64
    alternative: str | None = None  # logprob_diff: overrides DEFAULT_ALTERNATIVES
    target: int | str = "disambiguating"  # the region whose tokens the metric scores
    skip_identical: bool = True  # do not run patches whose source equals the base activation (identity)

    def __post_init__(self) -> None:
        named = {fn: name for name, fn in NAMED.items()}
        if callable(self.metric) and not hasattr(self.metric, "bind") and self.metric in named:
            object.__setattr__(self, "metric", named[self.metric])
        if not is_callable_metric(self.metric) and self.metric not in NAMED:
            raise ConfigError(f"unknown metric {self.metric!r}: choose surprisal or logprob_diff, or pass a callable")
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
    ambiguous, unambiguous = suite.pair(item)
    corrupt, clean = tokenize_condition(model, ambiguous), tokenize_condition(model, unambiguous)
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
    return corrupt, [int(c) for c in clean]  # pyright: ignore[reportArgumentType]  # every clean token is set (checked above)


def position_label(position: Any, suite: "Suite") -> tuple[str, int]:
    """A readable label ("np/last") and a sort order (region number, or a large number for tokens)."""
    if isinstance(position, RegionPos):
        num = region_number(position.region, suite)
        name = suite.region_meta.get(num, str(num))
        return f"{name}/{position.which}", num
    if isinstance(position, TokenPos):
        return position.label, 1000 + position.index
    return "all", 0


def metric_spec(model: "Model", suite: "Suite", tokenized: TokenizedText, pair: Pair, config: PatchConfig) -> MetricSpec:
    region = region_number(config.target, suite)
    toks = list(tokenized.tokens_of_region(region))
    if not toks:
        raise RegionError(f"target region {config.target!r} is empty in {tokenized.text!r}")
    ids = tuple(tokenized.input_ids[t] for t in toks)
    return target_spec(model, tuple(toks), ids, config, pair.construction)


def target_spec(model: "Model", targets: tuple[int, ...], ids: tuple[int, ...], config: PatchConfig,
                construction: str = "") -> MetricSpec:
    """The metric spec of ``config.metric`` scoring the tokens ``targets`` (ids ``ids``) of one sentence."""
    if is_callable_metric(config.metric):
        return custom_spec(model, config.metric, targets, ids)
    alt_id = None
    if config.metric == "logprob_diff":
        alt = config.alternative or DEFAULT_ALTERNATIVES.get(construction)
        if alt is None:
            raise ConfigError(
                f"metric logprob_diff needs an alternative continuation for construction {construction!r}: "
                "give one (e.g. --alternative ',')"
            )
        enc = model.tokenizer(alt, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ConfigError(f"alternative continuation {alt!r} is {len(enc)} tokens: use a one-token continuation")
        alt_id = int(enc[0])
    return MetricSpec(config.metric, targets, ids, alt_id)


def custom_spec(model: "Model", metric: Any, targets: tuple[int, ...], ids: tuple[int, ...]) -> MetricSpec:
    """The spec of a callable metric (bound to the model's tokenizer when it has a ``bind`` method)."""
    fn = metric.bind(model.tokenizer) if hasattr(metric, "bind") else metric
    return MetricSpec(metric_name(metric), targets, ids, None, fn)  # type: ignore[arg-type]


@dataclass
class PairActivations:
    """Unpatched activations (full length, batch 1) of both versions at every site of a sweep."""

    clean: dict[Site, Tensor]
    corrupt: dict[Site, Tensor]

    def of(self, which: Literal["clean", "corrupt"]) -> dict[Site, Tensor]:
        return self.clean if which == "clean" else self.corrupt


def pair_activations(model: "Model", pair: Pair, sites: Sequence[Site]) -> PairActivations:
    keys = list(dict.fromkeys(s.unpositioned for s in sites))
    got = {}
    for which in ("clean", "corrupt"):
        b = pad_batch([pair.version(which).input_ids], model.pad_token_id, device=model.device)
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


def token_label(model: "Model", ids: Sequence[int], positions: Sequence[int]) -> str:
    """The tokens at ``positions``, as the tokenizer spells them."""
    return " ".join(str(model.tokenizer.convert_ids_to_tokens(int(ids[p]))) for p in positions)


def roles(direction: Direction) -> tuple[Literal["clean", "corrupt"], Literal["clean", "corrupt"]]:
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
    specs = {w: metric_spec(model, suite, pair.version(w), pair, config) for w in ("clean", "corrupt")}
    values = {w: unpatched_metric(model, pair.version(w).input_ids, specs[w]) for w in specs}  # pyright: ignore[reportArgumentType]  # w is "clean" or "corrupt"
    acts = pair_activations(model, pair, [p.site for p in planned] or list(sites[:1]))
    return PairContext(pair, planned, specs, values, acts)


def result_row(suite: "Suite", model: "Model", ctx: PairContext, p: Planned, direction: Direction, method: str,
         raw: float, config: PatchConfig) -> dict[str, Any]:
    base, source = roles(direction)
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
        "base_token": token_label(model, ctx.pair.version(base).input_ids, ctx.positions(p, base)),
        "source_token": token_label(model, ctx.pair.version(source).input_ids, ctx.positions(p, source)),
        "metric": metric_name(config.metric),
        "raw": raw,
        "normalised": (raw - corrupt) / gap if abs(gap) > 1e-9 else float("nan"),
        "clean_value": clean,
        "corrupt_value": corrupt,
    }

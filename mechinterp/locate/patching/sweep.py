"""Patching sweeps: which sites a sweep covers, and exact and/or attribution patching of a whole suite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from mechinterp.errors import ConfigError
from mechinterp.locate.hooks import layout_of
from mechinterp.locate.patching.attribution import attribution_rows
from mechinterp.locate.patching.exact import exact_rows
from mechinterp.locate.patching.plan import COLUMNS, PatchConfig, pair_context
from mechinterp.locate.sites import RegionPos, Site, parse_sites
from mechinterp.progress import progress

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Item, Suite


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
    if not exact and not attribution:
        raise ConfigError("nothing to do: ask for exact and/or attribution patching")
    layout_of(model)  # an architecture without a known layout is refused before any forward pass
    for s in sites:
        s.check(model)
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

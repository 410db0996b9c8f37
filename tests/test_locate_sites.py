"""Sites: parsing, validation and positions."""

from __future__ import annotations

import pytest

from mechinterp.errors import ConfigError, RegionError
from mechinterp.locate.sites import (
    RegionPos,
    Site,
    TokenPos,
    parse_sites,
    resolve_positions,
)
from mechinterp.stimuli import load_suite
from mechinterp.tokenization import tokenize_condition

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def npz():
    return load_suite("npz")


# ---- parsing -----------------------------------------------------------------------------------
def test_parse_example_spec():
    sites = parse_sites("resid_post@0-17:region=ambiguous/last,mlp_out@3:token=-1", n_layers=18)
    assert len(sites) == 19
    assert sites[0] == Site(0, "resid_post", RegionPos("ambiguous", "last"))
    assert sites[17] == Site(17, "resid_post", RegionPos("ambiguous", "last"))
    assert sites[-1] == Site(3, "mlp_out", TokenPos(-1))


def test_parse_components_heads_wildcards_and_roundtrip():
    sites = parse_sites("attn_out|mlp_out@*:region=2+np/mean,head_out@1:token=0:head=1-2", 2, n_heads=4)
    assert Site(1, "mlp_out", RegionPos(2, "mean")) in sites
    assert Site(0, "attn_out", RegionPos("np", "mean")) in sites
    assert [s.head for s in sites if s.component == "head_out"] == [1, 2]
    assert len(sites) == 2 * 2 * 2 + 2
    for s in sites:  # str(site) is itself a spec
        assert parse_sites(str(s), 2, n_heads=4) == [s]
    allh = parse_sites("head_out@0", 2, n_heads=4)
    assert [s.head for s in allh] == [0, 1, 2, 3] and all(s.position is None for s in allh)
    star = parse_sites("resid_pre@0:region=*/first", 2, regions=[1, 4])
    assert [s.position for s in star] == [RegionPos(1, "first"), RegionPos(4, "first")]


@pytest.mark.parametrize(
    "spec, names",
    [
        ("resid_post", "missing '@LAYERS'"),
        ("resid_prx@0", "'resid_prx'"),
        ("resid_pre@0-40", "'0-40'"),
        ("resid_pre@3-1", "'3-1'"),
        ("resid_pre@x", "'x'"),
        ("resid_pre@0:region=np/middle", "'middle'"),
        ("resid_pre@0:token=last", "'last'"),
        ("resid_pre@0:place=2", "'place=2'"),
        ("resid_pre@0:region=*", "region=*"),
        ("resid_pre@0:head=1", "head="),
        ("resid_pre@0,,mlp_out@1", "empty entry"),
        ("", "empty site spec"),
    ],
)
def test_parse_errors_name_the_bad_part(spec, names):
    with pytest.raises(ConfigError) as exc:
        parse_sites(spec, n_layers=18)
    assert names in str(exc.value)


def test_site_validation():
    with pytest.raises(ConfigError, match="only head_out"):
        Site(0, "resid_pre", head=1)
    with pytest.raises(ConfigError, match="unknown component"):
        Site(0, "resid")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'which'"):
        RegionPos(2, "middle")  # type: ignore[arg-type]


# ---- positions -----------------------------------------------------------------------------------
def test_resolve_positions(tiny_model, npz):
    item = npz.items[0]
    amb = tokenize_condition(tiny_model, item.condition("ambiguous"))
    np_tokens = list(amb.tokens_of_region(4))
    assert resolve_positions(RegionPos("np"), amb, npz) == [np_tokens[-1]]
    assert resolve_positions(RegionPos("ambiguous", "first"), amb, npz) == [np_tokens[0]]
    assert resolve_positions(RegionPos(4, "all"), amb) == np_tokens
    assert resolve_positions(TokenPos(-1), amb) == [len(amb) - 1]
    assert resolve_positions(TokenPos(0), amb) == [0]
    mvrr = load_suite("mvrr")
    m_amb, m_unamb = (tokenize_condition(tiny_model, mvrr.items[0].condition(c)) for c in ("ambiguous", "unambiguous"))
    assert resolve_positions(RegionPos("cue", "all"), m_unamb, mvrr) == list(m_unamb.tokens_of_region(2))
    with pytest.raises(RegionError, match="empty"):
        resolve_positions(RegionPos("cue"), m_amb, mvrr)  # the cue exists only in the unambiguous version
    with pytest.raises(RegionError, match="pass the suite"):
        resolve_positions(RegionPos("np"), amb)
    with pytest.raises(RegionError, match="out of range"):
        resolve_positions(TokenPos(len(amb)), amb)
    with pytest.raises(RegionError, match="no region"):
        resolve_positions(RegionPos("nonsense"), amb, npz)

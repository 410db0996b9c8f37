"""Property tests for hostile spec strings: any site spec or intervention spec is parsed or refused with a
MechinterpError (one clear message), never another exception. (Companion of tests/test_hostile_inputs.py.)"""

from __future__ import annotations

import pytest

pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mechinterp.errors import MechinterpError  # noqa: E402
from mechinterp.interventions.spec import parse_spec  # noqa: E402
from mechinterp.locate.sites import parse_sites  # noqa: E402

SPEC_ALPHABET = "resid_postmlpatnhd@*:=,/|+-0123456789{}[]\"' .lastmeanalltokenregion"
SPEC_PIECES = st.sampled_from(["resid_post", "mlp_out", "attn_out", "head_out", "resid_pre", "@", "*", ":", "=",
                               ",", "/", "|", "+", "-", "region", "token", "head", "last", "mean", "all", "first",
                               "0", "1", "2", "99", "-1", "verb", "nope", " ", "{", "}", "[", "]", '"', "clamp",
                               "leace", "layer", "value", "kind", "parts"])
SPEC_TEXT = st.one_of(st.text(SPEC_ALPHABET, max_size=40), st.lists(SPEC_PIECES, max_size=12).map("".join))


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(SPEC_TEXT)
def test_site_specs_parse_or_refuse(spec):
    try:
        parse_sites(spec, n_layers=2, n_heads=4, regions=[1, 2, 3])
    except MechinterpError as exc:
        assert str(exc).strip()


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(SPEC_TEXT)
def test_intervention_specs_parse_or_refuse(spec):
    try:
        parse_spec(spec, files=False)
    except MechinterpError as exc:
        assert str(exc).strip()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 30) | st.floats(allow_nan=False) | st.text("abc:=,", max_size=5)
    | st.sampled_from(["clamp", "leace", "sae", "truncate", "resid_post", "last"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["kind", "parts", "layer", "layers", "name", "value", "site", "at"]), inner,
                      max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_intervention_json_parses_or_refuses(value):
    import json

    try:
        parse_spec(json.dumps(value), files=False)
    except MechinterpError as exc:
        assert str(exc).strip()

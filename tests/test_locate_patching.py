"""Activation patching: batched == one at a time, metrics, normalisation, alignment of versions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mechinterp.errors import ConfigError
from mechinterp.forward import logits, pad_batch
from mechinterp.locate.patching import (
    Patch,
    PatchConfig,
    aligned_positions,
    default_regions,
    make_pair,
    pair_context,
    parse_sweep,
    patch_one,
    patch_suite,
    run_patches,
)
from mechinterp.locate.sites import RegionPos, Site, TokenPos
from mechinterp.stimuli import load_suite
from mechinterp.surprisal import SurprisalConfig, suite_surprisal

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def subset(suite, n):
    d = suite.model_dump()
    return type(suite).model_validate({**d, "items": d["items"][:n]})


@pytest.fixture(scope="module")
def npz():
    return load_suite("npz")


@pytest.fixture(scope="module")
def mvrr():
    return load_suite("mvrr")


SWEEP = ("resid_pre|resid_mid|resid_post|attn_out|mlp_out@*:region=*/last,head_out@*:region=*/last,"
         "resid_pre@1:region=np/all,mlp_out@0:token=-3")


def _check_against_one_at_a_time(model, suite, item, sites, config, atol, n_check=24):
    """Every row of the batched sweep is computed; ``n_check`` of them per direction, spread over the sweep
    (all components, layers and positions), are recomputed one per full forward pass."""
    df = patch_suite(model, suite, sites, config, items=[item])
    ctx = pair_context(model, suite, item, sites, config)
    assert len(df) == len(ctx.planned) * len(config.directions)
    errs = []
    for direction in config.directions:
        base, source = ("corrupt", "clean") if direction == "clean_to_corrupt" else ("clean", "corrupt")
        sub = df[df.direction == direction].reset_index(drop=True)
        stride = max(1, len(ctx.planned) // n_check)
        for k, (p, (_, row)) in enumerate(zip(ctx.planned, sub.iterrows())):
            if k % stride:
                continue
            assert (row.layer, row.component, row.position) == (p.site.layer, p.site.component, p.label)
            one = patch_one(model, ctx.pair.version(base), ctx.pair.version(source), p.site,
                            ctx.positions(p, base), ctx.positions(p, source), ctx.specs[base])
            errs.append(abs(one - row.raw))
    assert max(errs) <= atol, max(errs)
    return df


@pytest.mark.parametrize("which", ["tiny_model", "tiny_gpt2"])
def test_batched_equals_one_at_a_time(which, request, npz):
    model = request.getfixturevalue(which)
    sites = parse_sweep(SWEEP.replace("np/all", "4/all"), model, npz)
    df = _check_against_one_at_a_time(model, npz, npz.items[0], sites, PatchConfig(rows_per_pass=16), atol=1e-5)
    assert df.raw.nunique() > 10  # the patches did something


def test_batched_equals_one_at_a_time_logprob_diff(tiny_model, mvrr):
    sites = parse_sweep("resid_pre|attn_out@*:region=*/last,head_out@1:region=rc_rest/last", tiny_model, mvrr)
    _check_against_one_at_a_time(tiny_model, mvrr, mvrr.items[1], sites,
                                 PatchConfig(metric="logprob_diff", rows_per_pass=5), atol=1e-5)


def test_rows_per_pass_does_not_change_results(tiny_model, npz):
    sites = parse_sweep(None, tiny_model, npz, heads=False)
    a = patch_suite(tiny_model, npz, sites, PatchConfig(rows_per_pass=1), items=npz.items[:1])
    b = patch_suite(tiny_model, npz, sites, PatchConfig(rows_per_pass=200), items=npz.items[:1])
    assert np.abs(a.raw.to_numpy() - b.raw.to_numpy()).max() <= 1e-5


def test_unpatched_values_match_surprisal_module(tiny_model, npz):
    """clean_value / corrupt_value are the disambiguating region's surprisal as mechinterp.surprisal
    computes it (an independent code path: full batched forward, word table)."""
    suite = subset(npz, 3)
    df = patch_suite(tiny_model, suite, parse_sweep("resid_pre@0:region=np/last", tiny_model, suite), PatchConfig())
    words = suite_surprisal(tiny_model, suite, SurprisalConfig())
    region = words[words.region == suite.ambiguity.disambiguating_region]
    want = region.groupby(["item", "condition"]).surprisal_bits.sum()
    for _, r in df.drop_duplicates("item").iterrows():
        item = r["item"]
        key = int(item) if want.index.get_level_values(0).dtype.kind in "iu" else item
        assert math.isclose(r.clean_value, want[(key, "unambiguous")], abs_tol=1e-4)
        assert math.isclose(r.corrupt_value, want[(key, "ambiguous")], abs_tol=1e-4)


def test_logprob_diff_metric_from_full_logits(tiny_model, mvrr):
    item = mvrr.items[0]
    cfg = PatchConfig(metric="logprob_diff")
    ctx = pair_context(tiny_model, mvrr, item, [Site(0, "resid_pre", RegionPos("verb"))], cfg)
    seq = ctx.pair.corrupt
    lp = torch.log_softmax(logits(tiny_model, pad_batch([seq.input_ids], 0))[0], -1)
    toks = list(seq.tokens_of_region(5))
    dot = tiny_model.tokenizer(".", add_special_tokens=False)["input_ids"][0]
    want = (sum(float(lp[t - 1, seq.input_ids[t]]) for t in toks) - float(lp[toks[0] - 1, dot])) / math.log(2)
    assert math.isclose(ctx.values["corrupt"], want, abs_tol=1e-4)
    with pytest.raises(ConfigError, match="one-token"):
        pair_context(tiny_model, mvrr, item, [], PatchConfig(metric="logprob_diff", alternative=" was raced"))
    lex = load_suite("lexcat")
    with pytest.raises(ConfigError, match="alternative"):
        pair_context(tiny_model, lex, lex.items[0], [], cfg)


def test_normalisation(tiny_model, npz):
    """0 = corrupt run, 1 = clean run, in both directions. Patching the final residual stream at the token
    that predicts a one-token disambiguator restores the clean value exactly (docs/science.md: trivially complete
    late); a position after the disambiguator cannot matter."""
    last = tiny_model.n_layers - 1
    sites = [Site(last, "resid_post", RegionPos("np")), Site(0, "resid_pre", TokenPos(-1))]
    one_token = [it for it in npz.items if len(make_pair(tiny_model, npz, it).corrupt.tokens_of_region(5)) == 1][:3]
    df = patch_suite(tiny_model, npz, sites, PatchConfig(), items=one_token)
    fin = df[df.component == "resid_post"].set_index("direction")
    assert np.allclose(fin.loc["clean_to_corrupt", "normalised"], 1.0, atol=1e-4)
    assert np.allclose(fin.loc["corrupt_to_clean", "normalised"], 0.0, atol=1e-4)
    assert np.allclose(fin.loc["clean_to_corrupt", "raw"], fin.loc["clean_to_corrupt", "clean_value"], atol=1e-4)
    after = df[df.component == "resid_pre"].set_index("direction")
    assert np.array_equal(after.loc["clean_to_corrupt", "normalised"], np.zeros(len(one_token)))
    assert np.allclose(after.loc["corrupt_to_clean", "normalised"], 1.0)
    r = df.iloc[0]
    assert math.isclose(r.normalised, (r.raw - r.corrupt_value) / (r.clean_value - r.corrupt_value))


def test_length_alignment(tiny_model, npz, mvrr):
    # MV/RR: "The horse (that was) raced past the barn fell": the cue is two extra words in the clean version
    pair = make_pair(tiny_model, mvrr, mvrr.items[0])
    n_cue = len(pair.clean) - len(pair.corrupt)
    assert n_cue == len(pair.clean.tokens_of_region(2)) > 0
    for region in ("subject", "verb", "rc_rest", "disambiguator"):
        cor, cle = aligned_positions(pair, RegionPos(region), mvrr)
        assert pair.corrupt.input_ids[cor[0]] == pair.clean.input_ids[cle[0]]
        assert cle[0] == cor[0] + (n_cue if region != "subject" else 0)
        assert cle == [pair.clean.last_token_of_region(mvrr.region_number(region))]
    cor, cle = aligned_positions(pair, RegionPos("rc_rest", "all"), mvrr)
    assert cle == list(pair.clean.tokens_of_region(4)) and len(cor) == len(cle)
    # the cue has no counterpart: skipped in both directions, and said so
    df = patch_suite(tiny_model, mvrr, [Site(0, "resid_pre", RegionPos("cue")), Site(0, "resid_pre", RegionPos("verb"))],
                     PatchConfig(), items=[mvrr.items[0]])
    assert set(df.position) == {"verb/last"} and len(df) == 2
    assert df.attrs["skipped"][0]["site"] == "resid_pre@0:region=cue/last"
    # NP/Z: the comma attaches to the verb's word ("hunted,"): verb/last is "hunted" in both versions
    p2 = make_pair(tiny_model, npz, npz.items[0])
    cor, cle = aligned_positions(p2, RegionPos("verb"), npz)
    tok = tiny_model.tokenizer.convert_ids_to_tokens
    assert tok(p2.clean.input_ids[cle[0]]) == tok(p2.corrupt.input_ids[cor[0]]) == "Ġhunted"
    assert tok(p2.clean.input_ids[p2.clean.last_token_of_region(2)]) == ","
    # TokenPos counts in the ambiguous version and maps through the alignment
    cor, cle = aligned_positions(pair, TokenPos(-1), mvrr)
    assert cor == [len(pair.corrupt) - 1] and cle == [len(pair.clean) - 1]


def test_sweep_parsing(tiny_model, npz, mvrr):
    assert default_regions(npz) == [1, 2, 4] and default_regions(mvrr) == [1, 3, 4]
    sites = parse_sweep(None, tiny_model, npz)
    assert len(sites) == 3 * tiny_model.n_layers * 3 + tiny_model.n_layers * tiny_model.n_heads * 3
    assert parse_sweep(None, tiny_model, npz, heads=False) == [s for s in sites if s.component != "head_out"]
    with pytest.raises(ConfigError, match="no position"):
        parse_sweep("resid_pre@0", tiny_model, npz)
    with pytest.raises(ConfigError, match="mean"):
        parse_sweep("resid_pre@0:region=np/mean", tiny_model, npz)
    with pytest.raises(ConfigError, match="unknown metric"):
        PatchConfig(metric="kl")  # type: ignore[arg-type]


def test_run_patches_with_no_effect_patch(tiny_model, npz):
    """Writing a site's own activation back changes nothing; rows of one pass are independent."""
    ctx = pair_context(tiny_model, npz, npz.items[0], [Site(1, "mlp_out", RegionPos("np"))], PatchConfig())
    base = ctx.acts.corrupt[Site(1, "mlp_out")]
    p = ctx.planned[0]
    same = Patch(Site(1, "mlp_out"), p.corrupt_positions, base[0, list(p.corrupt_positions)])
    other = Patch(Site(1, "mlp_out"), p.corrupt_positions, torch.zeros(1, tiny_model.d_model))
    got = run_patches(tiny_model, ctx.pair.corrupt.input_ids, [same, other, same], ctx.specs["corrupt"], 3)
    assert abs(got[0] - ctx.values["corrupt"]) < 1e-5 and abs(got[2] - ctx.values["corrupt"]) < 1e-5
    assert abs(got[1] - got[0]) > 1e-6


@pytest.mark.slow
def test_batched_equals_one_at_a_time_gemma(gemma, npz):
    sites = parse_sweep("resid_pre|attn_out|mlp_out@0+8+17:region=*/last,head_out@5:region=np/last", gemma, npz)
    df = _check_against_one_at_a_time(gemma, npz, npz.items[0], sites, PatchConfig(rows_per_pass=16), atol=1e-3)
    fin = df[(df.layer == 17) & (df.component == "mlp_out") & (df.position == "np/last")]
    assert set(fin.direction) == {"clean_to_corrupt", "corrupt_to_clean"}
    assert isinstance(df, pd.DataFrame)


def test_patch_command_and_report(tiny_dirs, tmp_path, capsys):
    from mechinterp.cli import main
    from mechinterp.provenance import read_provenance

    out, rep = tmp_path / "patch.csv", tmp_path / "patch.html"
    sweep = "resid_pre|mlp_out@*:region=*/last,head_out@1:region=np/last"
    assert main(["patch", "--model", str(tiny_dirs["llama"]), "--suite", "npz", "--items", "2", "--sweep", sweep,
                 "--out", str(out), "--report", str(rep), "--min-gap", "-1000"]) == 0
    df = pd.read_csv(out)
    n_sites = 2 * 2 * 3 + 4
    assert len(df) == 2 * n_sites * 2 * 2  # items x sites x directions x methods
    for col in ["suite", "construction", "item", "direction", "layer", "component", "head", "position", "metric",
                "raw", "normalised", "clean_value", "corrupt_value"]:
        assert col in df.columns
    assert set(df.position) == {"subordinator_subject/last", "verb/last", "np/last"}
    prov = read_provenance(out)
    assert prov["extra"]["attribution_vs_exact"][0]["n"] == len(df) // 2
    assert "attribution vs exact" in capsys.readouterr().out
    html = rep.read_text()
    assert "np/last" in html and "Plotly" in html and "Trivially complete late" in html
    # a gap threshold no item passes: the report says so and lists the gaps (the table is unchanged)
    assert main(["patch", "--model", str(tiny_dirs["llama"]), "--suite", "npz", "--items", "2", "--sweep", sweep,
                 "--out", str(out), "--report", str(rep), "--min-gap", "1000"]) == 0
    html = rep.read_text()
    assert "No item to average" in html and "above 1000.0 bits" in html and "Largest mean effects" not in html
    assert main(["patch", "--model", str(tiny_dirs["llama"]), "--suite", "npz", "--sweep", "resid_pre@0:region=np/mean",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "mean" in capsys.readouterr().err


def test_report_summary(tiny_model, npz):
    from mechinterp.locate.figures import item_gaps, summarise

    df = patch_suite(tiny_model, npz, parse_sweep("resid_pre@*:region=np/last", tiny_model, npz),
                     PatchConfig(), items=npz.items[:3])
    gaps = item_gaps(df, min_gap=-1e9)
    assert len(gaps) == 3 and gaps.used.all()
    s = summarise(df, min_gap=-1e9, n_boot=200)
    assert len(s) == 2 * tiny_model.n_layers  # directions x layers
    row = s.iloc[0]
    sub = df[(df.direction == row.direction) & (df.layer == row.layer)]
    assert math.isclose(row.normalised, sub.normalised.mean(), rel_tol=1e-9)
    assert row.ci_low <= row.normalised <= row.ci_high and row.n_items == 3
    assert summarise(df, min_gap=1e9).empty  # every item left out

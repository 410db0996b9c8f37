"""The memory ladder (mechinterp.compare.ladder) and its figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mechinterp.compare.figures import ladder_figure, write_ladder_report
from mechinterp.compare.humans import load_natural_stories
from mechinterp.compare.ladder import LadderStep, ladder_steps, ladder_summary, memory_ladder
from mechinterp.errors import ConfigError
from mechinterp.explore.demo import first_items
from mechinterp.lists import FULL, number_list
from mechinterp.stimuli import load_suite


@pytest.fixture(scope="module")
def classic3():
    return first_items(load_suite("sap:ClassicGP"), 1, per_construction=True)


@pytest.fixture(scope="module")
def corpus():
    return load_natural_stories().subset([1, 2, 3])


@pytest.fixture(scope="module")
def tiny_llama(tiny_dirs):
    """A tiny Llama of its own (other tests may run the shared one through the TransformerLens bridge)."""
    from mechinterp.models import load_model

    return load_model(str(tiny_dirs["llama"]), cached=False)


@pytest.fixture(scope="module")
def ladder(tiny_llama, classic3, corpus):
    tiny_model = tiny_llama
    steps = [LadderStep("original"), LadderStep("truncate", 200), LadderStep("truncate", FULL),
             LadderStep("truncate", 2), LadderStep("recency", 0.0), LadderStep("recency", 2.0),
             LadderStep("keynoise", 3.0, 2, 0)]
    return memory_ladder(tiny_model, classic3, corpus, steps, ns_words=25, n_folds=3, n_boot=50)


def test_step_grammar():
    assert number_list("2, 3,full,2", "--truncate", allow_full=True) == [2.0, 3.0, FULL]
    assert number_list("", "--recency") == [] and number_list(None, "--recency") == []
    steps = ladder_steps("2,full", "0,0.5", "1", distance=4, seed=3)
    assert [s.label for s in steps] == ["original", "truncate k=2", "truncate k=full", "recency lam=0",
                                        "recency lam=0.5", "keynoise sigma=1 d>4"]
    assert steps[-1].describe() == {"kind": "keynoise", "param": 1.0, "distance": 4, "seed": 3}
    assert steps[2].is_original and not steps[1].is_original
    for args, what in ((("2,x",), "not a number"), (("full",), None), ((None, "full"), "not a number"),
                       ((None, "-1"), "not a number"), (("2.5",), "whole number"), ((None, None, "nan"), "not a number")):
        if what is None:
            ladder_steps(*args)
            continue
        with pytest.raises(ConfigError, match=what):
            ladder_steps(*args)
    with pytest.raises(ConfigError):
        LadderStep("forget")  # type: ignore[arg-type]


def test_ladder_table_has_every_measure(ladder, classic3):
    steps = ladder.drop_duplicates("step")
    assert steps["label"].tolist() == ["original", "truncate k=200", "truncate k=full", "truncate k=2",
                                       "recency lam=0", "recency lam=2", "keynoise sigma=3 d>2"]
    assert len(ladder) == len(steps) * len(classic3.constructions) * 3
    for c in ("ns_perplexity", "ns_d_loglik", "ns_d_loglik_low", "ns_d_loglik_high", "effect_bits", "predicted_ms",
              "human_ms", "ratio", "item_r_all", "order_matches", "model"):
        assert c in ladder.columns, c
    assert (steps["ns_d_loglik_low"] <= steps["ns_d_loglik_high"]).all()
    assert set(ladder["roi"]) == {0, 1, 2} and set(ladder["construction"]) == set(classic3.constructions)


def test_full_context_and_zero_bias_equal_the_original_model(ladder):
    by = {lab: g.reset_index(drop=True) for lab, g in ladder.groupby("label", sort=False)}
    cols = ["ns_perplexity", "ns_d_loglik", "ns_d_loglik_low", "effect_bits", "effect_bits_low", "predicted_ms",
            "predicted_low", "ratio_high", "item_r", "item_r_low", "order_share"]
    orig = by["original"][cols].to_numpy(dtype=float)
    for same in ("truncate k=full", "recency lam=0"):
        np.testing.assert_allclose(by[same][cols].to_numpy(dtype=float), orig, rtol=0, atol=1e-5)
    # a k longer than every text is scored window by window (left-padded): the same up to float rounding
    np.testing.assert_allclose(by["truncate k=200"][cols[:3]].to_numpy(dtype=float), orig[:, :3], rtol=1e-3,
                               atol=1e-3)
    for other in ("truncate k=2", "recency lam=2", "keynoise sigma=3 d>2"):
        assert np.abs(by[other]["ns_perplexity"] - by["original"]["ns_perplexity"]).max() > 1e-3, other


def test_ladder_refuses_bad_settings(tiny_llama, classic3, corpus):
    tiny_model = tiny_llama
    for kw, what in (({"n_folds": 5}, "n_folds"), ({"ns_words": 0}, "ns_words")):
        with pytest.raises(ConfigError, match=what):
            memory_ladder(tiny_model, classic3, corpus, [LadderStep("truncate", 2)], **kw)
    with pytest.raises(ConfigError, match="repeat"):
        memory_ladder(tiny_model, classic3, corpus, [LadderStep("recency", 1), LadderStep("recency", 1)])


def test_figure_carries_both_models(ladder, tmp_path):
    other = ladder.assign(model="other-model", ns_perplexity=ladder["ns_perplexity"] * 2)
    fig = ladder_figure([ladder, other])
    names = [t.name for t in fig.data]
    assert len(names) == 2 * 4 and any(n.startswith("other-model") for n in names)
    assert fig.layout.xaxis.type == "log"
    trunc = next(t for t in fig.data if t.name.endswith("truncate") and not t.name.startswith("other"))
    assert list(trunc.text) == ["k=2", "k=200", "k=full"]  # sorted by k, full last
    assert np.allclose(ladder_figure(pd.concat([ladder, other])).data[0].x, fig.data[0].x)
    empty = ladder_figure(pd.DataFrame({"step": [0], "effect_bits": [1.0]}))
    assert not empty.data and "not a memory-ladder table" in empty.layout.annotations[0].text
    summary = ladder_summary(pd.concat([ladder, other]), roi=1)
    assert len(summary) == 14 and "NP/Z bits" in summary.columns
    path = write_ladder_report(pd.concat([ladder, other]), tmp_path / "ladder.html")
    assert "other-model" in path.read_text()


@pytest.mark.slow
def test_ladder_on_gemma(gemma, one_torch_thread):
    suite = first_items(load_suite("sap:ClassicGP"), 2, per_construction=True)
    table = memory_ladder(gemma, suite, load_natural_stories().subset([1, 2, 3, 4]), ladder_steps("3", "0.5"),
                          ns_words=40, n_folds=2, n_boot=50)
    steps = table.drop_duplicates("step").set_index("label")
    assert steps.loc["truncate k=3", "ns_perplexity"] > steps.loc["original", "ns_perplexity"]
    assert steps.loc["recency lam=0.5", "ns_perplexity"] > steps.loc["original", "ns_perplexity"]
    assert np.isfinite(table["effect_bits"]).all()

"""Features per reading: positions, the lexical baseline, statistics, attribution and ablation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import assert_no_hooks
from mechinterp.errors import SuiteError
from mechinterp.saes import features as F
from mechinterp.saes.load import load_sae
from mechinterp.stimuli import load_suite
from test_saes_load import perfect_sae


@pytest.fixture(scope="module")
def results(tiny_model, tmp_path_factory):
    sae = load_sae(perfect_sae(tmp_path_factory.mktemp("sae") / "p", tiny_model.d_model, layer=1))
    suites = [load_suite("npz").head(6), load_suite("mvrr").head(5)]
    cfg = F.FeatureConfig(n_permutations=500, ablate_top=2, batch_size=4, min_active_items=2)
    return sae, suites, cfg, F.suite_features(tiny_model, sae, suites, cfg)


def test_positions_and_windows(tiny_model):
    suite = load_suite("npz").head(1)  # While the man hunted(,) the deer ran into the thick woods.
    (pair,) = F._pairs(tiny_model, suite)
    dec = tiny_model.tokenizer.decode
    a, u = pair.seqs["ambiguous"], pair.seqs["unambiguous"]
    assert dec([a.input_ids[pair.positions["ambiguous"]["ambiguous"]]]).strip() == "deer"
    assert dec([a.input_ids[pair.positions["ambiguous"]["ambiguous_first"]]]).strip() == "the"
    assert dec([a.input_ids[pair.positions["ambiguous"]["pre_ambiguous"]]]).strip().endswith("ed")  # hunted
    assert dec([u.input_ids[pair.positions["unambiguous"]["pre_ambiguous"]]]).strip() == ","  # the cue
    w = pair.windows["ambiguous"]["from_ambiguous"]
    assert w.start == pair.positions["ambiguous"]["ambiguous_first"] and w.stop == pair.targets["ambiguous"][-1]
    assert pair.windows["unambiguous"]["all"].start == 1
    assert F._readings(suite) == ("object", "subject")


def test_suite_without_ambiguity_is_refused(tiny_model):
    suite = load_suite("npz").head(2).model_copy(update={"ambiguity": None})
    with pytest.raises(SuiteError, match="ambiguity annotation"):
        F._pairs(tiny_model, suite)


def test_classify_uses_the_lexical_baseline():
    rows = []
    for feat, (q, d, bp, bd) in enumerate([(0.01, 1.0, 0.01, 0.8),  # differs at the cue too: cue/lexical
                                           (0.01, 1.0, 0.60, 0.1),  # only at the ambiguous word: reading
                                           (0.01, -1.0, 0.01, 0.9),  # baseline goes the other way: reading
                                           (0.30, 1.0, 0.01, 0.9)]):  # not significant
        rows.append({"suite": "s", "construction": "c", "feature": feat, "position": "ambiguous", "q": q,
                     "mean_diff": d, "p": q, "cohen_dz": d})
        rows.append({"suite": "s", "construction": "c", "feature": feat, "position": "pre_ambiguous", "q": bp,
                     "mean_diff": bd, "p": bp, "cohen_dz": bd})
    out = F._classify(pd.DataFrame(rows), alpha=0.05)
    kinds = out[out["position"] == "ambiguous"].set_index("feature")["kind"].to_dict()
    assert kinds == {0: "cue/lexical", 1: "reading", 2: "reading", 3: "n.s."}
    assert set(out[out["position"] == "pre_ambiguous"]["kind"]) <= {"cue/lexical", "n.s."}


def test_feature_tables(results, tiny_model):
    sae, suites, cfg, res = results
    st = res.stats
    assert set(st["suite"]) == {"npz", "mvrr"}
    assert set(st["position"]) == {"ambiguous", "ambiguous_first", "pre_ambiguous"} - (
        set() if (st["suite"] == "npz").any() else {"ambiguous_first"})
    # mvrr's ambiguous region is a one-token verb: no separate first-token position
    assert "ambiguous_first" not in set(st[st["suite"] == "mvrr"]["position"]) or \
        st[(st["suite"] == "mvrr") & (st["position"] == "ambiguous_first")]["n_items"].max() >= 2
    g = st[(st["suite"] == "npz") & (st["position"] == "ambiguous")]
    assert (g["n_items"] == 6).all()
    np.testing.assert_allclose(g["mean_diff"], g["mean_ambiguous"] - g["mean_unambiguous"], atol=1e-5)
    assert ((g["q"] >= g["p"]) | g["q"].isna()).all()
    assert set(g["reading"]) <= {"object", "subject"}
    assert set(g["kind"]) <= {"reading", "cue/lexical", "n.s."}
    # activations at the ambiguous word equal the perfect SAE's relu(+-x) of the residual stream there
    acts = res.activations["npz"]["ambiguous"]["ambiguous"]
    assert acts.shape == (6, sae.d_sae) and (acts >= 0).all()
    assert res.effects.set_index("suite").loc["npz", "n_items"] == 6
    assert_no_hooks(tiny_model)


def test_perfect_sae_has_no_error_attribution(results):
    _, _, _, res = results
    eff = res.effects.set_index("suite")
    assert eff["error_attr_all_bits"].abs().max() < 1e-6
    a = res.attribution
    assert set(a["window"]) == {"from_ambiguous", "all"}
    top = a[a["ablation_effect_bits"].notna()]
    assert len(top) == 2 * 2  # ablate_top per suite
    assert (top["window"] == "from_ambiguous").all()


def test_ablation_matches_direct_intervention(results, tiny_model):
    """Zero-ablating latent j of the perfect SAE (relu(x_j)) in the window equals setting x_j to
    min(x_j, 0) there with a plain site write; the effect change must agree."""
    from mechinterp.forward import pad_batch
    from mechinterp.locate.hooks import write_site

    sae, suites, cfg, res = results
    pairs = F._pairs(tiny_model, suites[0])
    feat = int(res.attribution[(res.attribution["suite"] == "npz") & res.attribution["ablation_effect_bits"].notna()]
               ["feature"].iloc[0])
    got = res.attribution[(res.attribution["suite"] == "npz") & (res.attribution["feature"] == feat) &
                          (res.attribution["window"] == "from_ambiguous")]["ablation_effect_bits"].iloc[0]
    d = tiny_model.d_model
    j, sign = (feat, 1.0) if feat < d else (feat - d, -1.0)

    def surprisal(cond: str, ablate: bool) -> np.ndarray:
        out = []
        for p in pairs:
            seq = p.seqs[cond]
            win = list(p.windows[cond]["from_ambiguous"])

            def fn(x: torch.Tensor) -> torch.Tensor:
                y = x.clone()
                v = y[0, win, j]  # noqa: B023 (fn is used within this iteration)
                y[0, win, j] = v - sign * torch.relu(sign * v)  # noqa: B023
                return y

            b = pad_batch([seq.input_ids], tiny_model.pad_token_id)
            with torch.no_grad():
                if ablate:
                    with write_site(tiny_model, sae.site, fn):
                        lg = tiny_model.hf(input_ids=b.input_ids).logits
                else:
                    lg = tiny_model.hf(input_ids=b.input_ids).logits
            lp = torch.log_softmax(lg[0].float(), -1)
            out.append(-sum(float(lp[t - 1, seq.input_ids[t]]) for t in p.targets[cond]) / np.log(2))
        return np.array(out)

    want = ((surprisal("ambiguous", False) - surprisal("ambiguous", True))
            - (surprisal("unambiguous", False) - surprisal("unambiguous", True))).mean()
    assert got == pytest.approx(want, abs=1e-4)


def test_summary_and_coactivation_shapes(results):
    _, _, cfg, res = results
    if len(res.summary):
        assert set(res.summary["kind"]) <= {"reading", "cue/lexical"}
        assert res.summary.groupby(["suite", "reading"])["rank"].max().max() <= cfg.n_summary
    if len(res.coactivation):
        assert res.coactivation["frac_items_any_active_in_other"].between(0, 1).all()


def test_report_blocks_render(results, tmp_path):
    from mechinterp.reports.html import write_report
    from mechinterp.saes.figures import features_blocks

    _, _, cfg, res = results
    path = write_report(tmp_path / "r.html", "t", features_blocks(res, cfg))
    text = path.read_text()
    assert "<script src=" not in text and len(text) > 1_000_000  # plotly.js embedded, nothing fetched
    assert "lexical baseline" in text.lower()


def test_mixed_suite_is_analysed_per_construction(tiny_model, tmp_path):
    """Items of two constructions in one suite (same region layout): one analysis per construction, with
    each construction's readings."""
    npz, nps = load_suite("npz"), load_suite("nps")
    items = [it.model_copy(update={"construction": "NP/Z", "number": i}) for i, it in enumerate(npz.items[:3])]
    items += [it.model_copy(update={"construction": "NP/S", "number": 10 + i}) for i, it in enumerate(nps.items[:3])]
    mixed = npz.model_copy(update={"name": "mixed", "items": tuple(items)})
    sae = load_sae(perfect_sae(tmp_path / "p", tiny_model.d_model, layer=0))
    res = F.suite_features(tiny_model, sae, [mixed], F.FeatureConfig(n_permutations=100, attribution=False,
                                                                      min_active_items=1))
    assert set(res.effects["construction"]) == {"NP/Z", "NP/S"} and (res.effects["n_items"] == 3).all()
    readings = set(res.stats[res.stats["construction"] == "NP/S"]["reading"])
    assert readings <= {"direct_object", "complement_subject"} and readings
    assert set(res.activations) == {"mixed/NP/Z", "mixed/NP/S"}

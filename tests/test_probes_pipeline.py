"""One probe run end to end on the tiny random model (fast), and on a real model (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_no_hooks
from mechinterp.probes import ProbeArtifact, ProbeSettings, run_probes
from mechinterp.probes.lexical import content_words, suite_content_words
from mechinterp.stimuli import load_suite

FAST = ProbeSettings(n_per_class=20, folds=3, bootstrap=100, random_directions=1)


def test_run_probes_tables_and_artifacts(tiny_model, tmp_path):
    suite = load_suite("mvrr")
    res = run_probes(tiny_model, suite, layers=[1], settings=FAST, seed=0, show_progress=False)
    assert_no_hooks(tiny_model)
    m = res.metrics
    assert set(m.construction) == {"MV/RR"} and set(m.layer) == {1}
    measures = set(m.measure)
    assert {"accuracy", "accuracy_random_split", "control_accuracy", "selectivity", "random_direction_accuracy",
            "margin_over_pre", "margin_over_start", "transfer_accuracy"} <= measures
    assert set(m[m.measure == "accuracy"].position) == {"target", "pre", "start"}
    assert set(m[m.measure == "transfer_accuracy"].target_construction) == {"NP/Z", "NP/S", "LEX"}
    assert ((m.ci_low <= m.value + 1e-12) & (m.value <= m.ci_high + 1e-12)).all()
    # selectivity row = accuracy on the random split minus control accuracy
    g = m.set_index("measure").value
    assert g["selectivity"] == pytest.approx(g["accuracy_random_split"] - g["control_accuracy"])
    # readout: every item in both conditions, probabilities in [0, 1]
    r = res.readout
    assert len(r) == 2 * len(suite.items) and r.p_preferred.between(0, 1).all()
    assert set(r.region) == {suite.ambiguity.ambiguous_region}
    assert len(res.verdicts) == 1 and isinstance(res.verdicts.verdict.iloc[0], str)
    # training sentences used share no content word with the suite
    words = suite_content_words(suite)
    used = res.training[res.training.used & (res.training.construction == "MV/RR")]
    assert len(used) > 0
    assert all(not set(content_words(t)) & words for t in used.text)
    # the saved probe reproduces the readout
    (key, art), = res.artifacts.items()
    path = art.save(tmp_path / key)
    back = ProbeArtifact.load(path)
    assert back.site.layer == 1 and back.construction == "MV/RR"
    assert len(back.training["texts"]) == len(used)
    assert back.model["weights_sha256"] == tiny_model.weights_sha256


@pytest.mark.slow
def test_real_model_npz_probe_beats_its_controls(smollm2):
    """SmolLM2 at a middle layer: the NP/Z reading probe generalises to held-out lexical items well above
    the random-direction baseline and the first-token baseline."""
    suite = load_suite("npz")
    settings = ProbeSettings(n_per_class=80, bootstrap=300, random_directions=2, transfer=False)
    res = run_probes(smollm2, suite, layers=[12], settings=settings, seed=0, show_progress=False)
    assert_no_hooks(smollm2)
    m = res.metrics.set_index(["measure", "position"]).value
    assert m[("accuracy", "target")] > 0.8
    assert m[("accuracy", "target")] > m[("random_direction_accuracy", "target")] + 0.15
    assert m[("accuracy", "target")] > m[("accuracy", "start")] + 0.15
    v = res.verdicts.iloc[0]
    assert 0 <= v.p_ambiguous <= 1 and v.p_preferred_anchor > v.p_other_anchor
    assert np.isfinite(v.z)


def test_cli_probe_sentences_and_train(tiny_dirs, tmp_path, capsys):
    import pandas as pd

    from mechinterp.cli import main

    out = tmp_path / "npz.csv"
    assert main(["probe", "sentences", "--construction", "NP/Z", "--n-per-class", "20", "--suite", "npz",
                 "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df) == 40 and "used" in df and (out.parent / "npz.csv.provenance.json").exists()
    assert "single_word" in capsys.readouterr().out

    d = tmp_path / "run"
    assert main(["probe", "train", "--model", str(tiny_dirs["llama"]), "--suite", "lexcat", "--layers", "0+1",
                 "--n-per-class", "20", "--folds", "3", "--random-directions", "1", "--no-transfer",
                 "--out-dir", str(d)]) == 0
    best = pd.read_parquet(d / "best_sites.parquet")
    assert list(best.construction) == ["LEX"] and "verdict" in best
    assert len(list(d.glob("jobs/*/probes/LEX/resid_post-L0*/probe.json"))) == 2
    assert (d / "figures" / "readout_resid_post.html").exists()
    assert main(["probe", "train", "--model", str(tiny_dirs["llama"]), "--suite", "lexcat", "--layers", "0",
                 "--n-per-class", "3", "--out-dir", str(d)]) == 2  # a bad setting is an error, not a traceback

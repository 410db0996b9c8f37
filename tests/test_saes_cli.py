"""`mechinterp sae ...` end to end on the tiny model, and a short real training run on Gemma (slow)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import refused
from mechinterp.cli import main
from mechinterp.provenance import read_provenance
from mechinterp.saes.load import load_sae


@pytest.fixture(scope="module")
def sae_dir(tiny_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sae"
    rc = main(["sae", "train", "--model", str(tiny_dirs["llama"]), "--layer", "1", "--n-tokens", "1024",
               "--n-holdout-tokens", "128", "--width", "32", "--k", "4", "--steps", "6", "--batch-size", "128",
               "--sources", "templates", "--n-ce-docs", "4", "--out-dir", str(out),
               # options other than their defaults, each checked where the SAE records it
               "--component", "resid_mid", "--context-size", "24", "--dead-feature-window", "7",
               "--holdout-fraction", "0.2", "--lr", "0.002", "--lr-end-fraction", "0.5", "--lr-warm-up-steps", "2",
               "--model-batch-size", "64", "--seed", "5"])
    assert rc == 0
    return out


def test_train_writes_sae_lens_directory(sae_dir, capsys):
    from sae_lens import SAE

    assert {"cfg.json", "sae_weights.safetensors", "training.json", "quality.json", "quality.html",
            "top_examples.parquet"} <= {
        p.name for p in sae_dir.iterdir()}
    assert SAE.load_from_disk(sae_dir).cfg.d_sae == 32
    assert main(["sae", "quality", "--sae", str(sae_dir), "--report", str(sae_dir.parent / "q.html")]) == 0
    out = capsys.readouterr().out
    assert "FVE" in out and "recovered vs zero" in out
    assert "Latent firing frequency" in (sae_dir.parent / "q.html").read_text()


def test_train_options_reach_the_sae(sae_dir):
    """The non-default options the `sae_dir` fixture passes to `sae train`."""
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_mid"  # --component
    assert cfg["metadata"]["context_size"] == 24
    training = json.loads((sae_dir / "training.json").read_text())
    assert training["site"] == {"layer": 1, "component": "resid_mid"}
    config = training["provenance"]["config"]
    want = {"context_size": 24, "dead_feature_window": 7, "holdout_fraction": 0.2, "lr": 0.002,
            "lr_end_fraction": 0.5, "lr_warm_up_steps": 2, "model_batch_size": 64, "seed": 5}
    assert {k: config[k] for k in want} == want
    assert training["provenance"]["seed"] == 5


@pytest.mark.usefixtures("one_torch_thread")
def test_features_options(sae_dir, tiny_dirs, tiny_suites, tmp_path, capsys):
    base = ["sae", "features", "--model", str(tiny_dirs["llama"]), "--suite", str(tiny_suites["npz2"]),
            "--sae", str(sae_dir), "--permutations", "200", "--no-attribution", "--no-readings"]
    runs = {"a": ["--min-active", "1", "--alpha", "0.5", "--seed", "2", "--batch-size", "1"],
            "b": ["--min-active", "1"], "c": ["--component", "resid_post"]}
    tables = {}
    for name, extra in runs.items():
        assert main(base + ["--out", str(tmp_path / f"{name}.csv")] + extra) == 0
        tables[name] = pd.read_csv(tmp_path / f"{name}.csv")
    a, b, c = tables["a"], tables["b"], tables["c"]
    # --no-attribution, --no-readings: only the statistics (and summary) tables
    assert not list(tmp_path.glob("a.attribution.*")) and not list(tmp_path.glob("a.readings*"))
    # --min-active: with two items, only a threshold of 1 lets a feature be tested (default 3)
    assert b["tested"].all() and not c["tested"].any() and len(b) > 0
    # --batch-size does not change the activations; --seed changes the permutations' p-values
    key = ["position", "feature"]
    m = a.merge(b, on=key, suffixes=("_a", "_b"))
    assert len(m) == len(a) == len(b)
    assert (m["mean_ambiguous_a"] - m["mean_ambiguous_b"]).abs().max() < 1e-5
    assert ((m["p_a"] - m["p_b"]).abs() > 1e-9).any()
    prov = read_provenance(tmp_path / "a.csv")
    assert {k: prov["extra"]["feature_config"][k] for k in ("alpha", "batch_size", "seed", "min_active_items")} == \
        {"alpha": 0.5, "batch_size": 1, "seed": 2, "min_active_items": 1}
    # --component reads the SAE at another site of the same layer
    assert read_provenance(tmp_path / "c.csv")["extra"]["sae"]["component"] == "resid_post"
    assert prov["extra"]["sae"]["component"] == "resid_mid"
    assert set(map(tuple, c[key].to_numpy())) != set(map(tuple, b[key].to_numpy())) or \
        (c.set_index(key)["mean_ambiguous"] - b.set_index(key)["mean_ambiguous"]).abs().max() > 1e-4
    assert "alpha must be between 0 and 1" in refused(base + ["--out", str(tmp_path / "x.csv"), "--alpha", "1.5"],
                                                      capsys)
    assert "min_active_items" in refused(base + ["--out", str(tmp_path / "x.csv"), "--min-active", "0"], capsys)


@pytest.mark.usefixtures("one_torch_thread")
def test_card_options(sae_dir, tiny_model, tiny_dirs, tiny_suites, tmp_path, capsys, monkeypatch):
    import mechinterp.cli.sae as sae_cli
    import mechinterp.saes.cards as cards

    # an SAE without stored top examples: the card scans --n-docs documents of --sources at --context-size
    bare = tmp_path / "bare"
    shutil.copytree(sae_dir, bare)
    (bare / "top_examples.parquet").unlink()
    scans, built = [], []
    real_scan, real_build = cards.corpus_activations, sae_cli.build_card

    def scan(model, corpus, idx, *args, **kwargs):
        scans.append((len(idx), kwargs["context_size"], corpus.identity()["sources"][0]["name"]))
        return real_scan(model, corpus, idx, *args, **kwargs)

    def build(*args, **kwargs):
        built.append(real_build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(cards, "corpus_activations", scan)
    monkeypatch.setattr(sae_cli, "build_card", build)
    vec = np.random.default_rng(0).normal(size=tiny_model.d_model).astype(np.float32)
    np.save(tmp_path / "dir.npy", vec)
    sentence = "While the man hunted the deer ran into the woods."
    base = ["sae", "card", "--model", str(tiny_dirs["llama"]), "--sae", str(bare), "--feature", "3",
            "--suite", str(tiny_suites["npz2"]), "--report", str(tmp_path / "card.html")]
    assert main(base + ["--n-docs", "20", "--sources", "templates", "--context-size", "8", "--n-top", "2",
                        "--n-top-tokens", "3", "--sentence", sentence, "--probe", str(tmp_path / "dir.npy"),
                        "--out", str(tmp_path / "card.csv")]) == 0
    assert scans == [(20, 8, "templates")]
    table = pd.read_csv(tmp_path / "card.csv")
    training = table[table["source"] == "training"]
    assert len(training) <= 2 and len(table[table["source"] == "stimuli"]) <= 2
    assert training["where"].str.contains("scan of 20 documents").all()
    card = built[0]
    assert len(card.top_tokens) == 3
    assert card.sentence == sentence and sentence in (tmp_path / "card.html").read_text()
    d = load_sae(bare).decoder_directions[3].numpy()
    cos = float(np.dot(d, vec) / np.linalg.norm(d) / np.linalg.norm(vec))
    assert card.probe_cosines["probe"].tolist() == ["dir"]
    assert card.probe_cosines["cosine"].iloc[0] == pytest.approx(cos, abs=1e-5)
    assert "unknown corpus source" in refused(base + ["--sources", "nonsense"], capsys)


def test_features_and_card(sae_dir, tiny_dirs, tmp_path, capsys):
    table = tmp_path / "feat.csv"
    rc = main(["sae", "features", "--model", str(tiny_dirs["llama"]), "--suite", "npz", "--sae", str(sae_dir),
               "--permutations", "200", "--ablate-top", "1", "--out", str(table), "--report", str(tmp_path / "f.html")])
    assert rc == 0
    df = pd.read_csv(table)
    assert {"feature", "position", "cohen_dz", "p", "q", "kind", "reading", "baseline_p"} <= set(df.columns)
    attr = pd.read_csv(tmp_path / "feat.attribution.csv")
    assert {"attr_effect_bits", "ablation_effect_bits", "window"} <= set(attr.columns)
    prov = json.loads((tmp_path / "feat.csv.provenance.json").read_text())
    assert prov["extra"]["sae"]["d_sae"] == 32 and prov["suite"]["name"] == "npz"
    on = pd.read_csv(tmp_path / "feat.readings_on_stimuli.csv")
    assert set(on["suite"]) == {"npz"} and set(on["construction"]) == {"NP/Z"}
    assert (tmp_path / "feat.readings.csv.provenance.json").exists()
    feat = int(pd.read_parquet(sae_dir / "top_examples.parquet")["feature"].iloc[0])
    rc = main(["sae", "card", "--model", str(tiny_dirs["llama"]), "--sae", str(sae_dir), "--feature", str(feat),
               "--suite", "npz", "--report", str(tmp_path / "card.html"), "--out", str(tmp_path / "card.csv")])
    assert rc == 0
    assert "Top contexts in the stimuli" in (tmp_path / "card.html").read_text()
    assert set(pd.read_csv(tmp_path / "card.csv")["source"]) <= {"training", "stimuli"}


def test_cli_errors(tmp_path, tiny_dirs, capsys):
    assert main(["sae", "quality", "--sae", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["sae", "train", "--model", str(tiny_dirs["llama"]), "--layer", "0", "--width", "4", "--k", "8",
                 "--sources", "templates", "--out-dir", str(tmp_path / "s")]) == 2
    assert "larger than the SAE width" in capsys.readouterr().err
    assert main(["sae", "corpus", "--sources", "nonsense"]) == 2
    assert "unknown corpus source" in capsys.readouterr().err


@pytest.mark.slow
def test_gemma_short_training(gemma, tmp_path):
    """A few thousand Gemma tokens: BOS left out, centring keeps latents alive, spliced CE is sane."""
    from mechinterp.saes.corpus import template_corpus
    from mechinterp.saes.train import TrainConfig, train_sae

    corpus = template_corpus(1500)
    cfg = TrainConfig(layer=4, n_tokens=4096, n_holdout_tokens=512, d_sae=256, k=16, steps=40, batch_size=256,
                      holdout_fraction=0.1, sources=("templates",))
    res = train_sae(gemma, corpus, cfg, tmp_path / "g", n_ce_docs=8, n_examples=3)
    h, s = res.quality["heldout"], res.quality["spliced"]
    assert h["l0"] == pytest.approx(16, abs=0.01)
    assert h["fve"] > 0.3  # the massive dimensions are centred away; without centring this is near 0
    assert h["dead_fraction"] < 0.7
    # a 40-step SAE on short template sentences can land slightly below the clean CE by chance (seen in CI:
    # 6.78 against 7.01 nats), so the ordering is checked on the KL from the clean distribution, which cannot
    # go below 0, and on CE only against ablation
    assert 0 < s["kl_sae"] < min(s["kl_mean"], s["kl_zero"])
    assert s["ce_sae"] < s["ce_zero"]
    assert res.sae.training["data_mean_norm"] > 100  # Gemma's residual mean is huge: the reason for centring

    # features on Gemma: the spliced surprisal of the disambiguator equals `suite_surprisal` (checks the
    # logits-only-where-needed path with Gemma's head), and the tables come out
    from mechinterp.saes.features import FeatureConfig, suite_features
    from mechinterp.stimuli import load_suite
    from mechinterp.surprisal import suite_surprisal

    suite = load_suite("npz")
    suite = suite.head(3)
    out = suite_features(gemma, res.sae, [suite], FeatureConfig(n_permutations=100, ablate_top=1, min_active_items=1))
    words = suite_surprisal(gemma, suite, show_progress=False)
    assert suite.ambiguity is not None
    dis = words[words["region"] == suite.ambiguity.disambiguating_region]
    eff = dis.pivot_table(index="item", columns="condition", values="surprisal_bits", aggfunc="sum")
    want = float((eff["ambiguous"] - eff["unambiguous"]).mean())
    assert out.effects["effect_bits"].iloc[0] == pytest.approx(want, abs=1e-3)
    assert out.attribution is not None
    assert len(out.stats) > 0 and int(out.attribution["ablation_effect_bits"].notna().sum()) == 1

    # features of each reading from generated sentences, on Gemma: even this 40-step SAE separates the MV/RR
    # readings at layer 4 (NP/Z needs a real SAE: its reading features are weak, see the issue notes)
    from mechinterp.saes.readings import ReadingFeatureConfig, reading_features

    mvrr = load_suite("mvrr")
    mvrr = mvrr.head(3)
    rf = reading_features(gemma, res.sae, mvrr, ReadingFeatureConfig(n_per_class=40, n_permutations=2000))
    sig = rf.stats[rf.stats["significant"]]
    assert set(sig["reading"]) == {"main_verb", "reduced_relative"}
    assert len(rf.on_stimuli) == 4 and bool((rf.on_stimuli["n_items"] == 3).all())

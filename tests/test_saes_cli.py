"""`mechinterp sae ...` end to end on the tiny model, and a short real training run on Gemma (slow)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mechinterp.cli import main


@pytest.fixture(scope="module")
def sae_dir(tiny_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sae"
    rc = main(["sae", "train", "--model", str(tiny_dirs["llama"]), "--layer", "1", "--n-tokens", "1024",
               "--n-holdout-tokens", "128", "--width", "32", "--k", "4", "--steps", "6", "--batch-size", "128",
               "--sources", "templates", "--n-ce-docs", "4", "--out-dir", str(out)])
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
    dis = words[words["region"] == suite.ambiguity.disambiguating_region]
    eff = dis.pivot_table(index="item", columns="condition", values="surprisal_bits", aggfunc="sum")
    want = float((eff["ambiguous"] - eff["unambiguous"]).mean())
    assert out.effects["effect_bits"].iloc[0] == pytest.approx(want, abs=1e-3)
    assert len(out.stats) > 0 and out.attribution["ablation_effect_bits"].notna().sum() == 1

    # features of each reading from generated sentences, on Gemma: even this 40-step SAE separates the MV/RR
    # readings at layer 4 (NP/Z needs a real SAE: its reading features are weak, see the issue notes)
    from mechinterp.saes.readings import ReadingFeatureConfig, reading_features

    mvrr = load_suite("mvrr")
    mvrr = mvrr.head(3)
    rf = reading_features(gemma, res.sae, mvrr, ReadingFeatureConfig(n_per_class=40, n_permutations=2000))
    sig = rf.stats[rf.stats["significant"]]
    assert set(sig["reading"]) == {"main_verb", "reduced_relative"}
    assert len(rf.on_stimuli) == 4 and (rf.on_stimuli["n_items"] == 3).all()

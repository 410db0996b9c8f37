"""`mechinterp demo`: the whole question (effects, patching, probes, collapse, human comparison) in one report."""

from __future__ import annotations

from html import unescape

import pandas as pd
import pytest

from conftest import refused
from mechinterp.cli import main
from mechinterp.provenance import read_provenance
from mechinterp.reports.workbench import QUESTIONS

PARTS = ["1. Garden-path effects", "2. Where: patching", "3. Which reading: probes", "4. Forcing one reading",
         "5. Against people"]
TABLES = ["effects.csv", "item_effects.csv", "words.parquet", "patch.parquet", "patch_summary.csv",
          "probe_verdicts.csv", "collapse.parquet", "collapse.side_effects.csv", "compare.csv", "summary.csv"]


def _check(out):
    html = (out / "report.html").read_text()
    for part in PARTS:
        assert part in html, part
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["key"]) == list(QUESTIONS)
    for answer in summary["answer"]:
        assert answer in unescape(html)
    for name in TABLES:
        assert (out / name).exists(), name
        assert read_provenance(out / name)["model"]["weights_sha256"]
    # plotly.js is embedded in the page, never fetched: no external <script src=...>
    assert "<script src=" not in html.replace('<script src="data:', "") and "Plotly.newPlot" in html
    return html, summary


def test_demo_writes_one_report_with_five_parts_and_summary(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(tiny_dirs["llama"]), "--quick", "--items", "2", "--suite", "npz",
                 "--probe-layers", "0+1", "--ns-stories", "1", "--ns-words", "30", "--out-dir", str(out)]) == 0
    _, summary = _check(out)
    # the summary is computed from the tables: the probe sentence names the verdicts written there
    verdicts = pd.read_csv(out / "probe_verdicts.csv")
    hold = summary.set_index("key").loc["hold", "answer"]
    assert all(v in hold for v in verdicts["verdict"].unique())
    side = pd.read_csv(out / "collapse.side_effects.csv")
    assert set(side["intervention"]) == {"original", "commit"}
    assert side["ns_perplexity_scoped_ratio"].notna().all() and side["ns_kl_scoped_nats"].notna().all()
    assert "commit=clamp:layer=" in read_provenance(out / "summary.csv")["extra"]["intervention"]
    assert "[5/6]" in capsys.readouterr().err
    # no effect of the intervention is reported without its efficacy: the sentence opens with the reading
    # probabilities before and after, taken from the efficacy table written beside it
    eff = pd.read_csv(out / "collapse.efficacy.csv")
    forced = summary.set_index("key").loc["forced", "answer"]
    assert forced.startswith("Efficacy first:")
    row = eff[(eff["intervention"] == "commit") & (eff["condition"] == "ambiguous")].iloc[0]
    assert f"{row.p_dispreferred_original:.2f} \u2192 {row.p_dispreferred:.2f}" in forced
    assert "only on the noun phrases right after a verb" in forced  # the scoped side effect beside the other


@pytest.mark.slow
def test_demo_on_default_model_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--suite", "npz", "--suite", "nps", "--out-dir", str(out)]) == 0
    _check(out)
    eff = pd.read_csv(out / "effects.csv")
    assert set(eff["construction"]) == {"NP/Z", "NP/S"}
    assert bool((eff[eff["roi"] == 0]["effect_bits"] > 0).all())


@pytest.mark.usefixtures("one_torch_thread")
def test_demo_options_reach_their_stages(tiny_dirs, tiny_suites, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--model", str(tiny_dirs["llama"]), "--quick", "--items", "1", "--suite", str(tiny_suites["npz2"]),
            "--focus", str(tiny_suites["mvrr2"]), "--compare-suite", str(tiny_suites["npz2"]), "--probe-layers", "1",
            "--ns-stories", "1", "--ns-words", "20", "--out-dir", str(out)]
    line = refused(argv + ["--probe-sentences", "5"], capsys)  # refused before any work, naming the limit
    assert "--probe-sentences 5" in line and "10" in line and not out.exists()
    # a comparison suite whose constructions have no published human effects: refused before any work
    line = refused([*argv[:argv.index("--compare-suite") + 1], "sap:RelativeClause",
                    *argv[argv.index("--compare-suite") + 2:]], capsys)
    assert "items_RelativeClause" in line and "no effects for its constructions" in line and not out.exists()
    assert main(argv + ["--probe-sentences", "10", "--n-boot", "20", "--seed", "3",
                        "--intervention", "k3=truncate:k=3"]) == 0
    # --focus: patching and probes on MV/RR (default NP/Z)
    assert set(pd.read_parquet(out / "patch.parquet")["construction"]) == {"MV/RR"}
    assert set(pd.read_parquet(out / "probe_readout.parquet")["construction"]) == {"MV/RR"}
    # --compare-suite: collapse and comparison on its first item (default: SAP ClassicGP, three constructions)
    col = pd.read_parquet(out / "collapse.parquet")
    assert set(col["construction"]) == {"NP/Z"} and set(col["item"]) == {1}
    assert read_provenance(out / "compare.csv")["suite"]["source"] == str(tiny_suites["npz2"])
    assert read_provenance(out / "compare.csv")["extra"]["human_source"].endswith("subset ClassicGP")
    # --intervention replaces the default clamp
    assert set(pd.read_csv(out / "collapse.side_effects.csv")["intervention"]) == {"original", "k3"}
    prov = read_provenance(out / "summary.csv")
    assert prov["extra"]["intervention"] == "k3=truncate:k=3"
    # --probe-sentences, --n-boot and --seed reach the stages' settings and provenance
    probes = read_provenance(out / "probe_verdicts.csv")
    settings = probes["extra"]["probe_settings"]
    assert settings["n_per_class"] == 10 and settings["bootstrap"] == 100  # max(100, --n-boot); --quick's is 200
    assert prov["config"]["n_boot"] == 20 and prov["seed"] == 3

"""The Streamlit explorer: every page under Streamlit's AppTest (tiny random model, demo results written by the
same functions the CLI uses), bad input shown as messages, and the library helpers behind the pages."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import NATURAL_STORIES, SAP_DIR
from mechinterp.errors import ConfigError, RegionError
from mechinterp.explore import compute, inputs
from mechinterp.explore.demo import build_demo
from mechinterp.explore.results import classify, read_kind, scan
from mechinterp.stimuli import load_suite

APP = Path(__file__).resolve().parents[1] / "apps" / "explorer.py"
PAGES = ["sentence", "probes", "patching", "saes", "collapse", "humans", "predictors", "results"]


# ---- fixtures -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def demo_results(tiny_model, tmp_path_factory) -> Path:
    """Demo results of the tiny model (built once per session; test_browser.py reuses the same directory)."""
    root = tmp_path_factory.getbasetemp() / "explorer-demo"
    ns = NATURAL_STORIES
    return build_demo(tiny_model, root, naturalstories=ns)


@pytest.fixture
def app(tiny_dirs, demo_results, monkeypatch, tmp_path):
    """A fresh AppTest of the explorer on the tiny model and the demo results, already run once (the test's
    ``tmp_path`` is an allowed folder)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MECHINTERP_EXPLORER_MODEL", str(tiny_dirs["llama"]))
    monkeypatch.setenv("MECHINTERP_EXPLORER_RESULTS", str(demo_results))
    monkeypatch.setenv("MECHINTERP_EXPLORER_SUITE", "npz")
    monkeypatch.setenv("MECHINTERP_EXPLORER_ALLOW", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.run()
    return at


def page(at, name: str):
    at.switch_page(f"explorer_pages/{name}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def messages(at) -> str:
    return " | ".join(e.value for e in list(at.error) + list(at.warning) + list(at.info))


def no_errors(at) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def chart_spec(at, key: str) -> dict:
    el = next(c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id)
    return json.loads(el.proto.spec)


def arr(v) -> np.ndarray:
    """A plotly JSON array: a list, or the typed-array form {"dtype", "bdata", "shape"}."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape:
            a = a.reshape([int(x) for x in str(shape).split(",")])
        return a.astype(float)
    return np.array(v, dtype=float)


# ---- pages --------------------------------------------------------------------------------------------------
def test_sentence_page_shows_surprisal_entropy_and_effects(app, tiny_model):
    no_errors(app)
    suite = load_suite("npz")
    item = suite.items[0]
    words = compute.item_words(tiny_model, suite, item)
    eff = compute.item_effects(words, suite, item)
    metrics = {m.label: m.value for m in app.metric}
    for _, r in eff.iterrows():
        assert metrics[f"Effect at ROI {int(r['roi'])} ({r['word']})"] == f"{r['effect_bits']:+.2f} bits"
    table = next(d.value for d in app.dataframe if "entropy_bits" in d.value.columns)
    assert np.allclose(table["surprisal_bits"], words["surprisal_bits"]) and np.allclose(table["entropy_bits"],
                                                                                          words["entropy_bits"])
    assert "This item among the suite (saved effects)" in [s.value for s in app.subheader]
    # the disambiguating word is red, the ambiguous words orange
    spec = chart_spec(app, "surprisal_fig")
    colours = spec["data"][0]["marker"]["color"]
    amb = words[words["condition"] == "ambiguous"].sort_values("word_index")
    assert [c == "#d62728" for c in colours] == list(amb["region"] == suite.ambiguity.disambiguating_region)
    assert [c == "#ff9f1c" for c in colours] == list(amb["region"] == suite.ambiguity.ambiguous_region)


def test_picking_another_item_changes_the_page(app):
    app.sidebar.selectbox(key="item").set_value("5").run()
    no_errors(app)
    assert "soup" in " ".join(m.value for m in app.markdown)
    assert any("boiled" in m.label for m in app.metric)


def test_probes_page_applies_saved_probes(app, tiny_model, demo_results):
    page(app, "probes")
    no_errors(app)
    assert "Verdicts for NP/Z (saved)" in [s.value for s in app.subheader]
    # the on-demand curve equals the readout the sweep saved for item 1
    spec = chart_spec(app, "probe_fig")
    got = {t["name"]: t["y"] for t in spec["data"] if t.get("mode") == "lines+markers"}
    readout = pd.read_parquet(demo_results / "sweeps" / "demo" / "readout.parquet")
    r = readout[readout["item"].astype(str) == "1"]
    for cond in ("ambiguous", "unambiguous"):
        saved = r[r["condition"] == cond].sort_values("layer")["p_preferred"].to_numpy()
        assert np.allclose(arr(got[cond]), saved, atol=1e-5)


def test_probes_page_without_probes_says_so(app, tmp_path):
    app.sidebar.text_input(key="results").input(str(tmp_path)).run()
    page(app, "probes")
    assert "No saved reading probes" in messages(app)
    assert not app.exception


def test_patching_page_saved_and_on_demand_agree(app, demo_results):
    page(app, "patching")
    no_errors(app)
    assert [s.value for s in app.subheader][:2] == ["Saved", "Run on demand"]
    saved = chart_spec(app, "heat_saved")["data"][0]
    app.button(key="run_patch").click().run()
    no_errors(app)
    live = chart_spec(app, "heat_live")["data"][0]
    assert saved["x"] == live["x"] and np.allclose(arr(saved["y"]), arr(live["y"]))
    assert np.allclose(arr(saved["z"]), arr(live["z"]), atol=1e-4, equal_nan=True)
    table = pd.read_parquet(demo_results / "patch.parquet")
    grid = compute.patching_grid(table[table["item"].astype(str) == "1"], "clean_to_corrupt", "resid_pre")
    assert np.allclose(grid.to_numpy(), arr(saved["z"]), atol=1e-6, equal_nan=True)


def test_saes_page_shows_feature_activations(app, tiny_model, demo_results):
    page(app, "saes")
    no_errors(app)
    app.slider(key="sae_n").set_value(4).run()
    no_errors(app)
    ranking = app.dataframe[0].value
    assert 1 <= len(ranking) <= 4 and {"feature", "score", "at_ambiguous_ambiguous"} <= set(ranking.columns)
    assert sum(1 for c in app.get("plotly_chart") if "sae_" in c.proto.id) == 2  # one heatmap per condition
    from mechinterp.saes.load import load_sae

    suite = load_suite("npz")
    res = compute.sae_item_activations(tiny_model, load_sae(demo_results / "sae"), suite, suite.items[0], 4)
    assert ranking["feature"].tolist() == res.ranking["feature"].tolist()
    assert (res.ranking["score"].diff().dropna() <= 1e-9).all()  # sorted by how much the conditions differ


def test_collapse_page_switches_an_intervention_on(app, tiny_model):
    page(app, "collapse")
    no_errors(app)
    assert "intervention is off" in messages(app)
    app.selectbox(key="iv_kind").set_value("truncate").run()
    app.slider(key="iv_k").set_value(2).run()
    app.toggle(key="iv_on").set_value(True).run()
    no_errors(app)
    assert "truncate:k=2" in " ".join(s.value for s in app.success)
    from mechinterp.interventions.truncation import Truncation

    suite = load_suite("npz")
    item = suite.items[0]
    base = compute.item_effects(compute.item_words(tiny_model, suite, item), suite, item)
    trunc = compute.item_effects(compute.item_words(tiny_model, suite, item, Truncation(2)), suite, item)
    metrics = {m.label: (m.value, m.delta) for m in app.metric}
    for (_, a), (_, b) in zip(base.iterrows(), trunc.iterrows()):
        value, delta = metrics[f"Effect at ROI {int(a['roi'])} ({a['word']})"]
        assert value == f"{b['effect_bits']:+.2f} bits"
        assert delta == f"{b['effect_bits'] - a['effect_bits']:+.2f} bits vs original"
    # the intervention stays on when another page is shown and the user comes back
    page(app, "humans")
    assert any("intervention: truncate:k=2" in c for d in app.dataframe for c in map(str, d.value.columns))
    page(app, "collapse")
    assert app.toggle(key="iv_on").value is True


def test_collapse_page_fits_on_readings(app, tiny_model):
    """By default the page commits the model to the preferred reading (fit on the generated sentences) and shows
    P(dispreferred) before and after; choosing the minimal pairs switches the targets to the conditions."""
    page(app, "collapse")
    assert app.selectbox(key="iv_kind").value == "clamp"
    assert app.selectbox(key="iv_fit").value == "readings"
    assert app.selectbox(key="iv_target").options == ["preferred", "dispreferred"]
    assert app.selectbox(key="iv_target").value == "preferred"
    suite = load_suite("npz")
    item = suite.items[0]
    before = compute.reading_shift(compute.item_readings(tiny_model, suite, item))
    p_amb = before.loc[before["ambiguous"], "P(dispreferred)"].iloc[0]
    label = f"P(dispreferred reading), {suite.ambiguity.ambiguous_condition}"
    assert {m.label: m.value for m in app.metric}[label] == f"{p_amb:.3f}"  # off: the original model
    app.toggle(key="iv_on").set_value(True).run()
    no_errors(app)
    shown = " ".join(s.value for s in app.success)
    assert "target=preferred" in shown and "fit=readings" in shown
    assert len(app.metric) == 4  # the reading metric and the effect at ROIs 0-2
    spec = next(s.value for s in app.success).split("`")[1]
    from mechinterp.interventions.spec import fit_intervention

    after = compute.reading_shift(compute.item_readings(tiny_model, suite, item),
                                  compute.item_readings(tiny_model, suite, item, fit_intervention(tiny_model, spec, suite)))
    row = after[after["ambiguous"]].iloc[0]
    metric = next(m for m in app.metric if m.label == label)
    assert metric.value == f"{row['P(dispreferred) after']:.3f}"
    assert metric.delta == f"x{row['dispreferred factor']:.2f} vs original"
    app.toggle(key="iv_on").set_value(False).run()
    app.selectbox(key="iv_fit").set_value("pairs").run()
    assert app.selectbox(key="iv_target").value in ("unambiguous", "ambiguous")


def test_humans_page_compares_with_sap(app, demo_results):
    page(app, "humans")
    no_errors(app)
    spec = chart_spec(app, "human_fig")
    names = [t["name"] for t in spec["data"]]
    assert names[0] == "humans (SAP Benchmark)"
    human = compute.human_effects("NP/Z")
    h = human[human["source"] == "human"].sort_values("roi")
    assert np.allclose(arr(spec["data"][0]["y"]), h["effect"])
    if (demo_results / "link.json").exists():  # a saved link: the item's predicted ms is drawn too
        assert any(n.endswith(": original") for n in names)
        assert "Saved comparison for the suite" in [s.value for s in app.subheader]


def test_results_page_lists_what_was_found(app, demo_results):
    page(app, "results")
    no_errors(app)
    found = app.dataframe[0].value
    whats = set(found["what"])
    assert {"table: patching", "table: words", "table: item_effects", "SAE", "sweep store", "probe"} <= whats


def test_lexcat_and_sap_suites_load(app):
    app.sidebar.selectbox(key="suite").set_value("lexcat").run()
    no_errors(app)
    assert app.metric
    assert "SAP ClassicGP" in app.sidebar.selectbox(key="suite").options
    app.sidebar.selectbox(key="suite").set_value("sap:ClassicGP").run()
    no_errors(app)
    assert app.sidebar.selectbox(key="item").value.startswith(("MV/RR:", "NP/S:", "NP/Z:"))


# ---- typed sentences and bad input --------------------------------------------------------------------------
def typed(at, sentence: str, amb: str = "", dis: str = "", control: str = "", construction: str = "NP/Z"):
    at.sidebar.radio(key="source").set_value("Typed sentence").run()
    at.sidebar.text_area(key="sentence").input(sentence)
    at.sidebar.text_input(key="ambiguous_words").input(amb)
    at.sidebar.text_input(key="disambiguating_words").input(dis)
    at.sidebar.text_area(key="control").input(control)
    at.sidebar.selectbox(key="construction").set_value(construction)
    at.run()
    return at


def test_typed_sentence_pair_gets_effects(app, tiny_model):
    typed(app, "While the man hunted the deer ran into the woods.", "the deer", "ran",
          "While the man hunted, the deer ran into the woods.")
    no_errors(app)
    suite = inputs.custom_suite("While the man hunted the deer ran into the woods.", "ran", "the deer",
                                "While the man hunted, the deer ran into the woods.", "NP/Z")
    eff = compute.item_effects(compute.item_words(tiny_model, suite, suite.items[0]), suite, suite.items[0])
    assert {m.label: m.value for m in app.metric}["Effect at ROI 0 (ran)"] == f"{eff['effect_bits'].iloc[0]:+.2f} bits"
    for name in ("probes", "patching", "saes", "collapse", "humans", "predictors"):
        page(app, name)
        no_errors(app)


def test_typed_sentence_without_control(app):
    typed(app, "The old man the boats.", "man", "the boats")
    no_errors(app)
    assert "Only one version" in messages(app)
    page(app, "patching")
    assert "needs both versions" in messages(app)
    page(app, "humans")
    assert not app.exception


@pytest.mark.parametrize("sentence,amb,dis,expected", [
    ("", "", "ran", "the sentence is empty"),
    ("   ", "the deer", "ran", "the sentence is empty"),
    ("word " * 80, "", "word", "too long"),
    ("x" * 500, "", "x", "too long"),
    ("While the man hunted the deer ran.", "the cat", "ran", "'the cat' does not match any words of the sentence"),
    ("While the man hunted the deer ran.", "the deer", "fled", "'fled' does not match"),
    ("While the man hunted the deer ran.", "the deer", "hunted", "after the ambiguous words"),
    ("While the man hunted the deer ran.", "the deer", "", "name the disambiguating word"),
    ("While the man hunted the deer ran.", "the deer", ",", "no words to match"),
])
def test_bad_typed_input_gets_a_message(app, sentence, amb, dis, expected):
    typed(app, sentence, amb, dis)
    assert not app.exception
    assert expected in " ".join(e.value for e in app.error), [e.value for e in app.error]
    page(app, "collapse")  # every page shows the message, none a traceback
    assert expected in " ".join(e.value for e in app.error)


def test_unknown_item_in_the_link_gets_a_message(tiny_dirs, demo_results, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MECHINTERP_EXPLORER_MODEL", str(tiny_dirs["llama"]))
    monkeypatch.setenv("MECHINTERP_EXPLORER_RESULTS", str(demo_results))
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.query_params["suite"] = "npz"
    at.query_params["item"] = "999"
    at.run()
    assert not at.exception
    assert "suite 'npz' has no item '999'" in " ".join(e.value for e in at.error)
    at.sidebar.selectbox(key="item").set_value("2").run()  # picking an item clears the message
    no_errors(at)
    assert at.metric


def test_query_item_is_selected(tiny_dirs, demo_results, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MECHINTERP_EXPLORER_MODEL", str(tiny_dirs["llama"]))
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.query_params["suite"] = "mvrr"
    at.query_params["item"] = "2"
    at.run()
    no_errors(at)
    assert at.sidebar.selectbox(key="suite").value == "mvrr" and at.sidebar.selectbox(key="item").value == "2"


def test_unknown_suite_file_and_model_get_messages(app, tmp_path):
    app.sidebar.selectbox(key="suite").set_value("other (path) …").run()
    app.sidebar.text_input(key="suite_path").input(str(tmp_path / "nope.json")).run()
    assert not app.exception
    assert "nope.json" in " ".join(e.value for e in app.error)
    app.sidebar.selectbox(key="suite").set_value("npz").run()
    app.sidebar.selectbox(key="model_choice").set_value("other (path) …").run()
    app.sidebar.text_input(key="model_path").input(str(tmp_path / "no-model")).run()
    assert not app.exception
    assert "unknown model" in " ".join(e.value for e in app.error)


def test_missing_results_directory_is_reported(app, tmp_path):
    app.sidebar.text_input(key="results").input(str(tmp_path / "absent")).run()
    no_errors(app)  # the surprisal page still works: it computes on demand
    page(app, "results")
    assert "No results directory" in messages(app)


def test_bad_intervention_spec_gets_a_message(app):
    page(app, "collapse")
    app.selectbox(key="iv_kind").set_value("custom").run()
    app.text_input(key="iv_custom").input("clamp:layer=99").run()
    app.toggle(key="iv_on").set_value(True).run()
    assert not app.exception
    assert "out of range" in " ".join(e.value for e in app.error)


# ---- library helpers ----------------------------------------------------------------------------------------
def test_custom_suite_regions():
    s = inputs.custom_suite("The horse raced past the barn fell.", "fell", "raced past the barn",
                            "The horse that was raced past the barn fell.", "MV/RR")
    amb, unamb = s.items[0].conditions
    assert amb.text == "The horse raced past the barn fell." and unamb.text.startswith("The horse that was")
    assert [w.text for w in amb.region_words(2)] == ["raced", "past", "the", "barn"]
    assert [w.text for w in amb.region_words(4)] == ["fell."]  # punctuation is ignored when matching
    assert [w.text for w in unamb.region_words(1)] == ["The", "horse", "that", "was"]
    assert s.ambiguity.construction == "MV/RR" and s.ambiguity.preferred_reading == "main_verb"
    assert s.construction_of(s.items[0]) == "MV/RR" and compute.has_pair(s, s.items[0])
    single = inputs.custom_suite("The old man the boats.", "the boats")
    assert single.ambiguity.ambiguous_region is None and not compute.has_pair(single, single.items[0])


def test_custom_suite_errors():
    with pytest.raises(ConfigError, match="same as the sentence"):
        inputs.custom_suite("a b c", "c", control="a b c")
    with pytest.raises(RegionError, match="control"):
        inputs.custom_suite("While he ran the dog barked.", "barked", "the dog", "While he ran, a cat barked.")
    with pytest.raises(ConfigError, match="unknown construction"):
        inputs.custom_suite("a b c", "c", construction="XYZ")


def test_find_item():
    npz = load_suite("npz")
    assert inputs.find_item(npz, "3").number == 3 and inputs.find_item(npz, 3).number == 3
    with pytest.raises(ConfigError, match="has no item '99'"):
        inputs.find_item(npz, "99")
    with pytest.raises(ConfigError, match="no item given"):
        inputs.find_item(npz, "")
    sap = load_suite(SAP_DIR / "stimuli" / "items_ClassicGP.csv")
    assert inputs.find_item(sap, "NP/Z:2").construction == "NP/Z"
    with pytest.raises(ConfigError):  # "2" names one item per construction: ambiguous
        inputs.find_item(sap, "2")


def test_scan_classifies_results(demo_results):
    cat = scan(demo_results)
    kinds = {t.kind for t in cat.tables}
    assert {"words", "item_effects", "patching", "probe_readout", "probe_verdicts", "collapse_words",
            "collapse_effects", "side_effects"} <= kinds
    assert len(cat.saes) == 1 and len(cat.stores) == 1 and cat.probes
    assert all(p.construction == "NP/Z" for p in cat.probes)
    patch = cat.of_kind("patching")[0]
    assert patch.model and patch.weights_sha256 and patch.suites == ("npz",)
    assert not any(".tmp" in str(t.path) or "/jobs/" in str(t.path) for t in cat.tables)
    assert len(cat.linking) == 1 and "compare" in kinds
    with pytest.raises(ConfigError, match="does not exist"):
        scan(demo_results / "absent")


def test_read_kind_filters_by_model(demo_results, tiny_model):
    cat = scan(demo_results)
    df, used = read_kind(cat, "patching", tiny_model.weights_sha256, tiny_model.name, "npz")
    assert len(df) and used
    df, used = read_kind(cat, "patching", "0" * 64, "other-model", "npz")
    assert df.empty and not used
    df, _ = read_kind(cat, "patching", tiny_model.weights_sha256, tiny_model.name, "mvrr")
    assert df.empty


def test_classify():
    assert classify(["suite", "construction", "item", "condition", "word_index", "surprisal_bits", "entropy_bits"]) == "words"
    assert classify(["a", "b"]) is None


def test_probe_curve_needs_an_ambiguous_region(tiny_model):
    s = inputs.custom_suite("The old man the boats.", "the boats")
    with pytest.raises(ConfigError, match="ambiguous region"):
        compute.probe_curve(tiny_model, [object()], s, s.items[0])


def test_intervention_spec():
    assert compute.intervention_spec("clamp", layer=3, shift=1.0) == \
        "clamp:layer=3,target=ambiguous,shift=1.0,where=pre_disambiguator"
    assert compute.intervention_spec("truncate", k=4) == "truncate:k=4"
    with pytest.raises(ConfigError):
        compute.intervention_spec("sae")
    with pytest.raises(ConfigError):
        compute.intervention_spec("custom", custom=" ")
    assert compute.intervention_spec("clamp", layer=2, shift=1.0, target="preferred", fit="readings") == \
        "clamp:layer=2,target=preferred,shift=1.0,where=pre_disambiguator,fit=readings"
    assert compute.intervention_spec("leace", layer=2, fit="readings").endswith(",fit=readings")
    with pytest.raises(ConfigError, match="does not exist when fitting on readings"):
        compute.intervention_spec("clamp", layer=2, target="ambiguous", fit="readings")
    with pytest.raises(ConfigError, match="unknown fit"):
        compute.intervention_spec("clamp", layer=2, fit="stories")


def test_explore_command(capsys, tmp_path):
    from mechinterp.cli import main

    assert main(["explore", "--dry-run", "--model", "smollm2-135m", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "streamlit run" in out and "apps/explorer.py" in out and "MECHINTERP_EXPLORER_MODEL=smollm2-135m" in out
    assert main(["explore", "--dry-run", "--model", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


# ---- what the explorer may read -------------------------------------------------------------------------------
SENTINEL = "SENTINEL-7f3a-do-not-show"


@pytest.fixture
def secrets(tmp_path_factory) -> dict[str, Path]:
    """Files outside every allowed folder, each holding the sentinel where an error message might quote it."""
    d = tmp_path_factory.mktemp("secret")
    (d / "secret.txt").write_text(f"root:x:0:0:{SENTINEL}:/root:/bin/bash\n")
    (d / "secret.csv").write_text(f"{SENTINEL},b,c\n1,2,3\n")
    (d / "secret.json").write_text(json.dumps({"kind": "leace", SENTINEL: 1}))
    model = d / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": SENTINEL}))
    sae = d / "sae"
    sae.mkdir()
    (sae / "cfg.json").write_text(json.dumps({"hook_name": SENTINEL}))
    (sae / "sae_weights.safetensors").write_text(SENTINEL)
    (d / "results").mkdir()
    (d / "results" / "effects.csv").write_text(f"construction,roi,effect_bits\n{SENTINEL},0,1.0\n")
    return {"dir": d, "txt": d / "secret.txt", "csv": d / "secret.csv", "json": d / "secret.json", "model": model,
            "sae": sae, "results": d / "results"}


def rendered(at) -> str:
    """Every element the app rendered (sidebar and main), as text."""
    out: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


def refused(at, what: str) -> None:
    """A clear refusal is shown, no exception, and the sentinel is nowhere in the page."""
    assert not at.exception, [e.message for e in at.exception]
    errors = " ".join(e.value for e in at.error)
    assert what in errors, errors
    assert SENTINEL not in rendered(at)


def test_confine_resolves_symlinks_and_dotdot(tmp_path, secrets):
    from mechinterp.explore.paths import PathRefused, check_spec, confine, model_name, suite_spec

    allowed = (tmp_path.resolve(),)
    assert confine(tmp_path / "a" / ".." / "b.csv", allowed) == tmp_path.resolve() / "b.csv"
    (tmp_path / "link").symlink_to(secrets["dir"])
    for bad in (tmp_path / "link" / "secret.csv", tmp_path / ".." / secrets["dir"].name / "secret.csv", "", "/"):
        with pytest.raises(PathRefused) as exc:
            confine(bad, allowed)
        assert SENTINEL not in str(exc.value)
    assert suite_spec("npz", allowed) == "npz" and suite_spec("sap:ClassicGP", allowed) == "sap:ClassicGP"
    with pytest.raises(PathRefused):
        suite_spec("sap:../../secret", allowed)
    assert model_name("smollm2-135m", allowed) == "smollm2-135m"
    with pytest.raises(PathRefused):
        model_name(str(secrets["model"]), allowed)
    for spec in (f"@{secrets['txt']}", f"sae:sae={secrets['sae']}", f"clamp:layer=0,probe={secrets['dir']}",
                 f"leace:layers=0,fit=npz/{secrets['csv']}"):
        with pytest.raises(ConfigError) as exc:
            check_spec(spec, allowed)
        assert SENTINEL not in str(exc.value)
    assert check_spec("leace:layers=0,fit=readings", allowed).parts[0].fit == ("readings",)


def test_spec_file_errors_never_quote_the_file(secrets):
    from mechinterp.interventions.spec import parse_spec

    for f in ("txt", "csv", "json"):
        with pytest.raises(ConfigError) as exc:
            parse_spec(f"@{secrets[f]}")
        assert SENTINEL not in str(exc.value) and secrets[f].name in str(exc.value)
    with pytest.raises(ConfigError, match="not read here"):
        parse_spec(f"@{secrets['txt']}", files=False)


def test_custom_intervention_cannot_read_files(app, secrets):
    page(app, "collapse")
    app.selectbox(key="iv_kind").set_value("custom").run()
    app.toggle(key="iv_on").set_value(True)
    for spec, what in ((f"@{secrets['txt']}", "not read here"), ("@/etc/passwd", "not read here"),
                       (f"sae:sae={secrets['sae']}", "is refused"), (f"clamp:layer=0,probe={secrets['dir']}", "is refused"),
                       (f"leace:layers=0,fit={secrets['csv']}", "is refused")):
        app.text_input(key="iv_custom").input(spec).run()
        refused(app, what)
        assert "root:x:0" not in rendered(app)


def test_fields_outside_the_allowed_folders_are_refused(app, secrets):
    page(app, "saes")
    app.text_input(key="sae_path").input(str(secrets["sae"])).run()
    refused(app, "SAE directory")
    app.sidebar.text_input(key="results").input(str(secrets["results"])).run()
    refused(app, "results directory")
    page(app, "results")
    refused(app, "results directory")
    app.sidebar.text_input(key="results").input("").run()
    app.sidebar.selectbox(key="suite").set_value("other (path) …").run()
    for f in ("csv", "json", "txt"):
        app.sidebar.text_input(key="suite_path").input(str(secrets[f])).run()
        refused(app, "suite file")
    app.sidebar.selectbox(key="suite").set_value("npz").run()
    app.sidebar.selectbox(key="model_choice").set_value("other (path) …").run()
    app.sidebar.text_input(key="model_path").input(str(secrets["model"])).run()
    refused(app, "model directory")


@pytest.mark.parametrize("param", ["suite", "model"])
def test_query_parameters_outside_the_allowed_folders_are_refused(tiny_dirs, demo_results, monkeypatch, secrets,
                                                                  param):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MECHINTERP_EXPLORER_MODEL", str(tiny_dirs["llama"]))
    monkeypatch.setenv("MECHINTERP_EXPLORER_RESULTS", str(demo_results))
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.query_params[param] = str(secrets["csv"] if param == "suite" else secrets["model"])
    at.run()
    refused(at, "suite file" if param == "suite" else "model directory")


def test_scan_leaves_out_a_table_its_provenance_does_not_describe(demo_results, tmp_path):
    """The explorer never refuses a results folder: a table whose provenance records another sha256 is left out
    of the pages (its model and suite cannot be believed) with one note on the Results page saying so."""
    import shutil

    shutil.copytree(demo_results, tmp_path / "r", symlinks=True)
    before = scan(tmp_path / "r")
    found = before.of_kind("item_effects")[0]
    table, df = found.path, found.read()
    df = pd.concat([df, df.tail(1)], ignore_index=True)  # one row more, same columns, provenance left as it was
    df.to_csv(table, index=False) if table.suffix == ".csv" else df.to_parquet(table, index=False)
    after = scan(tmp_path / "r")
    assert table not in [t.path for t in after.tables] and len(after.tables) == len(before.tables) - 1
    (note,) = [n for n in after.notes if str(table) in n]
    assert "does not describe" in note and "Not used here" in note and "\n" not in note


# ---- Beyond surprisal: every predictor of one item ------------------------------------------------------------
def test_item_predictors_align_on_the_disambiguator(tiny_model):
    import mechinterp as mi
    from mechinterp.explore import predictors

    suite = load_suite("npz")
    item = suite.items[0]
    t = predictors.item_predictors(tiny_model, suite, item, heads=["L0H0"], layers=[0, 1])
    ref = mi.word_predictors(tiny_model, inputs.one_item(suite, item), heads=["L0H0"], layers=[0, 1])
    cols = predictors.predictor_columns(t)
    assert cols[:3] == ["surprisal_bits", "entropy_bits", "entropy_change_bits"]
    assert {"reading_tv", "repr_cos_L0", "repr_l2_L1", "attn_amb_L0H0"} <= set(cols)
    assert np.allclose(t[cols].to_numpy(dtype=float), ref[cols].to_numpy(dtype=float), equal_nan=True)
    dis = suite.ambiguity.disambiguating_region
    for _, g in t.groupby("condition"):
        assert g.loc[g["region"] == dis, "offset"].min() == 0 and (g["offset"].diff().dropna() == 1).all()
    diffs = predictors.roi_differences(t, suite, item, cols)
    eff = compute.item_effects(compute.item_words(tiny_model, suite, item), suite, item)
    assert np.allclose(diffs["surprisal_bits"], eff["effect_bits"], atol=1e-5)
    amb = t[t["ambiguous"]].set_index("offset")
    assert np.allclose(diffs["repr_cos_L0"], amb.loc[diffs["roi"], "repr_cos_L0"])  # a distance, not a difference
    human = predictors.construction_human_effect("NP/Z")
    fig = predictors.predictors_figure(t, cols, human)
    assert fig.data[0].name == "humans" and np.allclose(fig.data[0].y, human["effect"])
    assert sum(1 for d in fig.data if d.name == "unambiguous") == len([c for c in cols if not c.startswith("repr_")])
    with pytest.raises(ConfigError, match="no predictor column"):
        predictors.predictors_figure(t, [])


def test_item_human_effect_only_for_sap_items():
    from mechinterp.compare.humans import load_sap_effects
    from mechinterp.explore import predictors

    sap = load_suite("sap:ClassicGP")
    item = inputs.find_item(sap, "NP/Z:1")
    h = predictors.item_human_effect(sap, item)
    ref = load_sap_effects(None, "ClassicGP", "item")
    ref = ref[(ref["construction"] == "NP/Z") & (ref["item"] == 1)].sort_values("roi")
    assert h is not None and list(h["roi"]) == [0, 1, 2] and np.allclose(h["effect"], ref["effect"])
    npz = load_suite("npz")
    assert predictors.item_human_effect(npz, npz.items[0]) is None  # same construction, other items
    typed_suite = inputs.custom_suite("The old man the boats.", "the boats")
    assert predictors.item_human_effect(typed_suite, typed_suite.items[0]) is None
    assert predictors.construction_human_effect("lexcat") is None


def test_parse_heads():
    from mechinterp.explore.predictors import MAX_HEADS, parse_heads

    assert parse_heads("L1H0, L0H1 L1H0", 2) == ["L1H0", "L0H1"] and parse_heads("  ") == []
    with pytest.raises(ConfigError, match="not written as"):
        parse_heads("../../etc/passwd")
    with pytest.raises(ConfigError, match="out of range"):
        parse_heads("L9H0", 2)
    with pytest.raises(ConfigError, match=f"at most {MAX_HEADS}"):
        parse_heads(" ".join(f"L0H{i}" for i in range(MAX_HEADS + 1)))


def ladder_table(root: Path, model, command: str = "ladder") -> Path:
    from mechinterp.provenance import Provenance
    from mechinterp.tables import write_table

    df = pd.DataFrame({"step": [0, 1], "construction": ["NP/Z", "NP/Z"], "roi": [0, 0], "effect_bits": [2.0, 1.0]})
    return write_table(df, root / "ladder.parquet", Provenance(command=command, config={}, model=model.identity()))


def test_scan_finds_ladder_tables_by_their_provenance(tiny_model, tmp_path):
    import mechinterp as mi
    from mechinterp.explore import predictors

    path = ladder_table(tmp_path, tiny_model)
    cat = scan(tmp_path)
    (t,) = predictors.ladder_tables(cat, tiny_model.weights_sha256, tiny_model.name)
    assert t.path == path and t.kind == "ladder"
    assert predictors.ladder_tables(cat, "0" * 64, "other-model") == []
    assert (predictors.ladder_figure(t.read()) is None) == ("ladder_figure" not in mi.__all__)
    ladder_table(tmp_path, tiny_model, command="collapse")  # the same columns, written by another command
    assert predictors.ladder_tables(scan(tmp_path)) == []


def test_predictors_page_shows_every_predictor(app, tiny_model):
    from mechinterp.explore import predictors

    page(app, "predictors")
    no_errors(app)
    assert "not a SAP Benchmark item" in messages(app) and "mechinterp ladder" in messages(app)
    spec = chart_spec(app, "pred_fig")
    human = predictors.construction_human_effect("NP/Z")
    assert spec["data"][0]["name"] == "humans" and np.allclose(arr(spec["data"][0]["y"]), human["effect"])
    suite = load_suite("npz")
    words = compute.item_words(tiny_model, suite, suite.items[0])
    amb = words[words["condition"] == "ambiguous"].sort_values("word_index")
    assert np.allclose(arr(spec["data"][1]["y"]), amb["surprisal_bits"], atol=1e-5)
    shown = app.multiselect(key="pred_show").value
    assert shown[0] == "surprisal_bits" and any(c.startswith("repr_cos_L") for c in shown)
    app.multiselect(key="pred_show").set_value(["reading_tv"]).run()
    no_errors(app)
    assert [d["name"] for d in chart_spec(app, "pred_fig")["data"]] == ["humans", "ambiguous", "unambiguous"]
    app.text_input(key="pred_heads").input("L0H0").run()
    no_errors(app)
    assert "attn_amb_L0H0" in app.multiselect(key="pred_show").options


def test_predictors_page_sap_item_has_its_human_effect(app):
    from mechinterp.explore import predictors

    app.sidebar.selectbox(key="suite").set_value("sap:ClassicGP").run()
    app.sidebar.selectbox(key="item").set_value("NP/Z:1").run()
    page(app, "predictors")
    no_errors(app)
    assert "not a SAP Benchmark item" not in messages(app)
    sap = load_suite("sap:ClassicGP")
    human = predictors.item_human_effect(sap, inputs.find_item(sap, "NP/Z:1"))
    assert np.allclose(arr(chart_spec(app, "pred_fig")["data"][0]["y"]), human["effect"])
    table = next(d.value for d in app.dataframe if "human_ms" in d.value.columns)
    assert np.allclose(table["human_ms"], human["effect"])


def test_predictors_page_shows_a_saved_ladder(app, tiny_model, tmp_path):
    ladder_table(tmp_path, tiny_model)
    app.sidebar.text_input(key="results").input(str(tmp_path)).run()
    page(app, "predictors")
    no_errors(app)
    assert "mechinterp ladder" not in messages(app)
    assert any({"step", "effect_bits"} <= set(d.value.columns) for d in app.dataframe)


def test_predictors_page_bad_input_is_a_message(app, secrets):
    page(app, "predictors")
    for heads, what in (("L99H0", "out of range"), ("../../etc/passwd", "not written as"),
                        (f"{secrets['txt']}", "not written as")):
        app.text_input(key="pred_heads").input(heads).run()
        refused(app, what)
    app.text_input(key="pred_heads").input("").run()
    no_errors(app)
    typed(app, "While the man hunted the deer ran.", "the cat", "ran")
    page(app, "predictors")
    assert "does not match any words" in " ".join(e.value for e in app.error) and not app.exception
    app.sidebar.text_input(key="results").input(str(secrets["results"])).run()
    page(app, "predictors")
    refused(app, "results directory")

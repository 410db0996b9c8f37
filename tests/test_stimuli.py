"""Suites: the typed model, SyntaxGym JSON and SAP CSV readers, built-in suites, validation errors."""

from __future__ import annotations

import copy

import pytest

from conftest import SAP_DIR
from mechinterp.errors import RegionError, SuiteError
from mechinterp.stimuli import builtin_suites, load_suite, suite_from_dict, suite_to_dict, write_syntaxgym


def _suite_dict(spacing: str | None = "attach") -> dict:
    def cond(name, cue, amb):
        return {
            "condition_name": name, "ambiguous": amb, "reading": "subject",
            "regions": [
                {"region_number": 1, "content": "While the man"}, {"region_number": 2, "content": "hunted"},
                {"region_number": 3, "content": cue}, {"region_number": 4, "content": "the deer"},
                {"region_number": 5, "content": "ran"}, {"region_number": 6, "content": "into the woods."},
            ],
        }

    meta = {"name": "toy", "metric": "sum"} | ({"spacing": spacing} if spacing else {})
    return {
        "meta": meta,
        "ambiguity": {"construction": "NP/Z", "readings": {"object": "o", "subject": "s"},
                      "preferred_reading": "object", "ambiguous_region": 4, "disambiguating_region": 5,
                      "cue_region": 3},
        "region_meta": {"1": "sub", "2": "verb", "3": "cue", "4": "np", "5": "disamb", "6": "end"},
        "predictions": [{"type": "formula", "formula": "(5;%ambiguous%) > (5;%unambiguous%)"}],
        "items": [{"item_number": 1, "lexical": {"verb": "hunted"},
                   "conditions": [cond("ambiguous", "", True), cond("unambiguous", ",", False)]}],
    }


def test_condition_text_words_and_regions():
    suite = suite_from_dict(_suite_dict())
    amb = suite.items[0].condition("ambiguous")
    unamb = suite.items[0].condition("unambiguous")
    assert amb.text == "While the man hunted the deer ran into the woods."
    assert unamb.text == "While the man hunted, the deer ran into the woods."  # punctuation attaches left
    assert [w.text for w in unamb.words][3:6] == ["hunted,", "the", "deer"]
    assert [w.region for w in unamb.words] == [1, 1, 1, 2, 4, 4, 5, 6, 6, 6]
    assert unamb.region_words(3) == ()  # the comma is part of the word "hunted,"
    assert [w.text for w in amb.region_words(5)] == ["ran"]
    a, b = unamb.region_spans[4]
    assert unamb.text[a:b] == "the deer"


def test_syntaxgym_spacing_scores_punctuation_regions():
    """Without a spacing marker a SyntaxGym JSON suite is read as SyntaxGym reads it: regions joined by
    spaces, so the punctuation-only cue region is a word of its own."""
    suite = suite_from_dict(_suite_dict(spacing=None))
    assert suite.spacing == "syntaxgym"
    unamb = suite.items[0].condition("unambiguous")
    assert unamb.text == "While the man hunted , the deer ran into the woods."
    assert [w.text for w in unamb.region_words(3)] == [","]
    assert [w.region for w in unamb.words] == [1, 1, 1, 2, 3, 4, 4, 5, 6, 6, 6]
    assert suite.items[0].condition("ambiguous").region_words(3) == ()
    # the convention survives a round trip, and only attach suites write the marker
    assert "spacing" not in suite_to_dict(suite)["meta"]
    attach = suite_from_dict(_suite_dict())
    assert suite_to_dict(attach)["meta"]["spacing"] == "attach"
    assert suite_from_dict(suite_to_dict(attach)).spacing == "attach"
    assert suite.sha256 != attach.sha256


def test_bad_spacing_marker():
    with pytest.raises(SuiteError, match="meta.spacing is 'glue'"):
        suite_from_dict(_suite_dict(spacing="glue"))


def test_builtin_suites_attach_punctuation():
    for name in builtin_suites():
        assert load_suite(name).spacing == "attach"


def test_region_roles_and_names():
    suite = suite_from_dict(_suite_dict())
    assert suite.region_number("ambiguous") == 4
    assert suite.region_number("disambiguating") == 5
    assert suite.region_number("verb") == 2
    assert suite.region_number(3) == 3
    with pytest.raises(RegionError, match="no region 'subject_np'"):
        suite.region_number("subject_np")


def test_syntaxgym_roundtrip(tmp_path):
    suite = suite_from_dict(_suite_dict())
    path = write_syntaxgym(suite, tmp_path / "toy.json")
    again = load_suite(path)
    assert again.sha256 == suite.sha256
    assert again.items == suite.items
    assert suite_to_dict(again)["ambiguity"]["disambiguating_region"] == 5


def test_hash_changes_with_content():
    d = _suite_dict()
    d2 = copy.deepcopy(d)
    d2["items"][0]["conditions"][0]["regions"][4]["content"] = "fled"
    d2["items"][0]["conditions"][1]["regions"][4]["content"] = "fled"
    assert suite_from_dict(d).sha256 != suite_from_dict(d2).sha256


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(items=[]), "is empty"),
        (lambda d: d["items"].append(copy.deepcopy(d["items"][0])), "duplicate items: item 1 appears twice"),
        (lambda d: d["items"][0]["conditions"][0]["regions"].pop(4), "disambiguating region 5 is not among"),
        (lambda d: d["items"][0]["conditions"][0]["regions"][4].update(content=""), "disambiguating region 5 is empty"),
        (lambda d: d["items"][0]["conditions"][0]["regions"][0].pop("content"), "missing required field 'content'"),
        (lambda d: d["items"][0]["conditions"][1].update(condition_name="ambiguous"), "duplicate condition names"),
        (lambda d: d["items"][0]["conditions"][0].update(reading="banana"), "reading 'banana' is not one of"),
        (lambda d: d.update(predictions=[{"type": "formula", "formula": "(5;%nope%) > 1"}]), "condition 'nope'"),
        (lambda d: d.update(predictions=[{"type": "formula", "formula": "(5;%ambiguous% >"}]), "invalid prediction formula"),
        (lambda d: d["items"][0]["conditions"][0]["regions"].reverse(), "out of order"),
    ],
)
def test_validation_errors(mutate, message):
    d = _suite_dict()
    mutate(d)
    with pytest.raises(SuiteError, match=message):
        suite_from_dict(d, source="toy.json")


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SuiteError, match="not valid JSON"):
        load_suite(bad)
    with pytest.raises(SuiteError, match="unknown suite 'nosuch'"):
        load_suite("nosuch")
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "missing.json")
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b\n1,2\n")
    with pytest.raises(SuiteError, match="not in a SAP Benchmark layout"):
        load_suite(odd)


def test_builtin_suites_load_and_are_annotated():
    names = builtin_suites()
    assert {"npz", "nps", "mvrr", "lexcat"} <= set(names)
    for name in names:
        suite = load_suite(name)
        assert len(suite.items) >= 24, name
        amb = suite.ambiguity
        assert amb is not None and amb.preferred_reading in amb.readings
        for it in suite.items:
            a, u = it.condition(amb.ambiguous_condition), it.condition(amb.unambiguous_condition)
            assert a.ambiguous is True and u.ambiguous is False
            # the versions differ only in the cue region
            for ra, ru in zip(a.regions, u.regions):
                if ra.number != amb.cue_region:
                    assert ra.content == ru.content, (name, it.number)
            assert a.region(amb.cue_region).content == "" and u.region(amb.cue_region).content
            assert it.provenance


def test_sap_classic_reader(sap_classic):
    assert len(sap_classic.items) == 72
    assert set(sap_classic.constructions) == {"NP/S", "NP/Z", "MV/RR"}
    it = sap_classic.item("NP/Z:1")
    amb, unamb = it.condition("ambiguous"), it.condition("unambiguous")
    assert amb.text.startswith("Because the suspect changed the file deserved")
    assert [w.text for w in amb.region_words(2)] == ["deserved"]  # 1-indexed position 7
    assert [w.text for w in unamb.region_words(2)] == ["deserved"]
    assert [w.text for w in amb.region_words(3)] == ["further"]


def test_sap_position_errors(tmp_path):
    src = (SAP_DIR / "stimuli" / "items_ClassicGP.csv").read_text().splitlines()
    header, row = src[0], src[2]
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\n" + row.replace(",7,Because", ",40,Because", 1) + "\n")
    with pytest.raises(RegionError, match="position 40 is out of range"):
        load_suite(bad)
    bad.write_text(header + "\n" + row.replace(",7,Because", ",6,Because", 1) + "\n")
    with pytest.raises(RegionError, match="disambiguating words differ"):
        load_suite(bad)


def test_sap_long_layout():
    path = SAP_DIR / "stimuli" / "items_Agreement.csv"
    suite = load_suite(path)
    assert suite.ambiguity is None and len(suite.items) > 0
    cond = suite.items[0].conditions[0]
    assert cond.region_words(2)[0].text in cond.text.split()


def test_head_select_and_pair():
    npz = load_suite("npz")
    head = npz.head(3)
    assert [it.number for it in head.items] == [it.number for it in npz.items[:3]]
    assert head.sha256 != npz.sha256 and npz.head(None) is npz
    picked = npz.select(items=[npz.items[1].number, str(npz.items[4].number)])
    assert [it.number for it in picked.items] == [npz.items[1].number, npz.items[4].number]
    assert npz.select(constructions=["NP/Z"]).items == npz.items
    with pytest.raises(SuiteError, match="no construction"):
        npz.select(constructions=["MV/RR"])
    with pytest.raises(SuiteError, match="no item"):
        npz.select(items=[9999])
    ambiguous, unambiguous = npz.pair(npz.items[0])
    assert (ambiguous.name, unambiguous.name) == ("ambiguous", "unambiguous")

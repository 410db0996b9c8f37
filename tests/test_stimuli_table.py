"""Spreadsheets of stimuli: region columns or inline '|' regions, sidecar, errors, round trips."""

from __future__ import annotations

import json

import pytest

from mechinterp.errors import SuiteError
from mechinterp.stimuli import load_suite, suite_from_dict, suite_to_dict
from mechinterp.stimuli.table import check_spreadsheet, read_spreadsheet, write_spreadsheet

INLINE = """item\tcondition\tambiguous\treading\tregions
1\tambiguous\ttrue\tsubject\tWhile the man | hunted | | the deer | ran | into the woods.
1\tunambiguous\tfalse\tsubject\tWhile the man | hunted | , | the deer | ran | into the woods.
2\tambiguous\ttrue\tsubject\tAs the girl | washed | | the dog | barked | at the cat.
2\tunambiguous\tfalse\tsubject\tAs the girl | washed | , | the dog | barked | at the cat.
"""
SIDECAR = {
    "name": "my-npz",
    "regions": ["sub", "verb", "cue", "np", "disamb", "end"],
    "ambiguity": {"construction": "NP/Z", "readings": {"object": "NP is the object", "subject": "NP is the subject"},
                  "preferred": "object", "ambiguous": "np", "disambiguating": "disamb", "cue": "cue"},
}
FORMULA = "[(5;%ambiguous%) > (5;%unambiguous%)] & [(5;%ambiguous%) - (5;%unambiguous%) > 0]"


def write(tmp_path, name, text, sidecar=None, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    if sidecar is not None:
        path.with_name(name + ".meta.json").write_text(json.dumps(sidecar))
    return path


@pytest.fixture
def inline_file(tmp_path):
    return write(tmp_path, "items.tsv", INLINE, SIDECAR | {"predictions": [FORMULA]})


def test_inline_regions_and_sidecar(inline_file):
    suite = load_suite(inline_file)
    assert suite.name == "my-npz" and suite.spacing == "attach"
    assert suite.region_meta == {1: "sub", 2: "verb", 3: "cue", 4: "np", 5: "disamb", 6: "end"}
    amb = suite.ambiguity
    assert (amb.ambiguous_region, amb.disambiguating_region, amb.cue_region, amb.preferred_reading) == (4, 5, 3, "object")
    c = suite.items[0].condition("unambiguous")
    assert c.text == "While the man hunted, the deer ran into the woods."
    assert c.ambiguous is False and c.reading == "subject"
    assert suite.items[0].condition("ambiguous").region(3).content == ""
    assert [p.formula for p in suite.predictions] == [FORMULA]


def test_region_columns_and_syntaxgym_spacing(tmp_path):
    text = "item,condition,region_1,region_2,region_3\n1,a,The dog,barked,.\n1,b,The dogs,barked,.\n"
    path = write(tmp_path, "cols.csv", text, {"spacing": "syntaxgym", "predictions": ["(3;%a%) = (3;%b%)"]})
    suite = load_suite(path)
    c = suite.items[0].condition("a")
    assert c.text == "The dog barked ." and [w.text for w in c.region_words(3)] == ["."]


def test_toml_sidecar(tmp_path):
    path = write(tmp_path, "t.csv", "item,condition,region_1\n1,x-1,Hello there.\n")
    path.with_name("t.csv.meta.toml").write_text('name = "greet"\nregions = ["region_1"]\n')
    assert load_suite(path).name == "greet"


def test_round_trip_through_syntaxgym_json(inline_file, tmp_path):
    suite = read_spreadsheet(inline_file)
    again = suite_from_dict(json.loads(json.dumps(suite_to_dict(suite))))
    for inline in (False, True):
        a = write_spreadsheet(suite, tmp_path / f"a{inline}.tsv", inline=inline)
        b = write_spreadsheet(again, tmp_path / f"b{inline}.tsv", inline=inline)
        assert a.read_text() == b.read_text()
        assert (tmp_path / f"a{inline}.tsv.meta.json").read_text() == (tmp_path / f"b{inline}.tsv.meta.json").read_text()
        back = read_spreadsheet(a)
        assert suite_to_dict(back) == suite_to_dict(suite)


def test_builtin_suite_round_trips(tmp_path):
    suite = load_suite("npz")
    path = write_spreadsheet(suite, tmp_path / "npz.csv")
    back = load_suite(path)
    assert [c.text for it in back.items for c in it.conditions] == [c.text for it in suite.items for c in it.conditions]
    assert back.ambiguity == suite.ambiguity and back.predictions == suite.predictions


def problems_of(tmp_path, name, text, **kw):
    suite, problems = check_spreadsheet(write(tmp_path, name, text, **kw))
    assert suite is None and problems
    with pytest.raises(SuiteError):
        read_spreadsheet(tmp_path / name)
    return "\n".join(problems)


def test_missing_column(tmp_path):
    msg = problems_of(tmp_path, "m.csv", "item,region_1\n1,Hello.\n")
    assert "missing required column 'condition'" in msg and "m.csv" in msg


def test_duplicate_item_condition(tmp_path):
    msg = problems_of(tmp_path, "d.csv", "item,condition,region_1\n1,a,Hi.\n1,a,Bye.\n2,a,Yo.\n")
    assert "row 3, item 1, condition a" in msg and "appears twice" in msg and "'condition'" in msg


def test_non_integer_item_and_bad_bool_all_reported(tmp_path):
    text = "item,condition,ambiguous,region_1\none,a,true,Hi.\n2,a,maybe,Bye.\n"
    msg = problems_of(tmp_path, "n.csv", text)
    assert "row 2, item one, condition a, column 'item'" in msg
    assert "row 3, item 2, condition a, column 'ambiguous'" in msg  # both problems, not just the first


def test_ragged_inline_regions(tmp_path):
    text = "item\tcondition\tregions\n1\ta\tA | b | c\n1\tb\tA | b\n"
    msg = problems_of(tmp_path, "r.tsv", text)
    assert "item 1, condition b, column 'regions': 2 regions" in msg


def test_bad_encoding(tmp_path):
    msg = problems_of(tmp_path, "e.csv", "item,condition,region_1\n1,a,caf\u00e9\n", encoding="latin-1")
    assert "e.csv" in msg and "UTF-8" in msg


def test_unknown_region_name_in_sidecar(tmp_path):
    side = {"regions": ["a", "b"], "ambiguity": {"construction": "X", "disambiguating": "c"}}
    msg = problems_of(tmp_path, "s.csv", "item,condition,a,b\n1,ambiguous,x,y\n", sidecar=side)
    assert "ambiguity.disambiguating" in msg and "'c'" in msg


def test_sap_csv_is_not_taken_for_a_spreadsheet(tmp_path):
    from mechinterp.stimuli.library import suite_format

    path = write(tmp_path, "sap.csv", "item,condition,Sentence,disambPosition\n1,x,The dog barked.,2\n")
    assert suite_format(path) == "sap-csv"
    assert suite_format(write(tmp_path, "mine.csv", "item,condition,region_1\n1,a,Hi.\n")) == "table"

"""`mechinterp suite check` / `convert`: every problem on its own line, exit 2, never a traceback."""

from __future__ import annotations

import pytest

from mechinterp.cli import main
from mechinterp.stimuli import load_suite


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def test_check_builtin(capsys):
    rc, out, _ = run(capsys, "suite", "check", "npz", "--max-items", "1")
    assert rc == 0 and "spacing: attach" in out and "ROIs: disambiguating region" in out and "words=" in out


def test_check_with_model_shows_tokens(capsys, tiny_dirs):
    rc, out, _ = run(capsys, "suite", "check", "npz", "--max-items", "1", "--model", str(tiny_dirs["llama"]))
    assert rc == 0 and "tokens=" in out


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("missing.csv", "item,region_1\n1,Hi.\n", ["missing required column 'condition'"]),
        ("dup.csv", "item,condition,region_1\n1,a,Hi.\n1,a,Bye.\n", ["item 1, condition a", "appears twice"]),
        ("nonint.csv", "item,condition,region_1\nx,a,Hi.\n2,b,Yo.\n2,b,Yo!\n",
         ["item x, condition a, column 'item'", "item 2, condition b"]),
        ("ragged.tsv", "item\tcondition\tregions\n1\ta\tA | b\n1\tb\tA | b | c\n", ["item 1, condition b, column 'regions'"]),
    ],
)
def test_check_malformed(capsys, tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    rc, _, err = run(capsys, "suite", "check", str(path))
    assert rc == 2
    for e in expected:
        assert e in err
    assert "problem(s)" in err


def test_check_bad_encoding(capsys, tmp_path):
    path = tmp_path / "enc.tsv"
    path.write_bytes("item\tcondition\tregion_1\n1\ta\tna\u00efve\n".encode("latin-1"))
    rc, _, err = run(capsys, "suite", "check", str(path))
    assert rc == 2 and "UTF-8" in err and "enc.tsv" in err


def test_check_bad_json_and_missing_file(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert run(capsys, "suite", "check", str(bad))[0] == 2
    rc, _, err = run(capsys, "suite", "check", str(tmp_path / "nope.csv"))
    assert rc == 2 and "does not exist" in err


def test_convert_round_trip(capsys, tmp_path):
    csv_path, json_path = tmp_path / "npz.csv", tmp_path / "npz.json"
    assert run(capsys, "suite", "convert", "npz", str(csv_path))[0] == 0
    assert run(capsys, "suite", "convert", str(csv_path), str(json_path))[0] == 0
    assert load_suite(json_path).spacing == "attach"
    a, b = load_suite("npz"), load_suite(json_path)
    assert [c.text for it in a.items for c in it.conditions] == [c.text for it in b.items for c in it.conditions]
    rc, _, err = run(capsys, "suite", "convert", "npz", str(tmp_path / "x.txt"))
    assert rc == 2 and "must end in" in err


def test_convert_inline_puts_the_regions_in_one_column(capsys, tmp_path):
    import pandas as pd

    cols, inline = tmp_path / "cols.csv", tmp_path / "inline.csv"
    assert run(capsys, "suite", "convert", "npz", str(cols))[0] == 0
    assert run(capsys, "suite", "convert", "npz", str(inline), "--inline")[0] == 0
    a, b = pd.read_csv(cols, keep_default_na=False), pd.read_csv(inline, keep_default_na=False)
    assert "region_1" in a.columns and "regions" not in a.columns
    assert "regions" in b.columns and not any(c.startswith("region_") for c in b.columns)
    suite = load_suite("npz")
    first = suite.items[0].conditions[0]
    assert b["regions"].iloc[0].split("|")[0].strip() == first.regions[0].content
    assert b["regions"].str.count(r"\|").eq(len(first.regions) - 1).all()
    # both layouts read back as the same suite
    assert [c.text for it in load_suite(inline).items for c in it.conditions] == \
        [c.text for it in suite.items for c in it.conditions]

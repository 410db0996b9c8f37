"""The SAE training corpus: parsing the Debian packages' files, fetching, caching, clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mechinterp.errors import MechinterpError
from mechinterp.saes import corpus as C

WORDNET_LINES = [
    "  1 This software and database is being provided to you, the LICENSEE, by  ",
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known to exist  ",
    '00002137 03 n 02 abstraction 0 abstract_entity 0 010 @ 00001740 n 0000 | a general concept; "the dog '
    'barked all night long"; "short"  ',
    '00003000 00 a 01 beaten(a) 0 000 | much trodden and worn smooth; "a beaten path through the wood"  ',
]


def _wordnet_tree(root: Path) -> Path:
    wn = root / "usr" / "share" / "wordnet"
    wn.mkdir(parents=True)
    (wn / "data.noun").write_text("\n".join(WORDNET_LINES[:3]) + "\n", encoding="latin-1")
    (wn / "data.adj").write_text(WORDNET_LINES[3] + "\n", encoding="latin-1")
    (wn / "data.verb").write_text("")
    (wn / "data.adv").write_text("")
    return root


def test_parse_wordnet_glosses_and_examples(tmp_path):
    docs = C.parse_wordnet(_wordnet_tree(tmp_path))
    texts = [(d.source, d.text) for d in docs]
    assert ("wordnet-gloss", "entity: That which is perceived or known to exist.") in texts
    assert ("wordnet-gloss", "abstraction: A general concept.") in texts
    assert ("wordnet-example", "The dog barked all night long.") in texts
    assert ("wordnet-gloss", "beaten: Much trodden and worn smooth.") in texts  # "(a)" marker dropped
    assert not any("short" == t.lower().strip(".") for _, t in texts)  # examples under 3 words are dropped
    assert not any("LICENSEE" in t for _, t in texts)  # licence header skipped


def test_parse_wordnet_missing_files(tmp_path):
    with pytest.raises(C.CorpusError, match="data.noun"):
        C.parse_wordnet(tmp_path)


def test_parse_fortunes(tmp_path):
    base = tmp_path / "usr" / "share" / "games" / "fortunes"
    base.mkdir(parents=True)
    (base / "wisdom").write_text("A clash of doctrine is not a disaster.\n\t\t-- Someone\n%\nHi.\n%\n"
                                 "Two lines of\nwisdom here.\n")
    (base / "wisdom.dat").write_bytes(b"\x00\x01")
    (base / "ascii-art").write_text("|_|_| |_| /\\/\\ art here\n%\n")
    docs = C.parse_fortunes(tmp_path)
    assert [d.text for d in docs] == ["A clash of doctrine is not a disaster.", "Two lines of wisdom here."]


def test_template_corpus_is_deterministic_and_distinct():
    a, b = C.template_corpus(300, seed=1), C.template_corpus(300, seed=1)
    assert a.sha256 == b.sha256 and len(a) == 300
    assert len(set(a.texts)) == 300
    assert C.template_corpus(300, seed=2).sha256 != a.sha256
    assert a.identity()["sources"][0]["license"].startswith("MIT")


def test_split_documents_disjoint():
    corpus = C.template_corpus(200)
    train, hold = C.split_documents(corpus, 0.1, seed=0)
    assert len(hold) == 20 and not set(train) & set(hold) and len(train) + len(hold) == 200
    with pytest.raises(C.CorpusError):
        C.split_documents(corpus, 1.5)


def test_bad_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("MECHINTERP_CACHE", str(tmp_path))
    with pytest.raises(C.CorpusError, match="unknown corpus source"):
        C.load_corpus(["wikipedia"])
    with pytest.raises(C.CorpusError, match="no corpus source"):
        C.load_corpus([])
    with pytest.raises(C.CorpusError, match="mechinterp sae corpus"):
        C.load_corpus(["wordnet"], fetch=False)


def test_no_apt_get_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MECHINTERP_CACHE", str(tmp_path))
    monkeypatch.delenv(C.ENV_DEB_DIR, raising=False)
    monkeypatch.setattr(C.shutil, "which", lambda name: None)
    with pytest.raises(MechinterpError, match="apt-get is not available.*MECHINTERP_DEB_DIR"):
        C.prepare_corpus(["wordnet"])
    assert not (C.corpus_dir(["wordnet"]) / "manifest.json").exists()


def test_missing_deb_in_deb_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MECHINTERP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "debs").mkdir()
    with pytest.raises(C.CorpusError, match="no wordnet-base_"):
        C.prepare_corpus(["wordnet"], deb_dir=tmp_path / "debs")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build a test package")
def test_prepare_from_local_deb_and_cache(tmp_path, monkeypatch):
    """A real .deb (built here from a tiny WordNet tree) goes through unpacking, parsing and the cache."""
    monkeypatch.setenv("MECHINTERP_CACHE", str(tmp_path / "cache"))
    pkg = _wordnet_tree(tmp_path / "pkg")
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text(
        "Package: wordnet-base\nVersion: 1:3.0-99\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n")
    debs = tmp_path / "debs"
    debs.mkdir()
    subprocess.run(["dpkg-deb", "--build", str(pkg), str(debs / "wordnet-base_3.0-99_all.deb")], check=True,
                   capture_output=True)
    path = C.prepare_corpus(["wordnet"], deb_dir=debs)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["n_documents"] == 5 and manifest["debian_packages"][0]["file"].startswith("wordnet-base_")
    corpus = C.load_corpus(["wordnet"], fetch=False)
    assert len(corpus) == 5 and corpus.identity()["sha256"] == corpus.sha256
    assert "WordNet 3.0 license" in corpus.identity()["sources"][0]["license"]
    # a truncated cache is detected
    lines = (path / "docs.jsonl").read_text().splitlines()
    (path / "docs.jsonl").write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(C.CorpusError, match="truncated"):
        C.load_corpus(["wordnet"], fetch=False)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build a test package")
def test_corpus_command_deb_dir_and_force(tmp_path, monkeypatch, capsys):
    """`sae corpus --deb-dir` reads the .deb files there (no download); a prepared corpus is reused until --force."""
    from mechinterp.cli import main

    monkeypatch.setenv("MECHINTERP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(C.ENV_DEB_DIR, raising=False)
    which = shutil.which
    monkeypatch.setattr(C.shutil, "which", lambda name: None if name == "apt-get" else which(name))  # no download
    debs = tmp_path / "debs"
    debs.mkdir()

    def build(version: str, lines: list[str]) -> None:
        pkg = tmp_path / f"pkg-{version}"
        wn = pkg / "usr" / "share" / "wordnet"
        wn.mkdir(parents=True)
        (wn / "data.noun").write_text("\n".join(lines) + "\n", encoding="latin-1")
        for name in ("data.adj", "data.verb", "data.adv"):
            (wn / name).write_text("")
        (pkg / "DEBIAN").mkdir()
        (pkg / "DEBIAN" / "control").write_text(f"Package: wordnet-base\nVersion: {version}\nArchitecture: all\n"
                                                "Maintainer: t <t@t>\nDescription: test\n")
        subprocess.run(["dpkg-deb", "--build", str(pkg), str(debs / f"wordnet-base_{version}_all.deb")], check=True,
                       capture_output=True)

    build("1", WORDNET_LINES[:2])
    argv = ["sae", "corpus", "--sources", "wordnet", "--deb-dir", str(debs)]
    assert main(argv) == 0
    assert "corpus wordnet: 1 documents" in capsys.readouterr().out
    manifest = json.loads((C.corpus_dir(["wordnet"]) / "manifest.json").read_text())
    assert [p["file"] for p in manifest["debian_packages"]] == ["wordnet-base_1_all.deb"]
    build("2", WORDNET_LINES[:3])  # a newer package with more glosses
    assert main(argv) == 0  # prepared already: reused as it is
    assert "corpus wordnet: 1 documents" in capsys.readouterr().out
    assert main(argv + ["--force"]) == 0  # parsed again, from the newest .deb in --deb-dir
    assert "corpus wordnet: 3 documents" in capsys.readouterr().out
    manifest = json.loads((C.corpus_dir(["wordnet"]) / "manifest.json").read_text())
    assert [p["file"] for p in manifest["debian_packages"]] == ["wordnet-base_2_all.deb"]
    (debs / "wordnet-base_1_all.deb").unlink()
    (debs / "wordnet-base_2_all.deb").unlink()
    assert main(argv + ["--force"]) == 2  # --deb-dir is where the packages are looked for, not apt-get
    assert f"no wordnet-base_*.deb in {debs}" in capsys.readouterr().err

"""Training text for SAEs, obtained with no network but the package registries.

Sources (each a function from unpacked package files to documents):

* ``wordnet`` (default): the glosses and example sentences of WordNet 3.0, from the Debian package
  ``wordnet-base``. WordNet 3.0 licence (permissive, BSD-like: use, copy, modify and distribute for any
  purpose, keeping Princeton's copyright notice). About 184k documents, 1.46M words.
* ``fortunes``: the quotations of BSD ``fortune`` (Debian packages ``fortunes``, ``fortunes-min``; the
  offensive set, ``fortunes-off``, is not used). The program is BSD-licensed; the quotations come from many
  authors with no single licence, so this source is opt-in and nothing derived from it should be shipped
  without checking. About 15k documents.
* ``templates``: a few thousand sentences from this module's own templates (MIT, like the package): a
  small offline fallback for tests and for machines without ``apt-get``.

``prepare_corpus`` runs ``apt-get download`` (no root, no system install) and ``dpkg-deb -x`` into the
user cache directory, parses the files and writes ``docs.jsonl`` and ``manifest.json`` there; later calls
read that. ``MECHINTERP_DEB_DIR`` (or ``deb_dir=``) points to already downloaded ``.deb`` files instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Sequence

from mechinterp.errors import MechinterpError
from mechinterp.io import atomic_path, sha256_file, write_json_atomic
from mechinterp.paths import cache_dir

ENV_DEB_DIR = "MECHINTERP_DEB_DIR"
FORMAT_VERSION = 1


class CorpusError(MechinterpError):
    """The SAE training corpus could not be fetched, unpacked or read."""


@dataclass(frozen=True)
class Document:
    text: str
    source: str  # e.g. "wordnet-gloss", "wordnet-example", "fortunes", "templates"


# ---- sources --------------------------------------------------------------------------------------
_QUOTED = re.compile(r'"([^"]+)"')


def _sentence(s: str) -> str:
    s = " ".join(s.split()).strip(" ;")
    if not s:
        return s
    s = s[0].upper() + s[1:]
    return s if s[-1] in ".!?\"'" else s + "."


def parse_wordnet(root: Path) -> list[Document]:
    """One document per gloss definition ("lemma: definition.") and one per example sentence."""
    wn = root / "usr" / "share" / "wordnet"
    files = [wn / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise CorpusError(f"the wordnet-base package has no {', '.join(missing)}")
    docs: list[Document] = []
    for f in files:
        for line in f.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:  # licence header
                continue
            head, gloss = line.split(" | ", 1)
            fields = head.split()
            lemma = re.sub(r"\(\w+\)$", "", fields[4]).replace("_", " ") if len(fields) > 4 else ""
            examples = [m.strip() for m in _QUOTED.findall(gloss)]
            definition = _QUOTED.sub("", gloss)
            definition = "; ".join(p.strip() for p in definition.split(";") if p.strip())
            if definition:
                docs.append(Document(f"{lemma}: {_sentence(definition)}" if lemma else _sentence(definition),
                                     "wordnet-gloss"))
            docs += [Document(_sentence(e), "wordnet-example") for e in examples if len(e.split()) >= 3]
    return docs


_FORTUNE_SKIP = {"ascii-art", "art", "translate-me", "perl"}  # pictures and code, not prose


def parse_fortunes(root: Path) -> list[Document]:
    """One document per fortune; the attribution line ("-- Author") is dropped."""
    base = root / "usr" / "share" / "games" / "fortunes"
    if not base.is_dir():
        raise CorpusError(f"the fortunes packages have no {base}")
    docs: list[Document] = []
    for f in sorted(base.iterdir()):
        if f.suffix or f.is_symlink() or f.name in _FORTUNE_SKIP or not f.is_file():
            continue
        for chunk in f.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            lines = [ln for ln in chunk.splitlines() if not ln.strip().startswith("--")]
            text = " ".join(" ".join(lines).split())
            text = re.sub(r".\x08", "", text)  # overstriking
            if len(text.split()) >= 3 and sum(c.isalpha() for c in text) > 0.6 * len(text.replace(" ", "")):
                docs.append(Document(text, "fortunes"))
    return docs


_T_SUBJ = ["the farmer", "a young teacher", "the old dog", "my neighbour", "the committee", "two children",
           "the pilot", "a tired nurse", "the baker", "our guide", "the lawyer", "a small bird"]
_T_OBJ = ["the letter", "a red apple", "the new bridge", "an old map", "the garden", "the results",
          "a warm coat", "the door", "the river", "a long story", "the window", "the evidence"]
_T_TV = ["found", "painted", "opened", "watched", "carried", "checked", "described", "cleaned", "followed",
         "noticed", "repaired", "sold"]
_T_IV = ["laughed", "slept", "waited", "left", "arrived", "smiled", "agreed", "stopped", "returned", "rested"]
_T_ADV = ["quickly", "yesterday", "in the morning", "after lunch", "without a word", "again", "at last",
          "near the station", "for an hour", "on Sunday"]
_T_CLAUSE = ["it was raining", "the bus was late", "nobody had called", "the shop was closed",
             "the plan had failed", "the room was cold"]
_T_SUB = ["While", "After", "Because", "When", "Although", "Before"]
_TEMPLATES = [
    "{S} {TV} {O} {A}.",
    "{S} {IV} {A}.",
    "{SUB} {s} {IV}, {s2} {TV} {O}.",
    "{SUB} {s} {TV} {O}, {s2} {IV}.",
    "{S} said that {C}.",
    "{S} knew that {o} was gone.",
    "{O} that {s} {TV} was old.",
    "{S} who {TV} {o} {IV} {A}.",
    "{S} {TV} {O} and then {IV}.",
    "Did {s} {TVB} {o} {A}?",
    "{S} thought {C}, so {s2} {IV}.",
]


def template_documents(n: int = 3000, seed: int = 0) -> list[Document]:
    """``n`` distinct sentences from small templates (the offline fallback corpus)."""
    rng = random.Random(seed)
    base = {"found": "find", "painted": "paint", "opened": "open", "watched": "watch", "carried": "carry",
            "checked": "check", "described": "describe", "cleaned": "clean", "followed": "follow",
            "noticed": "notice", "repaired": "repair", "sold": "sell"}
    seen: dict[str, None] = {}
    for _ in range(n * 20):
        if len(seen) >= n:
            break
        tv = rng.choice(_T_TV)
        s, s2 = rng.sample(_T_SUBJ, 2)
        fill = dict(s=s, s2=s2, S=s[0].upper() + s[1:], TV=tv, TVB=base[tv], IV=rng.choice(_T_IV),
                    o=(o := rng.choice(_T_OBJ)), O=o, A=rng.choice(_T_ADV), C=rng.choice(_T_CLAUSE),
                    SUB=rng.choice(_T_SUB))
        t = rng.choice(_TEMPLATES)
        text = t.format(**fill)
        text = text[0].upper() + text[1:]
        seen[text] = None
    return [Document(t, "templates") for t in seen]


@dataclass(frozen=True)
class Source:
    name: str
    packages: tuple[str, ...]
    license: str
    description: str
    parse: Callable[[Path], list[Document]] | None = None


SOURCES: dict[str, Source] = {
    "wordnet": Source(
        "wordnet", ("wordnet-base",),
        "WordNet 3.0 license (Princeton University; permissive, BSD-like; keep the copyright notice)",
        "WordNet 3.0 glosses ('lemma: definition.') and example sentences", parse_wordnet),
    "fortunes": Source(
        "fortunes", ("fortunes", "fortunes-min"),
        "BSD (fortune program); quotations from many authors with no single licence: do not ship derived data "
        "without checking",
        "BSD fortune quotations (not the offensive set)", parse_fortunes),
    "templates": Source("templates", (), "MIT (this package)", "sentences from mechinterp's own templates"),
}
DEFAULT_SOURCES: tuple[str, ...] = ("wordnet",)


# ---- the corpus value -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Corpus:
    """An ordered list of documents with a manifest saying where they came from."""

    documents: tuple[Document, ...]
    manifest: dict = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.documents]

    @cached_property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for d in self.documents:
            h.update(d.source.encode() + b"\t" + d.text.encode() + b"\n")
        return h.hexdigest()

    @cached_property
    def n_words(self) -> int:
        return sum(len(d.text.split()) for d in self.documents)

    def identity(self) -> dict:
        """Provenance record: sources, packages, licences, size, content hash."""
        return {**{k: v for k, v in self.manifest.items() if k != "documents"}, "n_documents": len(self),
                "n_words": self.n_words, "sha256": self.sha256, "path": str(self.path) if self.path else None}


def _check_sources(sources: Iterable[str]) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(s.strip() for s in sources if s.strip()))
    if not out:
        raise CorpusError("no corpus source given: choose from " + ", ".join(SOURCES))
    bad = [s for s in out if s not in SOURCES]
    if bad:
        raise CorpusError(f"unknown corpus source(s) {', '.join(bad)}: choose from {', '.join(SOURCES)}")
    return out


def corpus_dir(sources: Sequence[str]) -> Path:
    return cache_dir() / "sae-corpus" / "+".join(sorted(_check_sources(sources)))


def _download(packages: Sequence[str], into: Path, deb_dir: Path | None) -> list[Path]:
    """The .deb file of each package: from ``deb_dir`` if given, else via ``apt-get download``."""
    into.mkdir(parents=True, exist_ok=True)
    if deb_dir is not None:
        found = []
        for p in packages:
            hits = sorted(Path(deb_dir).glob(f"{p}_*.deb"))
            if not hits:
                raise CorpusError(f"no {p}_*.deb in {deb_dir}")
            found.append(hits[-1])
        return found
    if shutil.which("apt-get") is None:
        raise CorpusError(
            f"apt-get is not available to download the Debian package(s) {', '.join(packages)}. Download the "
            f".deb files by hand into a directory and set {ENV_DEB_DIR}=DIR (or pass --deb-dir DIR), or use "
            "--sources templates for the small built-in corpus")
    proc = subprocess.run(["apt-get", "download", *packages], cwd=into, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CorpusError(
            f"`apt-get download {' '.join(packages)}` failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-500:]}. Is the package index available (apt-get update)? "
            f"Alternatively set {ENV_DEB_DIR} to a directory holding the .deb files, or use --sources templates")
    out = []
    for p in packages:
        hits = sorted(into.glob(f"{p}_*.deb"))
        if not hits:
            raise CorpusError(f"apt-get download {p} reported success but left no {p}_*.deb in {into}")
        out.append(hits[-1])
    return out


def _unpack(deb: Path, into: Path) -> None:
    if shutil.which("dpkg-deb") is None:
        raise CorpusError(f"dpkg-deb is needed to unpack {deb.name} (install dpkg, or use --sources templates)")
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CorpusError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()[-500:]}")


def prepare_corpus(
    sources: Sequence[str] = DEFAULT_SOURCES, force: bool = False, deb_dir: str | Path | None = None
) -> Path:
    """Fetch, unpack and parse the sources into the cache (once); returns the corpus directory."""
    sources = _check_sources(sources)
    target = corpus_dir(sources)
    if (target / "manifest.json").exists() and not force:
        return target
    deb_dir = Path(deb_dir) if deb_dir else (Path(os.environ[ENV_DEB_DIR]) if os.environ.get(ENV_DEB_DIR) else None)
    target.mkdir(parents=True, exist_ok=True)
    docs: list[Document] = []
    packages: list[dict] = []
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        tmp_path = Path(tmp)
        for name in sources:
            src = SOURCES[name]
            if src.parse is None:
                docs += template_documents()
                continue
            debs = _download(src.packages, tmp_path / "debs", deb_dir)
            root = tmp_path / f"root-{name}"
            for deb in debs:
                _unpack(deb, root)
                packages.append({"source": name, "file": deb.name, "sha256": sha256_file(deb)})
            docs += src.parse(root)
    # drop exact duplicates, keep order
    unique = list({(d.source, d.text): d for d in docs}.values())
    if not unique:
        raise CorpusError(f"the sources {', '.join(sources)} produced no documents")
    manifest = {
        "format": FORMAT_VERSION,
        "sources": [{"name": s, "packages": list(SOURCES[s].packages), "license": SOURCES[s].license,
                     "description": SOURCES[s].description} for s in sources],
        "debian_packages": packages,
        "n_documents": len(unique),
        "n_words": sum(len(d.text.split()) for d in unique),
    }
    with atomic_path(target / "docs.jsonl") as tmp_docs, open(tmp_docs, "w", encoding="utf-8") as f:
        for d in unique:
            f.write(json.dumps({"text": d.text, "source": d.source}, ensure_ascii=False) + "\n")
    write_json_atomic(target / "manifest.json", manifest)
    return target


def load_corpus(
    sources: Sequence[str] = DEFAULT_SOURCES, fetch: bool = True, deb_dir: str | Path | None = None
) -> Corpus:
    """The corpus for ``sources``, preparing it first if it is not cached (``fetch=False`` raises instead)."""
    sources = _check_sources(sources)
    if sources == ("templates",):
        return template_corpus()
    target = corpus_dir(sources)
    if not (target / "manifest.json").exists():
        if not fetch:
            raise CorpusError(f"the corpus {'+'.join(sources)} is not prepared: run `mechinterp sae corpus "
                              f"--sources {','.join(sources)}`")
        prepare_corpus(sources, deb_dir=deb_dir)
    try:
        manifest = json.loads((target / "manifest.json").read_text())
        with open(target / "docs.jsonl", encoding="utf-8") as f:
            docs = tuple(Document(**json.loads(line)) for line in f if line.strip())
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise CorpusError(f"the cached corpus in {target} is unreadable ({exc}); run `mechinterp sae corpus "
                          f"--force` to rebuild it") from exc
    if len(docs) != manifest.get("n_documents"):
        raise CorpusError(f"the cached corpus in {target} is truncated ({len(docs)} of "
                          f"{manifest.get('n_documents')} documents); run `mechinterp sae corpus --force`")
    return Corpus(docs, manifest, target)


def template_corpus(n: int = 3000, seed: int = 0) -> Corpus:
    """The small built-in corpus (no download)."""
    docs = tuple(template_documents(n, seed))
    manifest = {"format": FORMAT_VERSION, "debian_packages": [],
                "sources": [{"name": "templates", "packages": [], "license": SOURCES["templates"].license,
                             "description": SOURCES["templates"].description, "n": n, "seed": seed}]}
    return Corpus(docs, manifest, None)


def split_documents(corpus: Corpus, holdout_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of training and held-out documents (a seeded shuffle)."""
    if not 0.0 < holdout_fraction < 1.0:
        raise CorpusError(f"holdout fraction must be between 0 and 1, got {holdout_fraction}")
    idx = list(range(len(corpus)))
    random.Random(seed).shuffle(idx)
    n_hold = max(1, int(round(len(idx) * holdout_fraction)))
    return idx[n_hold:], idx[:n_hold]


__all__ = ["Corpus", "CorpusError", "DEFAULT_SOURCES", "Document", "SOURCES", "load_corpus", "prepare_corpus",
           "split_documents", "template_corpus", "template_documents"]

"""The Natural Stories corpus (Futrell et al. 2018/2021): 10 stories, 10,256 words, per-word mean self-paced
reading times over about 83 readers.

Shipped with the package (:func:`mechinterp.datasets.naturalstories_dir`; CC BY-NC-SA 4.0, licence beside it);
any directory in the upstream repository's layout also loads (``all_stories.tok`` for the text in order,
``processed_wordinfo.tsv`` for the reading times).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mechinterp.datasets import naturalstories_dir
from mechinterp.errors import ConfigError

WORD_COLUMNS = ["story", "zone", "word", "rt_mean", "rt_sd", "rt_gmean", "n_readers"]


@dataclass(frozen=True)
class NaturalStories:
    """Per-word table (one row per story x word, in text order; columns :data:`WORD_COLUMNS`)."""

    words: pd.DataFrame
    source: str

    @property
    def stories(self) -> list[int]:
        return sorted(int(s) for s in self.words["story"].unique())

    def story_words(self, story: int) -> pd.DataFrame:
        g = self.words[self.words["story"] == story]
        if g.empty:
            raise ConfigError(f"Natural Stories has no story {story} (stories: {self.stories})")
        return g.sort_values("zone")

    def subset(self, stories: list[int] | None = None, words_per_story: int | None = None) -> "NaturalStories":
        """The first ``words_per_story`` words of each of ``stories`` (a bounded subset for quick checks)."""
        df = self.words
        if stories is not None:
            unknown = sorted(set(stories) - set(self.stories))
            if unknown:
                raise ConfigError(f"Natural Stories has no stories {unknown} (stories: {self.stories})")
            df = df[df["story"].isin(stories)]
        if words_per_story is not None:
            if words_per_story < 1:
                raise ConfigError(f"words_per_story must be at least 1, got {words_per_story}")
            df = df.sort_values(["story", "zone"]).groupby("story", sort=False).head(words_per_story)
        return NaturalStories(df.reset_index(drop=True), self.source)


def load_natural_stories(path: str | Path | None = None) -> NaturalStories:
    """Load the corpus.

    Args:
        path: a directory holding ``all_stories.tok`` and ``processed_wordinfo.tsv``; the shipped copy if None.

    Example:
        >>> ns = load_natural_stories()
        >>> len(ns.words)
        10256
    """
    root = Path(path) if path is not None else naturalstories_dir()
    tok, info = root / "all_stories.tok", root / "processed_wordinfo.tsv"
    for f in (tok, info):
        if not f.exists():
            raise ConfigError(f"{root} is not a Natural Stories directory: {f.name} is missing")
    try:
        text = pd.read_csv(tok, sep="\t", quoting=3, keep_default_na=False)
        rts = pd.read_csv(info, sep="\t", quoting=3, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ConfigError(f"could not read Natural Stories files in {root}: {exc}") from exc
    for name, df, cols in ((tok.name, text, {"word", "zone", "item"}),
                           (info.name, rts, {"word", "zone", "item", "meanItemRT", "nItem"})):
        if not cols <= set(df.columns):
            raise ConfigError(f"{root / name} lacks columns {sorted(cols - set(df.columns))}")
    merged = text.merge(rts, on=["item", "zone"], how="left", suffixes=("", "_rt"), validate="one_to_one")
    if merged["meanItemRT"].isna().any():  # pyright: ignore[reportGeneralTypeIssues]  # pandas stubs: a scalar cell or .all()/.any() typed as Series
        n = int(merged["meanItemRT"].isna().sum())
        raise ConfigError(f"{n} words of {tok.name} have no reading time in {info.name}")
    bad = merged[merged["word"] != merged["word_rt"]]
    if len(bad):
        r = bad.iloc[0]
        raise ConfigError(f"Natural Stories files disagree at story {r['item']} zone {r['zone']}: "
                          f"{r['word']!r} vs {r['word_rt']!r}")
    out = pd.DataFrame({
        "story": merged["item"].astype(int), "zone": merged["zone"].astype(int), "word": merged["word"].astype(str),
        "rt_mean": merged["meanItemRT"].astype(float),
        "rt_sd": merged["sdItemRT"].astype(float) if "sdItemRT" in merged else float("nan"),
        "rt_gmean": merged["gmeanItemRT"].astype(float) if "gmeanItemRT" in merged else float("nan"),
        "n_readers": merged["nItem"].astype(int),
    }).sort_values(["story", "zone"]).reset_index(drop=True)
    return NaturalStories(out[WORD_COLUMNS], str(root))

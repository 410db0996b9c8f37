"""A linear link from surprisal to reading time (ms), fitted on Natural Stories for the model under test.

The model (ordinary least squares on per-word mean self-paced reading times over ~83 readers)::

    RT(w_t) = b0 + b1 s(w_t) + b2 s(w_t-1) + b3 s(w_t-2)          surprisal of the word and two spillover lags
                 + b4 len(w_t) + b5 len(w_t-1)                    length in letters
                 + b6 logf(w_t) + b7 logf(w_t-1)                  Zipf log10 frequency (wordfreq, offline)

When the ``wordfreq`` package is not installed the frequency terms are replaced by the word's position in its
sentence (``features="length_position"``); the fitted link records which set it used. Surprisal is in bits.
Coefficients come with t-based 95% intervals from the OLS covariance, and R^2 with the R^2 of the same model
without the surprisal terms (their difference is what surprisal adds).

Exclusions on Natural Stories (documented in the fit's ``exclusions``): the first two words of each story (no
lags), and words with a mean RT outside [100, 3000] ms.

Predicted garden-path effects use the *original* model's link for every intervention: the link is the reader,
the intervention changes what the reader is fed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from wordfreq import zipf_frequency

from mechinterp.errors import ConfigError
from mechinterp.io import write_json_atomic
from mechinterp.surprisal import SurprisalConfig, sentence_surprisal

FeatureSet = Literal["auto", "length_frequency", "length_position"]
SURPRISAL_TERMS = ("surprisal", "surprisal_prev1", "surprisal_prev2")
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "length_frequency": SURPRISAL_TERMS + ("length", "length_prev1", "log_freq", "log_freq_prev1"),
    "length_position": SURPRISAL_TERMS + ("length", "length_prev1", "position"),
}
_SENTENCE_END = (".", "?", "!", '."', '?"', '!"', ".'", "?'", "!'")


def frequency_available() -> bool:
    try:
        import wordfreq  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_features(features: FeatureSet) -> str:
    if features == "auto":
        return "length_frequency" if frequency_available() else "length_position"
    if features not in FEATURE_SETS:
        raise ConfigError(f"unknown linking feature set {features!r}: choose auto, {', '.join(FEATURE_SETS)}")
    if features == "length_frequency" and not frequency_available():
        raise ConfigError("the length_frequency link needs the 'wordfreq' package (pip install wordfreq); "
                          "or use features='length_position'")
    return features


def _bare(word: str) -> str:
    return "".join(ch for ch in str(word) if ch.isalnum() or ch in "'-").strip("'-")


def word_length(word: str) -> int:
    """Letters and digits of the word (punctuation does not count)."""
    return sum(ch.isalnum() for ch in str(word))


def log_frequency(words: Sequence[str]) -> np.ndarray:
    """Zipf log10 frequency (per billion words) of each word, lower-cased and stripped of punctuation; words
    wordfreq does not know get 0 (its floor)."""
    cache: dict[str, float] = {}
    out = np.empty(len(words))
    for i, w in enumerate(words):
        b = _bare(w).lower()
        if b not in cache:
            cache[b] = zipf_frequency(b, "en") if b else 0.0
        out[i] = cache[b]
    return out


def add_features(words: pd.DataFrame, group: Sequence[str], order: str = "word_index",
                 surprisal: str = "surprisal_bits") -> pd.DataFrame:
    """Add the predictors of every feature set to a per-word table (one sequence per ``group``, words in
    ``order``): surprisal, its lags, length, its lag, position in the sentence, and (if wordfreq is installed)
    log frequency and its lag. Lags are NaN at the start of each sequence."""
    if surprisal not in words.columns:
        raise ConfigError(f"word table has no {surprisal!r} column")
    df = words.sort_values([*group, order]).copy()
    df["surprisal"] = df[surprisal].astype(float)
    df["length"] = df["word"].map(word_length).astype(float)
    g = df.groupby(list(group), sort=False)
    df["surprisal_prev1"] = g["surprisal"].shift(1)
    df["surprisal_prev2"] = g["surprisal"].shift(2)
    df["length_prev1"] = g["length"].shift(1)
    prev = g["word"].shift(1)
    new_sentence = prev.isna() | prev.astype(str).str.endswith(_SENTENCE_END)
    keys = [df[c] for c in group]
    sentence = new_sentence.astype(int).groupby(keys, sort=False).cumsum()
    df["position"] = df.groupby([*keys, sentence], sort=False).cumcount().astype(float)
    if frequency_available():
        df["log_freq"] = log_frequency(df["word"].tolist())
        df["log_freq_prev1"] = df.groupby(list(group), sort=False)["log_freq"].shift(1)
    return df


@dataclass(frozen=True)
class LinkingFit:
    """A fitted surprisal-to-ms link (frozen; save/load as JSON)."""

    feature_set: str
    features: tuple[str, ...]
    coef: tuple[float, ...]  # intercept first, then one per feature
    cov: tuple[tuple[float, ...], ...]
    df_resid: int
    r2: float
    r2_adj: float
    r2_without_surprisal: float
    n: int
    rmse: float
    model: dict | None = None
    data: dict = field(default_factory=dict)
    exclusions: dict = field(default_factory=dict)

    @property
    def terms(self) -> tuple[str, ...]:
        return ("intercept", *self.features)

    def coefficient(self, term: str) -> float:
        return self.coef[self.terms.index(term)]

    def coefficients(self, ci: float = 0.95) -> pd.DataFrame:
        """term, estimate, std_error, ci_low, ci_high, t, p."""
        se = np.sqrt(np.diag(np.asarray(self.cov)))
        beta = np.asarray(self.coef)
        q = stats.t.ppf(0.5 + ci / 2, self.df_resid)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = beta / se
        p = 2 * stats.t.sf(np.abs(t), self.df_resid)
        return pd.DataFrame({"term": self.terms, "estimate": beta, "std_error": se, "ci_low": beta - q * se,
                             "ci_high": beta + q * se, "t": t, "p": p})

    def design(self, df: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in df.columns]
        if missing:
            raise ConfigError(f"cannot apply the {self.feature_set} link: the table lacks {missing} "
                              "(build it with mechinterp.compare.linking.add_features)")
        return np.column_stack([np.ones(len(df)), df[list(self.features)].to_numpy(dtype=float)])

    def predict(self, df: pd.DataFrame, coef: np.ndarray | None = None) -> np.ndarray:
        """Predicted RT (ms) per row; NaN where a lag is missing. ``coef`` overrides the point estimate
        (e.g. a draw from :meth:`sample_coefs`)."""
        return self.design(df) @ (np.asarray(self.coef) if coef is None else np.asarray(coef))

    def sample_coefs(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of the coefficient vector from its sampling distribution (normal approximation)."""
        return rng.multivariate_normal(np.asarray(self.coef), np.asarray(self.cov), size=n)

    def ms_per_bit(self) -> float:
        """Total slowdown per bit summed over the current word and its spillover lags."""
        return float(sum(self.coefficient(t) for t in SURPRISAL_TERMS))

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "LinkingFit":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            d["features"] = tuple(d["features"])
            d["coef"] = tuple(d["coef"])
            d["cov"] = tuple(tuple(r) for r in d["cov"])
            return cls(**d)
        except FileNotFoundError as exc:
            raise ConfigError(f"linking fit {path} does not exist") from exc
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a saved linking fit: {exc}") from exc


def _ols(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    dof = len(y) - X.shape[1]
    sigma2 = float(resid @ resid) / dof
    cov = sigma2 * np.linalg.pinv(X.T @ X)
    return beta, cov, float(resid @ resid), dof


def fit_linking(table: pd.DataFrame, rt: str = "rt_mean", features: FeatureSet = "auto",
                model: dict | None = None, data: dict | None = None, exclusions: dict | None = None) -> LinkingFit:
    """OLS of ``rt`` on a feature set (rows with any missing predictor are dropped). ``table`` comes from
    :func:`add_features` plus a reading-time column."""
    fset = resolve_features(features)
    feats = FEATURE_SETS[fset]
    missing = [c for c in (*feats, rt) if c not in table.columns]
    if missing:
        raise ConfigError(f"cannot fit the link: the table lacks {missing}")
    d = table.dropna(subset=[*feats, rt])
    if len(d) <= len(feats) + 2:
        raise ConfigError(f"cannot fit the link on {len(d)} complete rows (need more than {len(feats) + 2})")
    y = d[rt].to_numpy(dtype=float)
    X = np.column_stack([np.ones(len(d)), d[list(feats)].to_numpy(dtype=float)])
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ConfigError("cannot fit the link: the predictors are collinear (is surprisal constant?)")
    beta, cov, rss, dof = _ols(X, y)
    tss = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - rss / tss
    keep = [0] + [i + 1 for i, f in enumerate(feats) if f not in SURPRISAL_TERMS]
    _, _, rss0, _ = _ols(X[:, keep], y)
    return LinkingFit(
        feature_set=fset, features=feats, coef=tuple(map(float, beta)),
        cov=tuple(tuple(map(float, r)) for r in cov), df_resid=int(dof), r2=float(r2),
        r2_adj=float(1 - (1 - r2) * (len(y) - 1) / dof), r2_without_surprisal=float(1 - rss0 / tss), n=int(len(y)),
        rmse=math.sqrt(rss / len(y)), model=model, data=data or {}, exclusions=exclusions or {},
    )


# ---- Natural Stories ----------------------------------------------------------------------------------
def natural_stories_surprisal(model, corpus, config=None, window_words: int = 300, context_words: int = 100,
                              show_progress: bool = False) -> pd.DataFrame:
    """Surprisal of every word of ``corpus`` (a :class:`~mechinterp.compare.humans.NaturalStories`) in its story context.

    Each story is cut into windows of ``window_words`` words; each window is scored after the
    ``context_words`` words before it (so every word but the first few of a story has at least that much
    context, and sequences stay short enough for any model). Returns the corpus table with ``surprisal_bits``
    and ``n_tokens``."""
    if window_words < 1 or context_words < 0:
        raise ConfigError(f"window_words must be >= 1 and context_words >= 0 (got {window_words}, {context_words})")
    config = config or SurprisalConfig()
    max_pos = getattr(getattr(model, "hf", None), "config", None)
    max_pos = getattr(max_pos, "max_position_embeddings", None)
    if max_pos and 2 * (window_words + context_words) > max_pos:  # keep windows well inside the model's length
        scale = max_pos / (2 * (window_words + context_words))
        window_words, context_words = max(1, int(window_words * scale)), int(context_words * scale)
    texts, spans = [], []  # spans: (story rows, first scored word in the text)
    for story in corpus.stories:
        g = corpus.story_words(story)
        words = g["word"].tolist()
        for start in range(0, len(words), window_words):
            ctx = max(0, start - context_words)
            texts.append(" ".join(words[ctx : start + window_words]))
            spans.append((g.index[start : start + window_words], start - ctx))
    scored = sentence_surprisal(model, texts, config)
    out = corpus.words.copy()
    out["surprisal_bits"] = np.nan
    out["n_tokens"] = 0
    for s, (rows, first) in enumerate(spans):
        sc = scored[scored["sentence"] == s].sort_values("word_index")
        vals = sc.iloc[first : first + len(rows)]
        if len(vals) != len(rows):
            raise ConfigError(f"word count mismatch while scoring Natural Stories window {s}")
        out.loc[rows, "surprisal_bits"] = vals["surprisal_bits"].to_numpy()
        out.loc[rows, "n_tokens"] = vals["n_tokens"].to_numpy()
    return out


NS_EXCLUSIONS = {"first_words_per_story": 2, "rt_min_ms": 100.0, "rt_max_ms": 3000.0}


def fit_natural_stories(model, corpus, config=None, features: FeatureSet = "auto", window_words: int = 300,
                        context_words: int = 100, scored: pd.DataFrame | None = None) -> tuple[LinkingFit, pd.DataFrame]:
    """Score ``corpus`` with ``model`` and fit the link; returns the fit and the per-word table it used
    (pass ``scored`` to reuse surprisals computed before)."""
    if scored is None:
        scored = natural_stories_surprisal(model, corpus, config, window_words, context_words)
    table = add_features(scored, group=["story"], order="zone")
    first = table.groupby("story").cumcount() < NS_EXCLUSIONS["first_words_per_story"]
    ok = ~first & table["rt_mean"].between(NS_EXCLUSIONS["rt_min_ms"], NS_EXCLUSIONS["rt_max_ms"])
    fit = fit_linking(
        table[ok], rt="rt_mean", features=features,
        model=model.identity() if hasattr(model, "identity") else None,
        data={"corpus": "Natural Stories (Futrell et al. 2021)", "source": corpus.source,
              "stories": corpus.stories, "n_words": int(len(table)), "window_words": window_words,
              "context_words": context_words},
        exclusions={**NS_EXCLUSIONS, "n_excluded": int((~ok).sum())},
    )
    return fit, table


def predict_rt(fit: LinkingFit, words: pd.DataFrame, group: Sequence[str] = ("construction", "item", "condition"),
               coef: np.ndarray | None = None) -> pd.DataFrame:
    """Add ``predicted_ms`` to a per-word surprisal table (e.g. from :func:`mechinterp.surprisal.suite_surprisal`)."""
    table = add_features(words, group=list(group))
    table["predicted_ms"] = fit.predict(table, coef)
    return table

"""Fitting linear reading probes: standardise, logistic regression (sklearn), grouped cross-validation,
Hewitt & Liang control tasks, random-direction baseline.

* Rows are activations at one site, one per sentence (BOS is never a row: positions are words).
* Every fit standardises with statistics of its own training rows only (Gemma's residual stream has a few
  massive dimensions; an unstandardised probe would see little else).
* Held-out accuracy uses :func:`grouped_folds`: sentences that share any lexical item (target noun, verb,
  word; see :func:`lexical_groups`) are always on the same side, so no item or verb is on both sides.
* The control task (Hewitt & Liang 2019) gives every target word TYPE a random label (drawn with the
  task's class balance) and asks the same probe to learn it. It is only learnable by memorising types, so it
  is evaluated, like the task it is compared with, on a split where test types also occur in training
  (:func:`random_folds`). Selectivity = task accuracy - control accuracy on that same split.
* The random-direction baseline projects the standardised activations on a random unit direction and fits a
  one-dimensional logistic regression (grouped folds): what a direction that knows nothing gets.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Hashable, Iterator, Sequence

import numpy as np
from jaxtyping import Float
from pydantic import BaseModel, ConfigDict, Field
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from mechinterp.errors import ConfigError

Folds = list[tuple[np.ndarray, np.ndarray]]


class ProbeSettings(BaseModel):
    """How probes are trained and evaluated (one value per field; sweeps expand lists of them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    C: float = Field(default=0.1, gt=0, description="inverse L2 strength of the logistic regression")
    n_per_class: int = Field(default=150, ge=10, le=5000, description="generated training sentences per reading")
    folds: int = Field(default=5, ge=2, le=20, description="cross-validation folds")
    which: str = Field(default="last", pattern="^(last|mean)$", description="token of the target: last, or mean")
    control: bool = Field(default=True, description="run the Hewitt & Liang control task")
    random_directions: int = Field(default=10, ge=0, le=200, description="random directions for the baseline")
    baselines: bool = Field(default=True, description="lexical baselines at the word before the target and the first word")
    transfer: bool = Field(default=True, description="test each probe on the other constructions' training sets")
    bootstrap: int = Field(default=1000, ge=100, le=20000, description="bootstrap resamples for intervals")
    min_accuracy: float = Field(default=0.6, ge=0.5, lt=1.0, description="readouts need held-out accuracy CI above this")
    max_iter: int = Field(default=2000, ge=100)


@contextmanager
def _quiet() -> Iterator[None]:
    """lbfgs may stop at max_iter on separable data; the held-out metrics say how good the fit is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def make_probe(C: float, max_iter: int = 2000) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))


def lexical_groups(lexical: Sequence[Sequence[Hashable]]) -> np.ndarray:
    """Group id per row: rows that share any lexical item are in one group (connected components)."""
    parent: dict[Hashable, Hashable] = {}

    def find(a: Hashable) -> Hashable:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, items in enumerate(lexical):
        row = ("__row__", i)
        find(row)
        for it in items:
            ra, rb = find(row), find(("item", it))
            if ra != rb:
                parent[ra] = rb
    roots: dict[Hashable, int] = {}
    return np.array([roots.setdefault(find(("__row__", i)), len(roots)) for i in range(len(lexical))])


def grouped_folds(groups: Sequence[Hashable], n_folds: int, seed: int) -> Folds:
    g = np.asarray(groups)
    n_groups = len(np.unique(g))
    if n_groups < 2:
        raise ConfigError(f"grouped cross-validation needs at least 2 lexical groups, got {n_groups}")
    k = min(n_folds, n_groups)
    splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(g)), groups=g)]


def random_folds(y: Sequence[int] | np.ndarray, n_folds: int, seed: int) -> Folds:
    y = np.asarray(y)
    k = min(n_folds, int(np.bincount(y).min()))
    if k < 2:
        raise ConfigError("each class needs at least 2 rows for cross-validation")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y)]


def check_disjoint(folds: Folds, lexical: Sequence[Sequence[Hashable]]) -> None:
    """Raise if any lexical item occurs on both sides of any fold."""
    for k, (tr, te) in enumerate(folds):
        a = {x for i in tr for x in lexical[i]}
        b = {x for i in te for x in lexical[i]}
        both = a & b
        if both:
            raise ConfigError(f"fold {k}: lexical items on both sides of the split: {sorted(map(str, both))[:5]}")


def _check_xy(X: np.ndarray, y: np.ndarray) -> None:
    if X.ndim != 2 or X.shape[0] != len(y):
        raise ConfigError(f"probe data: X has shape {X.shape} for {len(y)} labels")
    if set(np.unique(y)) != {0, 1}:
        raise ConfigError(f"probe labels must contain both 0 and 1, got {sorted(set(np.unique(y)))}")
    if not np.isfinite(X).all():
        raise ConfigError("probe activations contain NaN or infinite values")


def cross_val_proba(
    X: Float[np.ndarray, "n d"], y: Sequence[int] | np.ndarray, folds: Folds, C: float, max_iter: int = 2000
) -> np.ndarray:
    """Out-of-fold P(class 1) for every row (each row is predicted by the probe that did not see it)."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    _check_xy(X, y)
    out = np.full(len(y), np.nan)
    for tr, te in folds:
        if len(np.unique(y[tr])) < 2:
            raise ConfigError("a training fold has only one class; use fewer folds or more data")
        with _quiet():
            clf = make_probe(C, max_iter).fit(X[tr], y[tr])
        out[te] = clf.predict_proba(X[te])[:, 1]
    if np.isnan(out).any():
        raise ConfigError("the folds do not cover every row")
    return out


@dataclass(frozen=True)
class FittedLinear:
    """Standardisation and logistic-regression weights of one probe fitted on all rows."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray


def fit_full(X: Float[np.ndarray, "n d"], y: Sequence[int] | np.ndarray, C: float, max_iter: int = 2000) -> FittedLinear:
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    _check_xy(X, y)
    with _quiet():
        clf = make_probe(C, max_iter).fit(X, y)
    sc, lr = clf[0], clf[-1]
    return FittedLinear(lr.coef_[0].copy(), float(lr.intercept_[0]), sc.mean_.copy(), sc.scale_.copy())


def control_labels(types: Sequence[Hashable], y: Sequence[int], seed: int) -> np.ndarray:
    """Hewitt & Liang control task: one random label per word type, drawn with the task's class balance."""
    rng = np.random.default_rng(seed)
    p = float(np.mean(y))
    table: dict[Hashable, int] = {}
    for t in sorted(set(types), key=str):
        table[t] = int(rng.random() < p)
    out = np.array([table[t] for t in types])
    if len(np.unique(out)) < 2:  # degenerate draw (few types): flip one type so both classes exist
        first = sorted(set(types), key=str)[0]
        table[first] = 1 - table[first]
        out = np.array([table[t] for t in types])
    return out


def random_direction_proba(
    X: Float[np.ndarray, "n d"], y: Sequence[int] | np.ndarray, folds: Folds, n_directions: int, seed: int
) -> np.ndarray:
    """Out-of-fold P(class 1) from 1-d probes on random directions: array [n_directions, n]."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    _check_xy(X, y)
    rng = np.random.default_rng(seed)
    out = np.full((n_directions, len(y)), np.nan)
    for k in range(n_directions):
        u = rng.standard_normal(X.shape[1])
        u /= np.linalg.norm(u)
        for tr, te in folds:
            sc = StandardScaler().fit(X[tr])
            p_tr = (sc.transform(X[tr]) @ u)[:, None]
            p_te = (sc.transform(X[te]) @ u)[:, None]
            with _quiet():
                lr = LogisticRegression(C=1.0).fit(p_tr, y[tr])
            out[k, te] = lr.predict_proba(p_te)[:, 1]
    return out

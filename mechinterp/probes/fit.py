"""Fit a reading probe on your own activations: the same standardised logistic regression, cross-validation
and :class:`~mechinterp.probes.artifact.ProbeArtifact` as the pipeline (:mod:`.train`, :mod:`.pipeline`)."""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.errors import ConfigError
from mechinterp.locate.sites import Site
from mechinterp.probes.artifact import ProbeArtifact
from mechinterp.probes.train import cross_val_proba, fit_full, grouped_folds, random_folds


def _binary(y: Sequence[Any], positive: Any) -> tuple[np.ndarray, tuple[str, str]]:
    values = list(dict.fromkeys(np.asarray(y).tolist()))
    if len(values) != 2:
        raise ConfigError(f"a probe needs exactly two classes, got {len(values)}: {sorted(map(str, values))[:5]}")
    if positive is None:
        positive = 1 if set(values) == {0, 1} else sorted(values, key=str)[0]
    if positive not in values:
        raise ConfigError(f"positive class {positive!r} is not one of the labels {sorted(map(str, values))}")
    other = next(v for v in values if v != positive)
    return np.array([int(v == positive) for v in np.asarray(y).tolist()]), (str(positive), str(other))


def fit_probe(X: Float[Tensor, "n d"] | np.ndarray, y: Sequence[Any], groups: Sequence[Hashable] | None = None,
              site: Site | None = None, positive: Any = None, C: float = 0.1, folds: int = 5, seed: int = 0,
              construction: str = "custom", max_iter: int = 2000) -> ProbeArtifact:
    """Train a linear probe on activations ``X`` with labels ``y``: held-out accuracy by cross-validation, then
    the probe fitted on all rows.

    Args:
        X: activations, one row per example (``[n, d_model]``, torch or numpy).
        y: two classes (0/1, or any two labels such as ``"ambiguous"`` / ``"unambiguous"``).
        groups: a group per row (e.g. the item); rows of a group are never on both sides of a fold. None:
            stratified random folds.
        site: where ``X`` was read (stored in the artifact; default ``Site(0, "resid_post")``, a placeholder).
        positive: the label that is class 1 (default: 1 for 0/1 labels, else the first label in sorted order).
        C: inverse L2 strength of the logistic regression.
        folds: cross-validation folds (at most the number of groups / of rows of the smaller class).
        seed: seed of the folds.
        construction: a name stored in the artifact.
        max_iter: solver iterations.

    Returns:
        A :class:`~mechinterp.probes.artifact.ProbeArtifact` (``predict_proba``, ``direction``, ``save`` /
        ``ProbeArtifact.load``); ``metrics["cv_accuracy"]`` is the held-out accuracy.

    Example:
        >>> import mechinterp as mi
        >>> model, suite, site = mi.load_model("gemma3-270m"), mi.load_suite("npz").head(8), mi.Site(6, "resid_post")
        >>> acts = mi.suite_activations(model, [suite], [site])
        >>> probe = mi.fit_probe(acts.x[site], acts.labels, groups=acts.groups, site=site)
        >>> probe.predict_proba(acts.x[site])[:3]
    """
    x = (X.detach().cpu().double().numpy() if isinstance(X, Tensor) else np.asarray(X, dtype=np.float64))
    labels, readings = _binary(y, positive)
    if groups is not None:
        if len(groups) != len(labels):
            raise ConfigError(f"fit_probe: {len(groups)} groups for {len(labels)} labels")
        codes = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)[1]
        cv = grouped_folds(codes, folds, seed)
    else:
        cv = random_folds(labels, folds, seed)
    proba = cross_val_proba(x, labels, cv, C, max_iter)
    fit = fit_full(x, labels, C, max_iter)
    return ProbeArtifact(
        coef=torch.tensor(fit.coef, dtype=torch.float32), intercept=fit.intercept,
        mean=torch.tensor(fit.mean, dtype=torch.float32), scale=torch.tensor(fit.scale, dtype=torch.float32),
        site=site if site is not None else Site(0, "resid_post"), construction=construction, readings=readings,
        training={"source": "mechinterp.probes.fit.fit_probe", "n": len(labels), "seed": seed,
                  "cv": "grouped" if groups is not None else "stratified", "folds": len(cv)},
        metrics={"cv_accuracy": float(np.mean((proba > 0.5) == labels))},
        settings={"C": C, "folds": folds, "max_iter": max_iter},
    )


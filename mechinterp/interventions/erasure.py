"""LEACE erasure of a labelled concept (the reading, or the condition) at chosen sites.

Fitting uses EleutherAI's ``concept-erasure`` (``LeaceFitter`` accumulates the statistics, its frozen
``LeaceEraser`` is the fitted map; Belrose et al. 2023): after erasure no linear classifier can predict the
label from the activations better than a constant (the class-conditional means coincide), with the least
squared change to the activations. Labels are one-hot encoded, so k classes erase a rank k-1 subspace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

import torch
from concept_erasure import LeaceEraser, LeaceFitter
from torch import Tensor

from mechinterp.errors import ConfigError
from mechinterp.interventions.base import Intervention, Scope, SiteEdit
from mechinterp.interventions.labelled import Labelled

if TYPE_CHECKING:
    from mechinterp.locate.sites import Site

Method = Literal["leace", "orth"]


def _eraser_fn(eraser: LeaceEraser):
    def fn(x: Tensor) -> Tensor:
        return eraser(x.to(eraser.proj_left.device, eraser.proj_left.dtype)).to(x.device, x.dtype)

    return fn


@dataclass(frozen=True, eq=False)
class Erasure(Intervention):
    """Fitted erasers, one per site, applied at the scope's positions."""

    erasers: tuple[tuple["Site", LeaceEraser], ...]
    scope: Scope
    classes: tuple[str, ...]
    method: Method = "leace"
    info: dict[str, Any] = field(default_factory=dict)

    def edits(self) -> list[SiteEdit]:
        return [SiteEdit(site, _eraser_fn(e)) for site, e in self.erasers]

    def describe(self) -> dict[str, Any]:
        return {"kind": "leace" if self.method == "leace" else "orth_erasure", "sites": [str(s) for s, _ in self.erasers],
                "classes": list(self.classes), "rank": [int(e.proj_left.shape[1]) for _, e in self.erasers],
                **self.scope.describe(), "fit": self.info}

    def erase(self, site: "Site", x: Tensor) -> Tensor:
        """Apply the eraser of ``site`` to activations ``x`` ``[n, d]`` (outside any forward pass)."""
        for s, e in self.erasers:
            if s == site.unpositioned:
                return _eraser_fn(e)(x)
        raise ConfigError(f"this erasure has no eraser at {site}")


def fit_eraser(x: Tensor, y: Sequence[int] | Tensor, n_classes: int, method: Method = "leace") -> LeaceEraser:
    """A LEACE (or orthogonal-projection) eraser for integer labels ``y`` of rows ``x`` (fit in float64)."""
    x = x.to(torch.float64)
    y = torch.as_tensor(y, dtype=torch.long)
    if x.shape[0] != len(y):
        raise ConfigError(f"{x.shape[0]} activations but {len(y)} labels")
    if x.shape[0] < 3:
        raise ConfigError(f"cannot fit an eraser on {x.shape[0]} rows")
    z = torch.nn.functional.one_hot(y, n_classes).to(torch.float64)
    fitter = LeaceFitter(x.shape[1], n_classes, method=method, dtype=torch.float64)
    fitter.update(x, z)
    return fitter.eraser


def fit_erasure(data: Labelled, sites: Sequence["Site"], scope: Scope, method: Method = "leace") -> Erasure:
    """Fit one eraser per site on ``data`` (labels as classes)."""
    if method not in ("leace", "orth"):
        raise ConfigError(f"unknown erasure method {method!r}: choose leace or orth")
    if not sites:
        raise ConfigError("an erasure needs at least one site")
    y = data.y()
    erasers = tuple((s.unpositioned, fit_eraser(data.at(s), y, len(data.classes), method)) for s in sites)
    return Erasure(erasers=erasers, scope=scope, classes=data.classes, method=method,
                   info={**data.info, "n_rows": len(data.labels)})

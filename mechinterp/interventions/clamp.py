"""Clamp the projection of the activations onto a reading direction to a value typical of one reading.

``x -> x + (v - <x, u>) u`` for a unit direction ``u`` at one site: the component along ``u`` is set to ``v``
and everything orthogonal to it is left alone. ``u`` comes from a trained probe
(:class:`mechinterp.probes.ProbeArtifact`'s ``direction``) or, by default, from labelled activations as the
difference of the class means (target class minus the rest). ``v`` is the median projection of the target
class's activations, optionally moved ``shift`` times the gap between the target's and the other classes'
medians further away from them (``shift=1`` clamps one gap beyond the typical target value: a stronger
commitment than the data show).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.errors import ConfigError
from mechinterp.interventions.base import Intervention, Scope, SiteEdit
from mechinterp.interventions.labelled import Labelled

if TYPE_CHECKING:
    from mechinterp.locate.sites import Site


@dataclass(frozen=True, eq=False)
class ProbeClamp(Intervention):
    """Set ``<x, direction>`` to ``value`` at ``site`` (``direction`` has unit norm)."""

    site: "Site"
    direction: Float[Tensor, "d"]
    value: float
    scope: Scope
    target: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = float(self.direction.norm())
        if self.direction.ndim != 1 or abs(n - 1.0) > 1e-4:
            raise ConfigError(f"clamp direction must be a unit vector, got shape {tuple(self.direction.shape)} norm {n:.4f}")

    def edit(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
        u = self.direction.to(x.device, torch.float64)
        xd = x.to(torch.float64)
        return (xd + (self.value - xd @ u)[:, None] * u).to(x.dtype)

    def edits(self) -> list[SiteEdit]:
        return [SiteEdit(self.site, self.edit)]

    def describe(self) -> dict[str, Any]:
        return {"kind": "clamp", "site": str(self.site), "target": self.target, "value": self.value,
                **self.scope.describe(), "fit": self.info}


def mean_difference_direction(data: Labelled, site: "Site", target: str) -> Float[Tensor, "d"]:
    """Unit vector from the mean of the other classes to the mean of ``target``."""
    x = data.at(site).to(torch.float64)
    mask = torch.tensor([label == target for label in data.labels])
    if target not in data.classes:
        raise ConfigError(f"unknown class {target!r}: the labels are {', '.join(data.classes)}")
    d = x[mask].mean(0) - x[~mask].mean(0)
    n = d.norm()
    if float(n) == 0.0:
        raise ConfigError(f"the classes have the same mean at {site}: no direction to clamp")
    return (d / n).float()


def fit_clamp(data: Labelled, site: "Site", target: str, scope: Scope, shift: float = 0.0,
              direction: Tensor | None = None, direction_source: str | None = None) -> ProbeClamp:
    """Clamp to the typical projection of class ``target`` (see module docstring)."""
    if target not in data.classes:
        raise ConfigError(f"unknown class {target!r} to clamp to: the labels are {', '.join(data.classes)}")
    if direction is None:
        u = mean_difference_direction(data, site, target)
        source = "mean_difference"
    else:
        u = torch.as_tensor(direction, dtype=torch.float32).flatten()
        if u.shape[0] != data.at(site).shape[1]:
            raise ConfigError(f"direction has {u.shape[0]} dimensions, activations at {site} have {data.at(site).shape[1]}")
        u = u / u.norm()
        source = direction_source or "given"
        # orient it towards the target class
        mask = torch.tensor([label == target for label in data.labels])
        proj = data.at(site).to(torch.float64) @ u.to(torch.float64)
        if float(proj[mask].mean()) < float(proj[~mask].mean()):
            u = -u
    proj = data.at(site).to(torch.float64) @ u.to(torch.float64)
    mask = torch.tensor([label == target for label in data.labels])
    med_t, med_o = float(proj[mask].median()), float(proj[~mask].median())
    value = med_t + shift * (med_t - med_o)
    return ProbeClamp(site=site.unpositioned, direction=u, value=value, scope=scope, target=target,
                      info={**data.info, "direction": source, "shift": shift, "median_target": med_t,
                            "median_other": med_o})


def clamp_from_probe(probe: Any, data: Labelled, target: str, scope: Scope, shift: float = 0.0) -> ProbeClamp:
    """A clamp along a trained probe's direction (``probe.direction``, at ``probe.site``), with the value
    taken from labelled activations at that site."""
    site = probe.site
    return fit_clamp(data, site, target, scope, shift=shift, direction=torch.as_tensor(probe.direction),
                     direction_source=f"probe {getattr(probe, 'name', '') or type(probe).__name__}")

"""Ablate or clamp the SAE features of one reading, changing nothing else.

At the SAE's site: ``f = encode(x)``; the chosen features are set to new values (0 to ablate, or the other
class's mean activation to clamp) giving ``f'``; the activation becomes ``x + decode(f') - decode(f)``, i.e.
``decode(f')`` plus the SAE's error term ``x - decode(f)``, so only those features' contribution changes and
the SAE's reconstruction error is not added to the model.

Which features belong to a reading: the ``n_features`` features whose mean activation is most larger in the
class to remove than in the other classes, on labelled activations (:class:`~.labelled.Labelled`); or an
explicit list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.errors import ConfigError
from mechinterp.interventions.base import Intervention, Scope, SiteEdit
from mechinterp.interventions.labelled import Labelled

if TYPE_CHECKING:
    from mechinterp.saes.load import LoadedSAE

Mode = Literal["ablate", "clamp"]


@dataclass(frozen=True, eq=False)
class SAEFeatureEdit(Intervention):
    """Set ``features`` of ``sae`` to ``values`` at the scope's positions (error term kept)."""

    sae: "LoadedSAE"
    features: tuple[int, ...]
    values: tuple[float, ...]
    scope: Scope
    mode: Mode = "ablate"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.features:
            raise ConfigError("an SAE feature edit needs at least one feature")
        if len(self.values) != len(self.features):
            raise ConfigError(f"{len(self.features)} features but {len(self.values)} values")
        bad = [f for f in self.features if not 0 <= f < self.sae.d_sae]
        if bad:
            raise ConfigError(f"features {bad} are out of range for an SAE with {self.sae.d_sae} latents")

    def edit(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
        with torch.no_grad():
            xs = x.to(self.sae.sae.W_dec.device, self.sae.sae.W_dec.dtype)
            f = self.sae.encode(xs)
            f2 = f.clone()
            idx = torch.tensor(self.features, device=f.device)
            f2[:, idx] = torch.tensor(self.values, dtype=f.dtype, device=f.device)
            return (xs + self.sae.decode(f2) - self.sae.decode(f)).to(x.device, x.dtype)

    def edits(self) -> list[SiteEdit]:
        return [SiteEdit(self.sae.site, self.edit)]

    def describe(self) -> dict[str, Any]:
        return {"kind": "sae", "mode": self.mode, "site": str(self.sae.site), "features": list(self.features),
                "values": list(self.values), "sae": self.sae.identity(), **self.scope.describe(), "fit": self.info}


def feature_means(sae: "LoadedSAE", data: Labelled, chunk: int = 2048) -> dict[str, Float[Tensor, "f"]]:
    """Mean activation of every SAE feature per class, at the SAE's site."""
    x = data.at(sae.site)
    labels = list(data.labels)
    sums = {c: torch.zeros(sae.d_sae, dtype=torch.float64) for c in data.classes}
    counts = {c: 0 for c in data.classes}
    with torch.no_grad():
        for start in range(0, x.shape[0], chunk):
            f = sae.encode(x[start : start + chunk].to(sae.sae.W_dec.dtype)).double()
            for j, lab in enumerate(labels[start : start + chunk]):
                sums[lab] += f[j]
                counts[lab] += 1
    return {c: (sums[c] / max(counts[c], 1)).float() for c in data.classes}


def select_features(sae: "LoadedSAE", data: Labelled, remove: str, n_features: int = 8) -> tuple[list[int], dict[str, Tensor]]:
    """The ``n_features`` features most specific to class ``remove`` (largest mean activation in it minus the
    mean over the other classes; only features with a positive difference), and the per-class means."""
    if remove not in data.classes:
        raise ConfigError(f"unknown class {remove!r}: the labels are {', '.join(data.classes)}")
    if n_features < 1:
        raise ConfigError(f"n_features must be at least 1, got {n_features}")
    means = feature_means(sae, data)
    others = torch.stack([m for c, m in means.items() if c != remove]).mean(0)
    diff = means[remove] - others
    order = torch.argsort(diff, descending=True)
    feats = [int(i) for i in order[:n_features] if float(diff[i]) > 0]
    if not feats:
        raise ConfigError(f"no SAE feature is more active in {remove!r} than in the other classes")
    return feats, means


def fit_sae_edit(sae: "LoadedSAE", data: Labelled, remove: str, scope: Scope, mode: Mode = "ablate",
                 n_features: int = 8, features: Sequence[int] | None = None) -> SAEFeatureEdit:
    """Ablate (set to 0) or clamp (set to the other classes' mean activation) the features of class ``remove``."""
    if mode not in ("ablate", "clamp"):
        raise ConfigError(f"unknown SAE edit mode {mode!r}: choose ablate or clamp")
    if features is None:
        feats, means = select_features(sae, data, remove, n_features)
    else:
        feats = [int(f) for f in features]
        means = feature_means(sae, data)
    others = torch.stack([m for c, m in means.items() if c != remove]).mean(0)
    values = [0.0] * len(feats) if mode == "ablate" else [float(others[f]) for f in feats]
    return SAEFeatureEdit(
        sae=sae, features=tuple(feats), values=tuple(values), scope=scope, mode=mode,
        info={**data.info, "remove": remove, "selected": features is None,
              "mean_in_removed_class": [float(means[remove][f]) for f in feats],
              "mean_in_other_classes": [float(others[f]) for f in feats]},
    )

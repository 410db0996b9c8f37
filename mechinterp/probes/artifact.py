"""A trained reading probe on disk: safetensors (the numbers) plus JSON (what it is and how well it did).

``ProbeArtifact`` is the fitted thing (frozen). The probe is a logistic regression on standardised
activations, ``P(class 1 | x) = sigmoid(coef . (x - mean) / scale + intercept)``; class 1 is the reading
people prefer (see :mod:`mechinterp.probes.labels`). The same map in the ORIGINAL activation space is
``sigmoid(weight . x + bias)`` with ``weight = coef / scale`` and ``bias = intercept - weight . mean``;
:attr:`ProbeArtifact.direction` is ``weight`` scaled to unit norm (pointing towards the preferred reading), the
direction interventions clamp or erase.

Layout of a saved probe directory::

    probe.safetensors   coef, mean, scale, weight, direction  (float32, [d_model] each)
    probe.json          intercept, bias, site, construction, readings, model, suite, training, metrics, ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from safetensors.torch import save_file
from torch import Tensor

from mechinterp.errors import CacheError, ConfigError
from mechinterp.io import atomic_dir, read_saved_tensors
from mechinterp.locate.sites import RegionPos, Site, TokenPos

FORMAT_VERSION = 1
TENSORS_FILE = "probe.safetensors"
META_FILE = "probe.json"


def site_to_dict(site: Any) -> dict[str, Any]:
    pos = site.position
    if pos is None:
        p = None
    elif isinstance(pos, TokenPos):
        p = {"kind": "token", "index": pos.index}
    elif isinstance(pos, RegionPos):
        p = {"kind": "region", "region": pos.region, "which": pos.which}
    else:  # pragma: no cover - Site validates positions
        raise ConfigError(f"cannot save position {pos!r}")
    return {"layer": site.layer, "component": site.component, "position": p, "head": site.head}


def site_from_dict(d: dict[str, Any]) -> Any:
    p = d.get("position")
    if p is None:
        pos = None
    elif p["kind"] == "token":
        pos = TokenPos(int(p["index"]))
    else:
        pos = RegionPos(p["region"], p.get("which", "last"))
    return Site(int(d["layer"]), d["component"], pos, d.get("head"))


@dataclass(frozen=True, eq=False)
class ProbeArtifact:
    """A fitted linear reading probe at one site (see module docstring): made by :func:`mechinterp.probes.fit_probe`
    or the probe pipeline, saved with :meth:`save` and read back with :meth:`load`.

    Args:
        coef: Weights on the standardised activations (``[d_model]``).
        intercept: The logistic regression's intercept.
        mean: The standardisation's mean (``[d_model]``).
        scale: The standardisation's scale (``[d_model]``, positive).
        site: Where the probe reads (:class:`~mechinterp.locate.sites.Site`).
        construction: The construction it was trained for (``"NP/Z"`` ...).
        readings: The two readings, class 1 (the one people prefer) first.
        model: The model's identity record.
        suite: The identity of the suite it was read out on, if any.
        training: How it was trained (generator, seed, texts, labels, groups ...).
        metrics: Held-out measures (``cv_accuracy`` ...).
        settings: The probe settings.

    Example:
        >>> import mechinterp as mi, torch
        >>> X = torch.randn(40, 8); y = (X[:, 0] > 0).long()
        >>> probe = mi.fit_probe(X, y, folds=2)
        >>> same = mi.ProbeArtifact.load(probe.save("probe_dir"))
        >>> torch.allclose(same.predict_proba(X), probe.predict_proba(X))
        True
    """

    coef: Float[Tensor, "d"]
    intercept: float
    mean: Float[Tensor, "d"]
    scale: Float[Tensor, "d"]
    site: Any  # mechinterp.locate.sites.Site, at the position it is read in a suite (e.g. RegionPos("ambiguous"))
    construction: str
    readings: tuple[str, str]  # (class 1 = preferred, class 0 = other)
    model: dict[str, Any] = field(default_factory=dict)
    suite: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)  # generator, seed, texts, labels, groups ...
    metrics: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("coef", "mean", "scale"):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or t.ndim != 1:
                raise ConfigError(f"probe {name} must be a 1-d tensor, got {type(t).__name__} {getattr(t, 'shape', '')}")
        if not (self.coef.shape == self.mean.shape == self.scale.shape):
            raise ConfigError(
                f"probe coef/mean/scale shapes differ: {tuple(self.coef.shape)}, {tuple(self.mean.shape)}, "
                f"{tuple(self.scale.shape)}"
            )
        if bool((self.scale <= 0).any()):
            raise ConfigError("probe scale must be positive everywhere")

    # ---- the map in the original space ---------------------------------------------------------------
    @property
    def d_model(self) -> int:
        return int(self.coef.shape[0])

    @property
    def weight(self) -> Float[Tensor, "d"]:
        return (self.coef.double() / self.scale.double()).float()

    @property
    def bias(self) -> float:
        w = self.coef.double() / self.scale.double()
        return float(self.intercept - (w * self.mean.double()).sum())

    @property
    def direction(self) -> Float[Tensor, "d"]:
        """Unit vector in the original activation space, pointing towards the preferred reading."""
        w = self.weight.double()
        n = w.norm()
        if float(n) == 0.0:
            raise ConfigError("this probe has a zero weight vector: it has no direction")
        return (w / n).float()

    @property
    def name(self) -> str:
        return f"{self.construction} {self.site}"

    def decision_function(self, acts: Float[Tensor, "n d"] | np.ndarray) -> Float[Tensor, "n"]:
        x = torch.as_tensor(np.asarray(acts) if not isinstance(acts, Tensor) else acts).double()
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.d_model:
            raise ConfigError(f"activations of shape {tuple(x.shape)} do not fit a probe of dimension {self.d_model}")
        z = (x - self.mean.double()) / self.scale.double()
        return (z @ self.coef.double() + self.intercept).float()

    def predict_proba(self, acts: Float[Tensor, "n d"] | np.ndarray) -> Float[Tensor, "n"]:
        """P(preferred reading) for each row of ``acts`` (activations at :attr:`site`, original space)."""
        return torch.sigmoid(self.decision_function(acts).double()).float()

    # ---- disk ----------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": "mechinterp.probes.ProbeArtifact",
            "intercept": float(self.intercept),
            "bias": self.bias,
            "d_model": self.d_model,
            "site": site_to_dict(self.site),
            "site_label": str(self.site),
            "construction": self.construction,
            "readings": {"class_1": self.readings[0], "class_0": self.readings[1]},
            "model": self.model,
            "suite": self.suite,
            "training": self.training,
            "metrics": self.metrics,
            "settings": self.settings,
        }

    def save(self, directory: str | Path) -> Path:
        """Write the probe into ``directory`` (created; replaced whole if it exists), atomically: the files
        are written into a temporary sibling directory which is then renamed."""
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            tensors = {
                "coef": self.coef.float().contiguous(),
                "mean": self.mean.float().contiguous(),
                "scale": self.scale.float().contiguous(),
                "weight": self.weight.contiguous(),
                "direction": self.direction.contiguous(),
            }
            save_file(tensors, str(tmp / TENSORS_FILE), metadata={"format": "mechinterp-probe"})
            (tmp / META_FILE).write_text(json.dumps(self.metadata(), indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "ProbeArtifact":
        directory = Path(directory)
        meta, tensors = read_saved_tensors(directory, "probe", TENSORS_FILE, META_FILE, FORMAT_VERSION)
        missing = {"coef", "mean", "scale"} - set(tensors)
        if missing:
            raise CacheError(f"probe in {directory} lacks tensors {sorted(missing)}")
        return cls(
            coef=tensors["coef"],
            intercept=float(meta["intercept"]),
            mean=tensors["mean"],
            scale=tensors["scale"],
            site=site_from_dict(meta["site"]),
            construction=meta["construction"],
            readings=(meta["readings"]["class_1"], meta["readings"]["class_0"]),
            model=meta.get("model") or {},
            suite=meta.get("suite"),
            training=meta.get("training") or {},
            metrics=meta.get("metrics") or {},
            settings=meta.get("settings") or {},
        )

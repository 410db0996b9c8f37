"""Load any SAE-Lens SAE directory (``cfg.json`` + ``sae_weights.safetensors``) and say where it reads.

The site comes from the hook name SAE-Lens records (``blocks.6.hook_resid_post``, TransformerLens naming,
which SAEs trained here write too); ``layer=``/``component=`` override it for SAEs without one. SAEs trained
here also carry ``training.json`` (provenance, training statistics) and ``quality.json``.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float

from mechinterp.errors import ConfigError
from mechinterp.io import sha256_file
from mechinterp.locate.sites import WHOLE_COMPONENTS, Site

log = logging.getLogger(__name__)

COMPONENTS = WHOLE_COMPONENTS
_HOOK = re.compile(r"^blocks\.(\d+)\.hook_(" + "|".join(COMPONENTS) + r")$")
QUALITY_FILE = "quality.json"
TRAINING_FILE = "training.json"


def parse_hook_name(name: str | None) -> tuple[int, str] | None:
    """(layer, component) of a TransformerLens hook name such as ``blocks.6.hook_resid_post``."""
    m = _HOOK.match(name or "")
    return (int(m.group(1)), m.group(2)) if m else None


@dataclass(frozen=True, eq=False)
class LoadedSAE:
    """An SAE-Lens SAE and the site of the model it reads and writes."""

    sae: Any  # sae_lens.SAE (inference)
    layer: int
    component: str
    path: Path | None = None
    model_name: str | None = None
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def d_in(self) -> int:
        return int(self.sae.cfg.d_in)

    @property
    def site(self) -> Any:
        return Site(self.layer, self.component)

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.component}"

    def encode(self, x: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... f"]:
        return self.sae.encode(x)

    def decode(self, f: Float[torch.Tensor, "... f"]) -> Float[torch.Tensor, "... d"]:
        return self.sae.decode(f)

    @property
    def decoder_directions(self) -> Float[torch.Tensor, "f d"]:
        """Unit-norm decoder rows (one direction per feature)."""
        w = self.sae.W_dec.detach().float()
        return w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def quality(self) -> dict[str, Any] | None:
        if self.path is None or not (self.path / QUALITY_FILE).exists():
            return None
        return json.loads((self.path / QUALITY_FILE).read_text())

    def check_model(self, model: Any) -> None:
        """Raise if ``model`` cannot host this SAE; warn if it was trained on another model."""
        if self.d_in != model.d_model:
            raise ConfigError(f"SAE {self.path} reads {self.d_in}-d activations but {model.name} has d_model "
                              f"{model.d_model}: it was trained on another model")
        if not 0 <= self.layer < model.n_layers:
            raise ConfigError(f"SAE {self.path} reads layer {self.layer}, but {model.name} has layers "
                              f"0-{model.n_layers - 1}")
        if self.model_name and self.model_name != model.name:
            warnings.warn(f"SAE {self.path} was trained on {self.model_name!r}, not on {model.name!r}", stacklevel=2)

    def identity(self) -> dict[str, Any]:
        """Provenance record: where the SAE is, a hash of its weights, its shape and site."""
        digest = None
        if self.path is not None and (self.path / "sae_weights.safetensors").exists():
            digest = sha256_file(self.path / "sae_weights.safetensors")
        return {"path": str(self.path) if self.path else None, "weights_sha256": digest,
                "architecture": self.sae.cfg.architecture(), "d_in": self.d_in, "d_sae": self.d_sae,
                "layer": self.layer, "component": self.component, "model_name": self.model_name}


def load_sae(path: str | Path, layer: int | None = None, component: str | None = None) -> LoadedSAE:
    """Load an SAE-Lens SAE directory. ``layer``/``component`` override (or supply) its site."""
    from sae_lens import SAE

    path = Path(path).expanduser()
    if not path.is_dir():
        raise ConfigError(f"SAE directory {path} does not exist")
    missing = [f for f in ("cfg.json", "sae_weights.safetensors") if not (path / f).exists()]
    if missing:
        raise ConfigError(f"{path} is not an SAE-Lens SAE directory: it has no {' or '.join(missing)}")
    try:
        cfg_raw = json.loads((path / "cfg.json").read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path / 'cfg.json'} is not valid JSON ({exc})") from exc
    try:
        sae = SAE.load_from_disk(path, device="cpu", dtype="float32")
    except Exception as exc:  # SAE-Lens raises many kinds for bad files
        raise ConfigError(f"SAE-Lens could not load {path}: {exc}") from exc
    sae.eval()
    sae.requires_grad_(False)
    if sae.cfg.normalize_activations == "expected_average_only_in":
        scaler = path / "activation_scaler.json"
        factor = json.loads(scaler.read_text()).get("scaling_factor") if scaler.exists() else None
        if factor is None:
            raise ConfigError(f"SAE {path} expects activations scaled by a norm factor that is not folded into "
                              "its weights and has no activation_scaler.json: cannot use it on raw activations")
        sae.fold_activation_norm_scaling_factor(float(factor))
    if sae.cfg.normalize_activations not in ("none", "layer_norm", "constant_norm_rescale"):
        raise ConfigError(f"SAE {path}: activation normalisation {sae.cfg.normalize_activations!r} is not supported")
    meta = cfg_raw.get("metadata") or {}
    hook = meta.get("hook_name") or cfg_raw.get("hook_name")
    parsed = parse_hook_name(hook)
    if layer is None or component is None:
        if parsed is None:
            raise ConfigError(f"SAE {path} reads hook {hook!r}, which is not a residual/attention/MLP site this "
                              f"workbench knows ({', '.join(COMPONENTS)}); give --layer and --component")
        layer = parsed[0] if layer is None else layer
        component = parsed[1] if component is None else component
    if component not in COMPONENTS:
        raise ConfigError(f"unknown component {component!r}: choose one of {', '.join(COMPONENTS)}")
    if cfg_raw.get("reshape_activations", "none") != "none" or (meta.get("hook_head_index") is not None):
        raise ConfigError(f"SAE {path} reads per-head activations (hook_z / a head index): not supported")
    training = json.loads((path / TRAINING_FILE).read_text()) if (path / TRAINING_FILE).exists() else {}
    return LoadedSAE(sae=sae, layer=int(layer), component=str(component), path=path.resolve(),
                     model_name=meta.get("model_name"), training=training)

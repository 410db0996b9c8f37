"""Models: a registry of offline pretrained models and a loaded :class:`Model` with three backends."""

from mechinterp.models.loaded import BACKENDS, Backend, Model, load_model
from mechinterp.models.registry import DEFAULT_MODEL, REGISTRY, ModelSpec, get_spec

__all__ = ["BACKENDS", "Backend", "DEFAULT_MODEL", "Model", "ModelSpec", "REGISTRY", "get_spec", "load_model"]

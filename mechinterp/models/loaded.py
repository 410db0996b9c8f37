"""A loaded model: one set of weights seen through three backends (plain HF, TransformerLens, nnsight).

``load_model(name)`` converts a registry model once (see :mod:`mechinterp.models.convert`) and then loads
the cached HF directory. The TransformerLens ``TransformerBridge`` and the nnsight model both wrap the same
``transformers`` module, so all three backends share one copy of the weights and agree to float precision.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mechinterp.errors import WeightsError
from mechinterp.io import sha256_file
from mechinterp.models import convert
from mechinterp.models.placement import Placement, dtype_name, resolve
from mechinterp.models.registry import DEFAULT_MODEL, ModelSpec, get_spec
from mechinterp.paths import cache_dir, models_dir

log = logging.getLogger(__name__)

Backend = Literal["hf", "transformer_lens", "nnsight"]
BACKENDS: tuple[Backend, ...] = ("hf", "transformer_lens", "nnsight")


@dataclass(eq=False)
class Model:
    """One model, its tokenizer, and lazily built TransformerLens / nnsight views over the same weights.

    Made by :func:`load_model`, not by hand. ``model.hf`` is the plain ``transformers`` model, ``model.tl`` a
    TransformerLens ``TransformerBridge`` and ``model.nnsight`` an nnsight ``TransformersModel``, all three over
    the very same torch modules (so a hook on a module acts whichever backend runs).

    Args:
        spec: The registry entry (or the spec of a local directory).
        path: The Hugging Face directory the weights were loaded from.
        hf: The ``transformers`` causal language model.
        tokenizer: Its tokenizer.
        weights_sha256: The sha256 of the weights, recorded in every result's provenance.

    Example:
        >>> import mechinterp as mi
        >>> model = mi.load_model("gemma3-270m")
        >>> isinstance(model, mi.Model), model.n_layers, model.d_model
        (True, 18, 640)
        >>> model.identity()["weights_sha256"] == model.weights_sha256
        True
    """

    spec: ModelSpec
    path: Path
    hf: Any  # transformers.PreTrainedModel
    tokenizer: Any
    weights_sha256: str
    _views: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def n_layers(self) -> int:
        return int(self.hf.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(self.hf.config.hidden_size)

    @property
    def n_heads(self) -> int:
        return int(self.hf.config.num_attention_heads)

    @property
    def d_head(self) -> int:
        cfg = self.hf.config
        return int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.hf.parameters())

    def _input_weight(self) -> torch.Tensor:
        """The input embedding's weight (the first parameter for a model that does not expose its embedding)."""
        try:
            return self.hf.get_input_embeddings().weight
        except (NotImplementedError, AttributeError):
            return next(self.hf.parameters())

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the input embedding (the first of several when the weights are spread)."""
        return self._input_weight().device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (activations have it too; logits are returned in float32)."""
        return self._input_weight().dtype

    @property
    def bos_token_id(self) -> int:
        """The token every sequence starts with: the tokenizer's BOS, or its EOS/end-of-text if it has none."""
        tok = self.tokenizer
        if self.spec.bos_token is not None:
            tid = tok.convert_tokens_to_ids(self.spec.bos_token)
            if tid is None or tok.convert_ids_to_tokens(int(tid)) != self.spec.bos_token:
                raise WeightsError(f"tokenizer of {self.name} has no token {self.spec.bos_token!r}")
            return int(tid)
        for tid in (tok.bos_token_id, tok.eos_token_id):
            if tid is not None:
                return int(tid)
        raise WeightsError(f"tokenizer of {self.name} has neither a BOS nor an EOS token")

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        return int(tok.pad_token_id if tok.pad_token_id is not None else self.bos_token_id)

    def identity(self) -> dict[str, Any]:
        """The provenance record of this model."""
        return {
            "name": self.spec.name,
            "display_name": self.spec.display_name,
            "source": self.spec.source,
            "package": self.spec.package,
            "path": str(self.path),
            "weights_sha256": self.weights_sha256,
            "n_params": self.n_params,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "dtype": dtype_name(self.dtype),
            "device": str(self.device),
            "device_map": sorted({str(d) for d in getattr(self.hf, "hf_device_map", {}).values()}) or None,
        }

    # ---- backends -------------------------------------------------------------------------------
    @property
    def wrapped(self) -> bool:
        """Whether a TransformerLens bridge has been built over ``self.hf``: it takes over the attention modules,
        so attention weights (routing) and attention edits (the memory ladder) then need a copy of the model of
        their own (``load_model(..., cached=False)``)."""
        return "tl" in self._views

    @property
    def tl(self) -> Any:
        """A TransformerLens ``TransformerBridge`` over ``self.hf`` (hook names as in HookedTransformer)."""
        with self._lock:
            if "tl" not in self._views:
                from transformer_lens.model_bridge import TransformerBridge

                bridge = TransformerBridge.boot_transformers(
                    str(self.path), hf_model=self.hf, tokenizer=self.tokenizer
                )
                self._views["tl"] = bridge
            return self._views["tl"]

    @property
    def nnsight(self) -> Any:
        """An nnsight ``TransformersModel`` wrapping ``self.hf`` (the same modules, not a copy)."""
        with self._lock:
            if "nnsight" not in self._views:
                from nnsight.modeling.transformers import TransformersModel

                self._views["nnsight"] = TransformersModel(self.hf, tokenizer=self.tokenizer, task="text-generation")
            return self._views["nnsight"]


def _hf_dir_hash(path: Path) -> str:
    """sha256 over a local directory's weight files, cached by (path, size, mtime)."""
    files = convert.weights_files(path)
    if not files:
        raise WeightsError(f"{path} has no *.safetensors or *.bin weights file")
    key = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    store = cache_dir() / "hf-dir-hashes.json"
    try:
        known = json.loads(store.read_text())
    except (OSError, json.JSONDecodeError):
        known = {}
    k = json.dumps(key)
    if k not in known:
        h = hashlib.sha256()
        for f in files:
            h.update(sha256_file(f).encode())
        known[k] = h.hexdigest()
        tmp = store.with_suffix(".tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(store)
    return known[k]


def model_dir(spec: ModelSpec, rebuild: bool = False) -> tuple[Path, str]:
    """The HF directory for ``spec`` (converting a GGUF on first use) and its weights hash."""
    if spec.source == "hf-dir":
        path = spec.locate()
        return path, _hf_dir_hash(path)
    target = models_dir() / convert.cache_slug(spec.name)
    if rebuild or not (target / convert.MARKER).exists():
        gguf = spec.locate()
        log.warning("converting %s from %s into %s (once; about 1-2 minutes)", spec.name, gguf, target)
        convert.convert_gguf(gguf, target, spec.name)
    marker = convert.read_marker(target)
    return target, convert.verify_weights(target, marker)


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, placement: Placement) -> Model:
    return _load(name, placement, rebuild=False)


def load_model(
    name: str | Path = DEFAULT_MODEL, device: str = "auto", dtype: "str | torch.dtype" = "float32",
    cached: bool = True, rebuild: bool = False,
) -> Model:
    """Load a registry model by name, or a local HF directory by path, with no network access.

    Args:
        name: a registry name (``"gemma3-270m"``, ``"smollm2-135m"``) or a local Hugging Face model directory.
        device: ``auto`` (a GPU when there is one, spread over several GPUs when there are several; else the
            CPU), ``cpu``, ``cuda`` or ``cuda:N`` (see :mod:`mechinterp.models.placement`).
        dtype: the weights' dtype: ``float32`` (default), ``bfloat16`` or ``float16``. Logits, surprisal and
            log-sum-exp stay in float32 whatever it is.
        cached: return the same :class:`Model` for repeated calls in one process.
        rebuild: convert the registry model's GGUF again.

    Returns:
        A :class:`Model` (``model.hf``, ``model.tl``, ``model.nnsight`` over the same weights).

    Example:
        >>> import mechinterp as mi
        >>> model = mi.load_model("gemma3-270m")
        >>> model.name, model.n_layers
        ('gemma3-270m', 18)
        >>> mi.load_model("gemma3-270m", device="cpu", dtype="bfloat16").dtype
        torch.bfloat16
    """
    placement = resolve(device, dtype)
    if cached and not rebuild:
        return _load_cached(str(name), placement)
    return _load(name, placement, rebuild)


def _load(name: str | Path, placement: Placement, rebuild: bool) -> Model:
    spec = get_spec(name)
    path, digest = model_dir(spec, rebuild=rebuild)
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        kw: dict[str, Any] = {"device_map": placement.device_map} if placement.device_map else {}
        hf = AutoModelForCausalLM.from_pretrained(str(path), dtype=placement.dtype, attn_implementation="eager", **kw)
    except Exception as exc:
        raise WeightsError(
            f"could not load the model in {path}: {exc}. If this is a converted registry model, delete {path} "
            f"(or run `mechinterp models --rebuild {spec.name}`) to convert it again."
        ) from exc
    hf.eval()
    hf.requires_grad_(False)
    if placement.device_map is None:
        hf.to(placement.device)
    return Model(spec=spec, path=path, hf=hf, tokenizer=tok, weights_sha256=digest)

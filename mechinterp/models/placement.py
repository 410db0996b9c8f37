"""Where a model's weights live and in which number format: the ``--device`` and ``--dtype`` grammar.

Devices: ``auto`` (a CUDA GPU when there is one, else the CPU; with several GPUs the weights are spread over
all of them with ``device_map="auto"`` from accelerate, so a model larger than one GPU loads), ``cpu``,
``cuda`` (the current GPU) or ``cuda:N``. Dtypes: ``float32`` (the default, and the only one that gives
bit-identical results across batch sizes on the CPU), ``bfloat16`` and ``float16``. Whatever the weights'
dtype, logits are returned in float32 (:func:`mechinterp.forward.logits`), so surprisal, entropy and every
log-sum-exp are computed in float32; activations keep the model's dtype.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from mechinterp.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Placement:
    """A resolved ``--device``/``--dtype`` pair.

    Args:
        device: the torch device of the inputs (the device of the embedding when the weights are spread).
        dtype: the weights' dtype.
        device_map: ``"auto"`` when the weights are spread over several GPUs by accelerate, else None.
    """

    device: str
    dtype: torch.dtype
    device_map: str | None = None



def dtype_name(dtype: torch.dtype) -> str:
    """The name of a torch dtype as written in provenance and cache keys (``torch.bfloat16`` -> ``bfloat16``)."""
    return str(dtype).removeprefix("torch.")


def check_device(text: str) -> str:
    """The device grammar, checked without looking at the hardware (argparse ``type=``)."""
    t = str(text).strip().lower()
    if t in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", t):
        return t
    raise ConfigError(f"unknown device {text!r}: choose auto, cpu, cuda or cuda:N (N a GPU number)")


def check_dtype(text: str | torch.dtype) -> torch.dtype:
    """A dtype name (``float32``, ``bfloat16``, ``float16``) or a torch dtype among them."""
    if isinstance(text, torch.dtype):
        if text in DTYPES.values():
            return text
    elif str(text).strip().lower() in DTYPES:
        return DTYPES[str(text).strip().lower()]
    raise ConfigError(f"unknown dtype {text!r}: choose {', '.join(DTYPES)}")


def resolve(device: str = "auto", dtype: str | torch.dtype = "float32") -> Placement:
    """Resolve ``device`` against the hardware present.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``float32``, ``bfloat16`` or ``float16`` (or the torch dtype).

    Returns:
        The :class:`Placement`; ConfigError (one line naming the problem) for a GPU that is not there.

    Example:
        >>> resolve("cpu", "bfloat16")
        Placement(device='cpu', dtype=torch.bfloat16, device_map=None)
    """
    dev, dt = check_device(device), check_dtype(dtype)
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dev == "auto":
        if n_gpus == 0:
            return Placement("cpu", dt)
        if n_gpus == 1:
            return Placement("cuda:0", dt)
        return Placement("cuda:0", dt, device_map="auto")
    if dev.startswith("cuda"):
        if n_gpus == 0:
            raise ConfigError(f"device {dev!r}: no CUDA GPU is available here (torch.cuda.is_available() is "
                              "False); use --device cpu or auto")
        index = int(dev.split(":")[1]) if ":" in dev else torch.cuda.current_device()
        if index >= n_gpus:
            raise ConfigError(f"device {dev!r}: this machine has {n_gpus} GPU(s), cuda:0 to cuda:{n_gpus - 1}")
        return Placement(f"cuda:{index}", dt)
    return Placement("cpu", dt)

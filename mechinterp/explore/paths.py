"""Which files the explorer may read: every path it takes from a URL query parameter or a field is checked
here, in one place, before anything opens it.

Allowed are: the results directory the explorer was started on, the data shipped with the package (built-in
suites, ``sap:<Subset>`` names, :func:`mechinterp.datasets.data_dir`), the model registry's names, the model and
suite the explorer was started on, and the extra folders given with ``mechinterp explore --allow-path DIR``
(passed to the app in ``MECHINTERP_EXPLORER_ALLOW``, separated by :data:`os.pathsep`). Anything else is refused
with a message that names the path typed, never what the file holds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mechinterp.datasets import data_dir
from mechinterp.errors import ConfigError
from mechinterp.interventions.spec import ClampSpec, FittedSpec, SAESpec, parse_spec
from mechinterp.models.registry import REGISTRY
from mechinterp.stimuli import builtin_suites
from mechinterp.stimuli.library import BUILTIN_DIR

if TYPE_CHECKING:
    from mechinterp.interventions.spec import InterventionSpec

ENV_ALLOW = "MECHINTERP_EXPLORER_ALLOW"
ENV_MODEL = "MECHINTERP_EXPLORER_MODEL"
ENV_RESULTS = "MECHINTERP_EXPLORER_RESULTS"
ENV_SUITE = "MECHINTERP_EXPLORER_SUITE"
ENV_DEVICE = "MECHINTERP_EXPLORER_DEVICE"  # --device and --dtype of `mechinterp explore`
ENV_DTYPE = "MECHINTERP_EXPLORER_DTYPE"
_SAP_NAME = re.compile(r"sap:[A-Za-z0-9_]+", re.IGNORECASE)
_FIT_NAMES = ("readings",)


class PathRefused(ConfigError):
    """A path outside the folders the explorer may read."""


def _resolve(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def allowed_roots(environ: dict[str, str] | None = None) -> tuple[Path, ...]:
    """The folders (and single files) the explorer may read, from its environment.

    Args:
        environ: The environment to read (default :data:`os.environ`).

    Returns:
        Resolved paths: the results directory, the package's data, the start model and suite when they are
        paths, and every ``MECHINTERP_EXPLORER_ALLOW`` entry.
    """
    env = os.environ if environ is None else environ
    roots = [env.get(ENV_RESULTS) or "out", BUILTIN_DIR]
    try:
        roots.append(data_dir())
    except ConfigError:  # a MECHINTERP_DATA that does not exist: nothing to allow there
        pass
    model = env.get(ENV_MODEL)
    if model and model not in REGISTRY:
        roots.append(model)
    suite = env.get(ENV_SUITE)
    if suite and not _is_named_suite(suite):
        roots.append(suite)
    roots += [p for p in (env.get(ENV_ALLOW) or "").split(os.pathsep) if p.strip()]
    return tuple(dict.fromkeys(_resolve(r) for r in roots))


def confine(path: str | Path, allowed: Iterable[Path], what: str = "path") -> Path:
    """``path`` resolved (``~``, ``..`` and symlinks), if it lies inside one of ``allowed``.

    Args:
        path: The path as typed (relative paths are relative to the server's working directory).
        allowed: Resolved roots, e.g. :func:`allowed_roots`.
        what: What the path is for, for the message.

    Returns:
        The resolved path.

    Raises:
        PathRefused: The path is empty or lies outside every root; the message names the path as typed and
            says how to allow a folder, and never reads the file.
    """
    text = str(path).strip()
    if not text or "\x00" in text:
        raise PathRefused(f"{what}: no path given")
    resolved = _resolve(text)
    for root in allowed:
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    raise PathRefused(f"{what} {text!r} is refused: the explorer reads only the results directory, the data "
                      "shipped with the package and folders allowed with `mechinterp explore --allow-path DIR`")


def _is_named_suite(spec: str) -> bool:
    return spec in builtin_suites() or bool(_SAP_NAME.fullmatch(spec))


def suite_spec(spec: str, allowed: Iterable[Path]) -> str:
    """A suite for :func:`mechinterp.stimuli.load_suite`: a built-in name or ``sap:<Subset>`` as given, a
    file only inside ``allowed`` (resolved)."""
    spec = spec.strip()
    if _is_named_suite(spec):
        return spec
    return str(confine(spec, allowed, "suite file"))


def model_name(name: str, allowed: Iterable[Path]) -> str:
    """A model for :func:`mechinterp.models.load_model`: a registry name as given, a local directory only
    inside ``allowed`` (resolved)."""
    name = name.strip()
    if name in REGISTRY:
        return name
    return str(confine(name, allowed, "model directory"))


def check_spec(text: str, allowed: Iterable[Path]) -> InterventionSpec:
    """Parse an intervention spec typed into the page: ``@file`` is refused, and every path in it (SAE
    directories, probe artifacts, fit suite files) must lie inside ``allowed``.

    Returns:
        The parsed spec, with its paths resolved.
    """
    allowed = tuple(allowed)
    spec = parse_spec(text, files=False)
    parts = []
    for part in spec.parts:
        update: dict = {}
        if isinstance(part, SAESpec):
            update["sae"] = str(confine(part.sae, allowed, "SAE directory"))
        if isinstance(part, ClampSpec) and part.probe:
            update["probe"] = str(confine(part.probe, allowed, "probe"))
        if isinstance(part, FittedSpec) and part.fit:
            update["fit"] = tuple(f if f in _FIT_NAMES else suite_spec(f, allowed) for f in part.fit)
        parts.append(part.model_copy(update=update) if update else part)
    return spec.model_copy(update={"parts": tuple(parts)})

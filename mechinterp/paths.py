"""Where the workbench keeps converted models and other caches.

``MECHINTERP_CACHE`` moves the whole cache; otherwise the platform's user cache directory is used
(``~/.cache/mechinterp`` on Linux).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_CACHE = "MECHINTERP_CACHE"


def cache_dir() -> Path:
    root = os.environ.get(ENV_CACHE)
    path = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("mechinterp"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path

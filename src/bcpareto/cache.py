"""Where bcpareto caches what it can compute again: decoded images, source groups, teacher outputs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``BCPARETO_CACHE``, else ``~/.cache/bcpareto``."""
    return Path(os.environ.get("BCPARETO_CACHE") or Path.home() / ".cache" / "bcpareto")

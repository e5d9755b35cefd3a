"""Where converted models, tokenised data and downloads are cached."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$QUANTUM_FT_CACHE, else $XDG_CACHE_HOME/quantum_ft, else ~/.cache/quantum_ft (created)."""
    if os.environ.get("QUANTUM_FT_CACHE"):
        path = Path(os.environ["QUANTUM_FT_CACHE"])
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "quantum_ft"
    path.mkdir(parents=True, exist_ok=True)
    return path

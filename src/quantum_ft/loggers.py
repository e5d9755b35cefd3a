"""Logger factories that need a decision at run time (the `logger` config group)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def wandb_logger(offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """W&B online when an API key or a login (netrc) is present, offline otherwise (`wandb sync` later)."""
    if offline is None:
        netrc = Path.home() / ".netrc"
        logged_in = netrc.is_file() and "api.wandb.ai" in netrc.read_text()
        offline = not (os.environ.get("WANDB_API_KEY") or logged_in)
    return WandbLogger(offline=offline, **kwargs)

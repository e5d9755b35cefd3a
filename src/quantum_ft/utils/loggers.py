"""Logger factories that need a decision at run time."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def wandb_logger(offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """W&B online when an API key or a login (netrc) is present, offline otherwise (`wandb sync` later)."""
    if offline is None:
        netrc = os.path.expanduser("~/.netrc")
        logged_in = os.path.isfile(netrc) and "api.wandb.ai" in open(netrc).read()
        offline = not (os.environ.get("WANDB_API_KEY") or logged_in)
    return WandbLogger(offline=offline, **kwargs)

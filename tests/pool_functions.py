"""Functions the worker-pool tests run in worker processes (`python -m quantum_ft.utils.pool` imports them)."""

from __future__ import annotations

import os
import time
from typing import Any


def behave(item: dict[str, Any]) -> Any:
    """Echo the item, or misbehave as it asks: hang, die without answering, or raise."""
    action = item.get("action", "echo")
    if action == "hang":
        time.sleep(3600)
    if action == "die":
        os._exit(3)
    if action == "raise":
        raise RuntimeError("asked to")
    if action == "print":
        print("stray output must not reach the parent as an answer")
    return {"value": item.get("value"), "pid": os.getpid()}

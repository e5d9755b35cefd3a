"""Learning-rate schedules as multipliers of the peak rate: linear warmup, then cosine / linear / constant."""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("cosine", "linear", "constant")


def lr_lambda(name: str, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    if name not in SCHEDULES:
        raise ValueError(f"Unknown scheduler {name!r}; choose one of {SCHEDULES}.")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if name == "cosine" else 1 - progress
        return min_ratio + (1 - min_ratio) * decay

    return factor

"""`train/tokens_per_s` for any stage: the tokens a training step processed (the stage's `step_tokens`: attention
tokens for SFT, generated tokens for GRPO) over the step's wall time."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class Throughput(L.Callback):
    def __init__(self) -> None:
        self._started = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        pl_module.log("train/tokens_per_s", pl_module.step_tokens / elapsed, on_step=True, batch_size=1)

"""Test-only callbacks, importable from configs as tests.helpers.X."""

from __future__ import annotations

import lightning as L


class Interrupt(RuntimeError):
    pass


class InterruptAfterStep(L.Callback):
    """Simulates a crash: raises once `global_step` reaches `step` (after that step's checkpoint, if any)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise Interrupt(f"simulated crash after step {trainer.global_step}")

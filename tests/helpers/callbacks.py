"""Test-only callbacks, importable from configs as tests.helpers.X."""

from __future__ import annotations

import lightning as L
import torch


class Interrupt(RuntimeError):
    pass


class InterruptAfterStep(L.Callback):
    """Simulates a crash: raises once `global_step` reaches `step` (after that step's checkpoint, if any)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise Interrupt(f"simulated crash after step {trainer.global_step}")


class _EmbeddingHook(L.Callback):
    """A forward hook on the model's input embeddings (every training and validation forward passes there, fused
    loss or not), active during training batches only."""

    def __init__(self) -> None:
        self.training_batch = False
        self.step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        pl_module.model.get_input_embeddings().register_forward_hook(self._hook)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.training_batch, self.step = True, trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.training_batch = False

    def _hook(self, module, args, output):
        return self.change(args[0], output) if self.training_batch else output

    def change(self, input_ids, output):
        return output


class OutOfMemoryAbove(_EmbeddingHook):
    """From optimiser step `step` on, a training forward over more than `rows` rows raises torch.OutOfMemoryError,
    as a device that is too small would; `rows_trained` counts the rows of the forwards that went through."""

    def __init__(self, step: int, rows: int) -> None:
        super().__init__()
        self.from_step, self.rows = step, rows
        self.rows_trained = 0

    def change(self, input_ids, output):
        if self.step >= self.from_step and input_ids.shape[0] > self.rows:
            raise torch.OutOfMemoryError(f"simulated: {input_ids.shape[0]} rows do not fit, {self.rows} do")
        self.rows_trained += input_ids.shape[0]
        return output


class NaNLossAt(_EmbeddingHook):
    """At the optimiser steps listed (or every step from `from_step` on), the forward's activations become NaN,
    and with them the loss and every gradient."""

    def __init__(self, steps: list[int] = (), from_step: int | None = None) -> None:
        super().__init__()
        self.steps, self.from_step = set(steps), from_step

    def change(self, input_ids, output):
        if self.step in self.steps or (self.from_step is not None and self.step >= self.from_step):
            return output * float("nan")
        return output


class MemoryCap(L.Callback):
    """A device that holds `rows` rows of a training forward and no more: a forward hook on the input embeddings,
    installed at setup (so it also acts while Lightning's tuner has the other callbacks removed), raises the CPU
    allocator's out-of-memory error above that. Counts the rows of the forwards that went through and the failures."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.rows_trained = self.failures = 0
        self._installed = False

    def setup(self, trainer, pl_module, stage) -> None:
        if not self._installed:
            pl_module.model.get_input_embeddings().register_forward_hook(self._hook)
            self._installed = True

    def _hook(self, module, args, output):
        if not module.training:
            return output
        rows = args[0].shape[0]
        if rows > self.rows:
            self.failures += 1
            raise RuntimeError(f"DefaultCPUAllocator: can't allocate memory: {rows} rows (simulated cap {self.rows})")
        self.rows_trained += rows
        return output

"""Skip updates whose loss or gradient is non-finite or whose loss spikes; after `patience` such steps in a row,
roll back to the last good state with a lower learning rate; after `max_rollbacks` rollbacks, stop with a clear
message. Nothing saved is touched: checkpoints on disk stay as they were.

How a step is skipped: in `on_before_optimizer_step` (after the backward, before clipping and the update) every
gradient is set to None, and torch optimisers leave a parameter without a gradient alone (no moment update, no
weight decay). The step still counts (global_step, the schedule, the data position), so the run ends where it
would have. The "last good state" is a copy in memory of the trainable tensors and the optimiser state, taken at
the start and every `snapshot_every` good steps: LoRA-sized for adapters, three times the model for full
fine-tuning with AdamW (set snapshot_every=0 to keep only the start's copy).

The loss checked is the last micro-batch's (what the stage's training_step reports as `last_loss`: SFT and the
causal-LM stages; GRPO's loss has no scale a spike rule could read, so there only gradients are checked);
non-finite values in any micro-batch show in the gradient check. fp16 autocast (16-mixed) skips non-finite steps itself
(its grad scaler); there the guard acts on spikes only.
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
from collections import deque
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    pass


def spike(loss: float, history: list[float], factor: float, min_history: int) -> float | None:
    """The median the loss exceeds `factor` times, or None (too little history, or no spike)."""
    if len(history) < min_history:
        return None
    median = statistics.median(history)
    return median if median > 0 and loss > factor * median else None


class LossGuard(L.Callback):
    def __init__(
        self,
        spike_factor: float = 4.0,
        window: int = 20,
        patience: int = 3,
        lr_factor: float = 0.5,
        max_rollbacks: int = 2,
        snapshot_every: int = 50,
    ) -> None:
        if spike_factor <= 1 or window < 1 or patience < 1 or not 0 < lr_factor < 1 or max_rollbacks < 0:
            raise ValueError(
                "callbacks.loss_guard needs spike_factor > 1, window >= 1, patience >= 1, 0 < lr_factor < 1 and "
                f"max_rollbacks >= 0; got {spike_factor=}, {window=}, {patience=}, {lr_factor=}, {max_rollbacks=}."
            )
        self.spike_factor, self.window, self.patience = spike_factor, window, patience
        self.lr_factor, self.max_rollbacks, self.snapshot_every = lr_factor, max_rollbacks, snapshot_every
        self.history: deque[float] = deque(maxlen=window)
        self.bad_in_a_row = self.skipped = self.rollbacks = 0
        self._snapshot: dict[str, Any] | None = None

    # ---------------------------------------------------------------- checks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_snapshot(trainer, pl_module)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        loss = getattr(pl_module, "last_loss", None)
        loss = None if loss is None else float(loss)
        reason = self._problem(loss, pl_module)
        if reason is None:
            if loss is not None:
                self.history.append(loss)
            self.bad_in_a_row = 0
            if self.snapshot_every and trainer.global_step - self._snapshot["step"] >= self.snapshot_every:
                self._take_snapshot(trainer, pl_module)
            return
        for p in pl_module.parameters():
            p.grad = None
        self.skipped += 1
        self.bad_in_a_row += 1
        log.warning(
            "Step %d: %s; update skipped (%d in a row; a rollback after %d).",
            trainer.global_step,
            reason,
            self.bad_in_a_row,
            self.patience,
        )
        if self.bad_in_a_row >= self.patience:
            self._roll_back(trainer, pl_module, reason)

    def _problem(self, loss: float | None, pl_module: L.LightningModule) -> str | None:
        if loss is not None and not math.isfinite(loss):
            return f"non-finite loss ({loss})"
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([n.float() for n in torch._foreach_norm(grads)]).sum()):
            return "non-finite gradient"
        median = None if loss is None else spike(loss, list(self.history), self.spike_factor, max(1, self.window // 2))
        if median is not None:
            return f"loss spike ({loss:.4g} > {self.spike_factor:g} x the median {median:.4g} of recent steps)"
        return None

    # ---------------------------------------------------------------- rollback
    def _take_snapshot(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self._snapshot = {
            "step": trainer.global_step,
            "params": {n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad},
            "optimizer": copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None,
        }

    def _roll_back(self, trainer: L.Trainer, pl_module: L.LightningModule, reason: str) -> None:
        if self.rollbacks >= self.max_rollbacks:
            raise TrainingDiverged(
                f"Training diverged at step {trainer.global_step}: {self.bad_in_a_row} updates in a row skipped "
                f"({reason}) after {self.rollbacks} rollback(s). Lower optimizer.lr, check the data for broken "
                "samples, or raise callbacks.loss_guard.max_rollbacks. Checkpoints written so far are intact."
            )
        snap = self._snapshot
        with torch.no_grad():
            for name, p in pl_module.named_parameters():
                if name in snap["params"]:
                    p.copy_(snap["params"][name])
        optimizer = trainer.optimizers[0]
        lrs = [g["lr"] for g in optimizer.param_groups]
        if snap["optimizer"] is not None:
            optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr * self.lr_factor
        for config in trainer.lr_scheduler_configs:
            config.scheduler.base_lrs = [lr * self.lr_factor for lr in config.scheduler.base_lrs]
        self.rollbacks += 1
        self.bad_in_a_row = 0
        log.warning(
            "Rolled back to the state after step %d and lowered the learning rate x%g (rollback %d of at most %d).",
            snap["step"],
            self.lr_factor,
            self.rollbacks,
            self.max_rollbacks,
        )

    # ---------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            "bad_in_a_row": self.bad_in_a_row,
            "skipped": self.skipped,
            "rollbacks": self.rollbacks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = deque(state["history"], maxlen=self.window)
        self.bad_in_a_row, self.skipped, self.rollbacks = state["bad_in_a_row"], state["skipped"], state["rollbacks"]

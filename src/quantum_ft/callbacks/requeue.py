"""Preemption and time limits under submitit: checkpoint at a step boundary, then let submitit requeue.

SLURM sends USR2 before the time limit (`signal_delay_s`) or on preemption; submitit's handler would requeue at once,
from wherever the training loop happens to be. This callback defers it: the signal only raises a flag, every rank
agrees on the flag at the end of the next optimiser step, all ranks save `last.ckpt` together, and before the step
after it submitit's own handler requeues the job. The requeued job runs the same frozen config in the same output
directory and `ckpt_path=auto` resumes from that checkpoint, so it ends with the same number of optimiser steps.
Lightning's own SLURM auto-requeue (USR1) is not involved: under submitit the trainer runs with SubmititEnvironment.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L

from quantum_ft.cluster.environment import SubmititEnvironment

log = logging.getLogger(__name__)


def _preemption_signal() -> signal.Signals:
    from submitit.core.job_environment import JobEnvironment

    return JobEnvironment._usr_sig()


class CheckpointAndRequeue(L.Callback):
    """Under submitit, turn the preemption signal into `last.ckpt` + requeue at the next step boundary."""

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath
        self._requested = False
        self._saved = False
        self._submitit_handler: Any = None
        self._signal: signal.Signals | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not SubmititEnvironment.detect():
            return
        self._signal = _preemption_signal()
        self._submitit_handler = signal.getsignal(self._signal)
        signal.signal(self._signal, self._on_signal)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._signal is not None:
            signal.signal(self._signal, self._submitit_handler)
            self._signal = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.warning("Received %s: checkpointing at the end of this step, then requeueing", signal.Signals(signum).name)
        self._requested = True

    def checkpoint_path(self, trainer: L.Trainer) -> Path:
        if self.dirpath:
            return Path(self.dirpath) / "last.ckpt"
        callback = trainer.checkpoint_callback
        dirpath = getattr(callback, "dirpath", None) or Path(trainer.default_root_dir) / "checkpoints"
        return Path(dirpath) / "last.ckpt"

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """At the end of an optimiser step (where ModelCheckpoint saves too, the state resume is exact from)."""
        if self._signal is None or self._saved or trainer.fit_loop._should_accumulate():
            return
        if not trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            return
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path)  # every rank takes part; rank 0 writes, atomically
        trainer.strategy.barrier("checkpoint-before-requeue")
        log.warning("Saved %s at step %d", path, trainer.global_step)
        self._saved = True

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        """Leave before the next step, once the saved step's metrics have reached the loggers."""
        if not self._saved:
            return
        log.warning("Handing over to submitit to requeue the job")
        if trainer.is_global_zero and callable(self._submitit_handler):
            self._submitit_handler(self._signal, None)  # requeues the job and exits the process
        sys.exit(-1)  # the other ranks end too; the requeued job starts all of them again

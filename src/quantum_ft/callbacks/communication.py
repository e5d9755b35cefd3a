"""Logs what a distributed strategy put on the wire: `comm/bytes` and `comm/all_reduces`."""

from __future__ import annotations

from typing import Any

import lightning as L

from quantum_ft.distributed.strategies import CommunicationMeter


class LogCommunication(L.Callback):
    """Logs `comm/bytes` (payload bytes each worker put into all-reduces) and `comm/all_reduces`; keeps the
    counters across a resume."""

    def __init__(self) -> None:
        self._loaded: dict[str, int] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        meter = trainer.strategy
        if not isinstance(meter, CommunicationMeter):
            raise ValueError("LogCommunication needs trainer.strategy to be DiLoCoStrategy or MeteredDDPStrategy.")
        if self._loaded:
            meter.comm_bytes, meter.comm_calls = self._loaded["bytes"], self._loaded["calls"]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        meter = trainer.strategy
        pl_module.log("comm/bytes", float(meter.comm_bytes), on_step=True, batch_size=1, reduce_fx="max")
        pl_module.log("comm/all_reduces", float(meter.comm_calls), on_step=True, batch_size=1, reduce_fx="max")

    def state_dict(self) -> dict[str, Any]:
        strategy = getattr(self, "_strategy", None)
        return {"bytes": strategy.comm_bytes, "calls": strategy.comm_calls} if strategy else {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._strategy = trainer.strategy

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loaded = state or None

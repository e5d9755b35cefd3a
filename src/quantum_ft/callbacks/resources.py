"""Resource monitor: per training step its wall time, the process's resident memory and CPU utilisation (CPU
seconds of this process and its children over wall seconds x the cores it may run on) and, on CUDA, memory allocated and
reserved and the device's utilisation; each under `train/resources/<name>`. Tokens/s stays the Throughput
callback's `train/tokens_per_s` (one figure, one owner). A threshold in config (`thresholds:
{rss_gb: 20}`) warns once, when the value first crosses it, naming the value, the limit and the key to change.

Left out: per-thread and I/O counters (psutil has them; no one has asked yet), and acting on a threshold: this
callback only watches."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import lightning as L
import psutil
import torch

from quantum_ft.utils.config import ConfigError

log = logging.getLogger(__name__)
METRICS = ("step_s", "rss_gb", "cpu_util", "cuda_allocated_gb", "cuda_reserved_gb", "cuda_util")


class ResourceMonitor(L.Callback):
    def __init__(self, every_n_steps: int = 1, thresholds: dict[str, float] | None = None) -> None:
        unknown = sorted(set(thresholds or {}) - set(METRICS))
        if unknown:
            raise ConfigError(
                f"callbacks.resource_monitor.thresholds has unknown metrics {unknown}; it knows {list(METRICS)}."
            )
        self.every_n_steps = max(1, every_n_steps)
        self.thresholds = dict(thresholds or {})
        self.warned: set[str] = set()
        self._process = psutil.Process()
        # the cores this process may use (a SLURM job or taskset narrows them), not the machine's
        affinity = getattr(self._process, "cpu_affinity", None)  # absent on macOS
        self._cores = len(affinity()) if affinity else (psutil.cpu_count() or 1)
        self._started = self._cpu_started = 0.0

    def _cpu_seconds(self) -> float:
        t = self._process.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._started, self._cpu_started = time.perf_counter(), self._cpu_seconds()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        wall = max(time.perf_counter() - self._started, 1e-9)
        values = {
            "step_s": wall,
            "rss_gb": self._process.memory_info().rss / 2**30,
            "cpu_util": (self._cpu_seconds() - self._cpu_started) / (wall * self._cores),
        }
        if pl_module.device.type == "cuda":
            values["cuda_allocated_gb"] = torch.cuda.memory_allocated(pl_module.device) / 2**30
            values["cuda_reserved_gb"] = torch.cuda.memory_reserved(pl_module.device) / 2**30
            with contextlib.suppress(Exception):  # needs pynvml / amdsmi; the memory figures do not
                values["cuda_util"] = float(torch.cuda.utilization(pl_module.device))
        for name, value in values.items():
            pl_module.log(f"train/resources/{name}", value, on_step=True, batch_size=1)
        self.check(values, trainer.global_step)

    def check(self, values: dict[str, float], step: int) -> None:
        """One warning per metric, the first time it goes above its threshold."""
        for name, limit in self.thresholds.items():
            value = values.get(name)
            if value is not None and value > limit and name not in self.warned:
                self.warned.add(name)
                log.warning(
                    "resource monitor: %s = %.3g passed its threshold %.3g at step %d (warned once; change "
                    "callbacks.resource_monitor.thresholds.%s to move it)",
                    name,
                    value,
                    limit,
                    step,
                    name,
                )

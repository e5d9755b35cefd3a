"""Strategies for the distributed stages, on Lightning's DDP process-group machinery (gloo on CPU, NCCL on GPU).

- `DiLoCoStrategy`: DDP's process groups without the DistributedDataParallel wrapper, so no gradient is
  communicated between DiLoCo's outer steps (the outer loop itself is the callback quantum_ft.callbacks.DiLoCo).
- `MeteredDDPStrategy`: the DDP baseline, counting the bytes its gradient all-reduces carry.
Both count what they send (`CommunicationMeter`), which quantum_ft.callbacks.LogCommunication logs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks


class CommunicationMeter:
    """Payload bytes and calls of the all-reduces a strategy issued for training (per instance: `+=` on the
    class defaults creates the instance's own counters)."""

    comm_bytes: int = 0
    comm_calls: int = 0

    def count(self, tensor: torch.Tensor) -> None:
        self.comm_bytes += tensor.numel() * tensor.element_size()
        self.comm_calls += 1


class DiLoCoStrategy(DDPStrategy, CommunicationMeter):
    strategy_name = "diloco"

    def configure_ddp(self) -> None:
        """No DistributedDataParallel: workers train independently between outer steps."""

    def all_reduce_mean(self, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        buffer = tensor.to(dtype)
        self.count(buffer)
        if self.world_size > 1:
            dist.all_reduce(buffer)
        return buffer.to(tensor.dtype) / self.world_size


def _counting_allreduce(meter, bucket):  # no annotations: torch checks them, and ours are strings here
    """DDP's own all-reduce hook, after counting the bucket's bytes."""
    meter.count(bucket.buffer())
    return default_hooks.allreduce_hook(None, bucket)


class MeteredDDPStrategy(DDPStrategy, CommunicationMeter):
    """Plain DDP whose gradient buckets are counted on their way to the all-reduce."""

    strategy_name = "ddp_metered"

    def configure_ddp(self) -> None:
        super().configure_ddp()
        self.model.register_comm_hook(self, _counting_allreduce)

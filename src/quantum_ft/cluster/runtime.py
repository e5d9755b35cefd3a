"""What a training process needs to know about where it runs, decided before anything loads: the CPU threads SLURM
allocated, the launcher's limits, and the Lightning plugins and callbacks of a submitit job."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from omegaconf import DictConfig

from quantum_ft.cluster.environment import SubmititEnvironment
from quantum_ft.utils.config import ConfigError

log = logging.getLogger("quantum_ft")


def match_threads_to_allocation() -> None:
    """In a SLURM job, use the CPUs allocated to the task, not every core of the node (torch's default), which
    oversubscribes a node shared by several tasks. OMP_NUM_THREADS, when set, wins."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(int(cpus))


def job_plugins_and_callbacks() -> tuple[list[Any], list[Any]]:
    """Under submitit, its tasks are the ranks (SubmititEnvironment) and it owns requeueing (CheckpointAndRequeue
    turns the preemption signal into a checkpoint at a step boundary); elsewhere, nothing."""
    if not SubmititEnvironment.detect():
        return [], []
    from quantum_ft.callbacks.requeue import CheckpointAndRequeue

    return [SubmititEnvironment()], [CheckpointAndRequeue()]


def check_launch(cfg: DictConfig) -> None:
    """What the launcher and the job's process layout cannot do together, said before anything loads.

    cluster=slurm / submitit_local act through Hydra's launcher, which only runs in multirun mode; and in a
    multirun on this machine, Lightning would start extra device processes by re-running the whole `-m` command
    line, i.e. the whole sweep (Hydra #2231): submitit starts one process per device instead.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if SubmititEnvironment.detect():
        return
    name = cfg.get("cluster", {}).get("name", "local")
    mode = HydraConfig.get().mode
    if name != "local" and mode == RunMode.RUN:
        log.warning("cluster=%s submits jobs only in multirun mode: add -m. Running here, in this process.", name)
    devices, nodes = cfg.trainer.get("devices"), cfg.trainer.get("num_nodes", 1)
    if mode == RunMode.MULTIRUN and ((isinstance(devices, int) and devices > 1) or nodes > 1):
        raise ConfigError(
            f"trainer.devices={devices} (num_nodes={nodes}) in a multirun on this machine: Lightning would start "
            "each extra process by re-running the whole sweep. Use cluster=submitit_local (or cluster=slurm), "
            "which starts one process per device, or run the job without -m."
        )

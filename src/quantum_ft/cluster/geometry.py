"""One job geometry for the SLURM launcher and the Lightning trainer, checked before anything is submitted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from quantum_ft.utils.config import ConfigError


def geometry_problems(job: DictConfig, launcher: Mapping[str, Any]) -> list[str]:
    """What in one job's composed config disagrees with the launcher's resources (empty when they agree).

    Lightning needs trainer.devices == tasks per node and trainer.num_nodes == nodes; a GPU trainer needs a GPU per
    task; a CPU trainer should not hold GPUs it never uses.
    """
    trainer = job.trainer
    devices, num_nodes = trainer.get("devices"), trainer.get("num_nodes", 1)
    tasks, nodes = int(launcher.get("tasks_per_node") or 1), int(launcher.get("nodes") or 1)
    gpus = int(launcher.get("gpus_per_node") or 0)
    accelerator = str(trainer.get("accelerator", "auto"))
    problems = []
    if not isinstance(devices, int):
        problems.append(
            f"trainer.devices={devices!r}: a submitted job needs a number of devices per node, one task each "
            "(set cluster.devices)"
        )
    elif devices != tasks:
        problems.append(
            f"trainer.devices={devices} but hydra.launcher.tasks_per_node={tasks}: Lightning runs one process per "
            "device and SLURM starts one per task"
        )
    if num_nodes != nodes:
        problems.append(f"trainer.num_nodes={num_nodes} but hydra.launcher.nodes={nodes}")
    if accelerator in {"gpu", "cuda"} and isinstance(devices, int) and gpus < devices:
        problems.append(f"trainer.accelerator={accelerator} with {devices} device(s) per node but {gpus} GPU(s)")
    if accelerator == "cpu" and gpus > 0:
        problems.append(f"trainer.accelerator=cpu but the job would hold {gpus} GPU(s) per node it never uses")
    return problems


def check_geometry(jobs: list[tuple[list[str], DictConfig]], launcher: Mapping[str, Any]) -> None:
    """Raise one ConfigError naming every job whose geometry disagrees with the launcher's."""
    report = []
    for overrides, cfg in jobs:
        problems = geometry_problems(cfg, launcher)
        if problems:
            name = " ".join(overrides) or "(no overrides)"
            report.append(f"job [{name}]:\n    - " + "\n    - ".join(problems))
    if report:
        raise ConfigError(
            "Nothing was submitted: the job geometry of the launcher and of the trainer disagree.\n  "
            + "\n  ".join(report)
            + "\nSet it in one place, the cluster group: cluster.num_nodes, cluster.devices (tasks and devices per "
            "node), cluster.gpus_per_node; do not override hydra.launcher.nodes/tasks_per_node/gpus_per_node or "
            "trainer.devices/num_nodes directly, and do not sweep the geometry inside one multirun."
        )

"""A Lightning cluster environment for processes started by submitit (SLURM tasks or `submitit_local` processes).

Lightning's own choice under submitit is wrong in both places: under `submitit_local` it sees no cluster and re-launches
`sys.argv` for the extra devices (which a Hydra job cannot survive, Hydra #2231); under SLURM it picks SLURMEnvironment,
whose auto-requeue listens for USR1 while submitit owns preemption through USR2. This environment reads the ranks
submitit gives every task and leaves requeueing to submitit.
"""

from __future__ import annotations

import os
import zlib

from lightning.fabric.plugins.environments import ClusterEnvironment


def _submitit_env():  # noqa: ANN202 - submitit's JobEnvironment subclass, imported late (plugin discovery stays fast)
    import submitit

    return submitit.JobEnvironment()


class SubmititEnvironment(ClusterEnvironment):
    """World size and ranks from `submitit.JobEnvironment()`; the rendezvous is the first host of the job."""

    def __init__(self) -> None:
        self._env = _submitit_env()
        self._world_size = self._env.num_tasks
        self._global_rank = self._env.global_rank

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        if "MASTER_ADDR" in os.environ:
            return os.environ["MASTER_ADDR"]
        hosts = list(self._env.hostnames)
        return "127.0.0.1" if len(hosts) <= 1 else hosts[0]

    @property
    def main_port(self) -> int:
        """MASTER_PORT if set, else a port derived from the job id, so every task of the job picks the same one and
        two jobs on one node (a sweep of 2-task jobs) do not collide."""
        if "MASTER_PORT" in os.environ:
            return int(os.environ["MASTER_PORT"])
        return 20000 + zlib.crc32(str(self._env.job_id).encode()) % 20000

    @staticmethod
    def detect() -> bool:
        return bool(os.environ.get("SUBMITIT_EXECUTOR"))

    def world_size(self) -> int:
        return self._world_size

    def set_world_size(self, size: int) -> None:
        self._world_size = size

    def global_rank(self) -> int:
        return self._global_rank

    def set_global_rank(self, rank: int) -> None:
        self._global_rank = rank

    def local_rank(self) -> int:
        return self._env.local_rank

    def node_rank(self) -> int:
        return self._env.node

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        tasks, nodes = self._env.num_tasks, self._env.num_nodes
        if num_devices * num_nodes != tasks or num_nodes != nodes:
            raise ValueError(
                f"The job has {tasks} task(s) on {nodes} node(s), but the trainer asks for devices={num_devices} x "
                f"num_nodes={num_nodes}. Set the geometry once in the cluster group (cluster.devices, "
                "cluster.num_nodes) instead of overriding trainer.* or hydra.launcher.* directly."
            )

"""Running on clusters: the submitit launchers, the Lightning environment for submitit jobs, preemption, sweeps."""

from quantum_ft.cluster.environment import SubmititEnvironment
from quantum_ft.cluster.preemption import CheckpointAndRequeue

__all__ = ["CheckpointAndRequeue", "SubmititEnvironment"]

"""quantum_ft's submitit launchers (code and config frozen at submission, geometry checked before it).

Hydra accepts launcher plugins only from the `hydra_plugins` namespace; the logic is in quantum_ft.cluster.launcher.
Selected by the cluster group: cluster=submitit_local, cluster=slurm (and its presets).
"""

from quantum_ft.cluster.launcher import FrozenSubmititLauncher


class LocalLauncher(FrozenSubmititLauncher):
    """Jobs as processes on this machine (submitit's local executor), one per task."""

    _EXECUTOR = "local"


class SlurmLauncher(FrozenSubmititLauncher):
    """Jobs as a SLURM job array (sbatch, one srun task per device)."""

    _EXECUTOR = "slurm"

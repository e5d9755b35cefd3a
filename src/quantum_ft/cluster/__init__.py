"""Where jobs run: the submitit launchers (code and config frozen at submission), the Lightning environment of a
submitit job, the job geometry check, per-process runtime settings and the multirun summary."""

from quantum_ft.cluster.environment import SubmititEnvironment
from quantum_ft.cluster.runtime import check_launch, job_plugins_and_callbacks, match_threads_to_allocation

__all__ = ["SubmititEnvironment", "check_launch", "job_plugins_and_callbacks", "match_threads_to_allocation"]

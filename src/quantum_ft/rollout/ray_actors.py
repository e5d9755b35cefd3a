"""GRPO rollouts on Ray actors (`rollout=ray`): PCP's coordinator and rollout workers, on the engine verl and
OpenRLHF use for exactly this. The Lightning module stays the coordinator and trainer; N actors each hold a copy of
the policy, get the trained tensors before each generation batch (only those travel: the frozen base was sent once,
when the actors started; bytes counted), sample their slices from the slices' own seeds and return the completion
ids as soon as each is done, so the trainer's reward pool starts scoring a slice while the others still generate.

Ray starts locally by default (`address: null`, `cpus` CPUs) or joins a running cluster (`address: auto`, or
`ray://head:10001`); launchers/sbatch/ray_grpo.sbatch starts one across SLURM nodes. An actor that dies is restarted by
Ray (`max_restarts`) and its slice re-run there (`max_task_retries`), with the weights that travel with every
task; when the retries run out the step fails loudly: no step trains on fewer rollouts than configured.

Left out: generation engines other than the policy's own `generate` (vLLM), GPU placement of actors beyond
`gpus_per_actor`, and scoring on the actors (rewards run in the trainer's pool, which already overlaps generation).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import torch

from quantum_ft.rollout.sampling import sample_completions
from quantum_ft.utils.config import ConfigError

log = logging.getLogger(__name__)


class RolloutActor:
    """One rollout worker: a copy of the policy, its trained tensors refreshed per task."""

    def __init__(self, model: torch.nn.Module, threads: int) -> None:
        torch.set_num_threads(max(1, threads))
        self.model = model
        self.params = dict(model.named_parameters())

    def generate(
        self, weights: dict[str, torch.Tensor], prompts: dict[str, torch.Tensor], seed: int, settings: dict[str, Any]
    ) -> torch.Tensor:
        with torch.no_grad():
            for name, value in weights.items():
                self.params[name].copy_(value)
        return sample_completions(self.model, prompts, seed=seed, **settings)

    def pid(self) -> int:
        return os.getpid()


class RayRollouts:
    """The coordinator's side: starts Ray and the actors on first use, hands out slices, streams results back."""

    def __init__(
        self,
        actors: int = 2,
        address: str | None = None,
        cpus: int | None = None,
        cpus_per_actor: float = 1,
        gpus_per_actor: float = 0,
        max_restarts: int = 3,
        max_task_retries: int = 3,
    ) -> None:
        if actors < 1:
            raise ConfigError(f"rollout.actors must be at least 1, got {actors}.")
        self.num_actors, self.address, self.cpus = actors, address, cpus
        self.cpus_per_actor, self.gpus_per_actor = cpus_per_actor, gpus_per_actor
        self.max_restarts, self.max_task_retries = max_restarts, max_task_retries
        self.actors: list[Any] = []
        self.weight_bytes = 0  # sent for the latest generation batch, over all actors
        self._model_ref = None
        self._started_ray = False  # shut down at close() only the Ray this object started

    def start(self, model: torch.nn.Module) -> None:
        try:
            import ray
        except ImportError as e:
            raise ConfigError("rollout=ray needs Ray: pip install 'quantum_ft[ray]' (ray 2.60).") from e
        if not ray.is_initialized():
            self._started_ray = True
            local = self.address is None
            ray.init(
                address=self.address,
                num_cpus=self.cpus if local else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=True,
            )
        try:
            self._model_ref = ray.put(model)
        except Exception as e:  # a circuit device or a 4-bit layer that cannot be pickled
            raise ConfigError(
                f"rollout=ray sends the policy to its actors, but {type(model).__name__} cannot be serialised ({e}). "
                "Use the in-process rollouts (drop rollout=ray) for this adapter."
            ) from e
        remote = ray.remote(
            num_cpus=self.cpus_per_actor,
            num_gpus=self.gpus_per_actor,
            max_restarts=self.max_restarts,
            max_task_retries=self.max_task_retries,
        )(RolloutActor)
        threads = max(1, int(self.cpus_per_actor))
        self.actors = [remote.remote(self._model_ref, threads) for _ in range(self.num_actors)]
        log.info("Ray rollouts: %d actors (%s)", self.num_actors, self.address or "local Ray")

    def generate(
        self, model: torch.nn.Module, slices: list[dict[str, torch.Tensor]], seeds: list[int], settings: dict[str, Any]
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """(slice index, completion ids) in the order the actors finish; slice j goes to actor j mod N."""
        import ray

        if not self.actors:
            self.start(model)
        weights = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
        weights_ref = ray.put(weights)
        used = min(len(slices), len(self.actors))
        self.weight_bytes = used * sum(t.numel() * t.element_size() for t in weights.values())
        futures = {
            self.actors[j % len(self.actors)].generate.remote(weights_ref, _cpu(prompts), seeds[j], settings): j
            for j, prompts in enumerate(slices)
        }
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                completion = ray.get(done[0])
            except ray.exceptions.RayError as e:
                raise RuntimeError(
                    f"rollout slice {futures[done[0]]} failed on its actor after {self.max_task_retries} retries "
                    f"({type(e).__name__}); the step stops rather than train on fewer rollouts."
                ) from e
            yield futures[done[0]], completion

    def close(self) -> None:
        import ray

        if ray.is_initialized():  # another owner may have shut Ray down already: its actors are gone with it
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
        self.actors, self._model_ref = [], None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def _cpu(prompts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: prompts[k].cpu() for k in ("input_ids", "attention_mask")}

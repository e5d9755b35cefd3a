"""The part of a DataModule that makes mid-epoch resume exact."""

from __future__ import annotations

from typing import Any

import lightning as L

from quantum_ft.data.sampler import ResumableBatchSampler


class ResumableDataModule(L.LightningDataModule):
    """Saves where in the epoch training stands, read from Lightning's own progress counters (the loader has
    already prefetched ahead, so its own count would be off), and has the next training sampler skip the
    batches a resumed run already trained on. Samplers shard by rank: each worker reads its own shard."""

    seed: int
    _resume_at: tuple[int, int] | None = None

    def _ranks(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_sampler(self, num_samples: int, batch_size: int, drop_last: bool = False) -> ResumableBatchSampler:
        rank, world = self._ranks()
        sampler = ResumableBatchSampler(
            num_samples, batch_size, shuffle=True, seed=self.seed, rank=rank, world_size=world, drop_last=drop_last
        )
        if self._resume_at is not None:
            sampler.skip_once(*self._resume_at)
            self._resume_at = None
        return sampler

    def eval_sampler(self, num_samples: int, batch_size: int) -> ResumableBatchSampler:
        rank, world = self._ranks()
        return ResumableBatchSampler(
            num_samples, batch_size, shuffle=False, seed=self.seed, rank=rank, world_size=world
        )

    def state_dict(self) -> dict[str, Any]:
        if self.trainer is None or self.trainer.state.fn != "fit":
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": self.trainer.current_epoch, "batches_done": progress.processed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._resume_at = (state["epoch"], state["batches_done"])

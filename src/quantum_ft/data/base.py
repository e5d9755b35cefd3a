"""What every DataModule gives train() and the stages: `tokenizer`, `stats` (a printable summary), train/val
loaders over `train_set` / `val_set` with a collate function, and exact mid-epoch resume."""

from __future__ import annotations

from typing import Any, Protocol

import lightning as L
from torch.utils.data import DataLoader

from quantum_ft.data.sampler import ResumableBatchSampler
from quantum_ft.utils.config import ConfigError


class Stats(Protocol):
    def table(self) -> str:
        """Rows of `name  value`, logged when the data is ready."""


class DataModule(L.LightningDataModule):
    """Saves where in the epoch training stands, read from Lightning's own progress counters (the loader has
    already prefetched ahead, so its own count would be off), and has the next training sampler skip the
    batches a resumed run already trained on. Samplers shard by rank: each worker reads its own shard."""

    tokenizer: Any
    stats: Stats
    train_set: Any
    val_set: Any
    seed: int
    batch_size: int
    eval_batch_size: int
    num_workers: int = 0
    drop_last: bool = False  # of the training batches
    group_by_length: bool = False  # batches of similar-length samples (data/sampler.py)
    _resume_at: tuple[int, int] | None = None

    def collate(self, samples: list[Any]) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} must define collate(): how a batch is made from samples.")

    def sample_lengths(self) -> list[int]:
        """Token count of each training sample, for data.group_by_length."""
        raise ConfigError(f"data.group_by_length is not supported by {type(self).__name__}: set it to false.")

    def train_dataloader(self) -> DataLoader:
        lengths = self.sample_lengths() if self.group_by_length else None
        sampler = self.train_sampler(len(self.train_set), self.batch_size, self.drop_last, lengths=lengths)
        return self._loader(self.train_set, sampler)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._ranks()
        if len(self.val_set) < world:
            raise ConfigError(
                f"The validation set has {len(self.val_set)} samples, fewer than the {world} processes that share "
                "it (each validates its own shard): give it more (data.val_size, data.val_datasets) or use fewer "
                "devices."
            )
        return self._loader(self.val_set, self.eval_sampler(len(self.val_set), self.eval_batch_size))

    def _loader(self, data: Any, sampler: ResumableBatchSampler) -> DataLoader:
        return DataLoader(
            data,
            batch_sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _ranks(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_sampler(
        self,
        num_samples: int,
        batch_size: int,
        drop_last: bool = False,
        repeats: int = 1,
        lengths: list[int] | None = None,
    ) -> ResumableBatchSampler:
        rank, world = self._ranks()
        sampler = ResumableBatchSampler(
            num_samples,
            batch_size,
            shuffle=True,
            seed=self.seed,
            rank=rank,
            world_size=world,
            drop_last=drop_last,
            repeats=repeats,
            lengths=lengths,
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

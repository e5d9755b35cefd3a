"""A batch sampler that shuffles per epoch from a seed, shards across ranks, and can skip the batches a
resumed run already trained on, so an interrupted and resumed run sees exactly the batches an uninterrupted
one would.
Ranks take the shuffled order in turn (rank r: positions r, r + W, ...), so the union of the W ranks'
k-th batches of b is the k-th batch of W x b one process would take: data parallel keeps the global batch.
`repeats` hands out each batch that many times in a row (GRPO's generation batches, reused over several
optimiser steps); skipping counts the repeats.
`lengths` (data.group_by_length) groups samples of similar length into the same global batch, so a batch pads to
less: the shuffled order is cut into windows of `window` global batches, each window sorted by length, its global
batches shuffled again, and the batch holding the longest sample goes first (an out-of-memory shows at step 1, not
hours in). The same seed gives the same batches, so resume stays exact."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        repeats: int = 1,
        lengths: list[int] | None = None,
        window: int = 50,
    ) -> None:
        if lengths is not None and len(lengths) != num_samples:
            raise ValueError(f"{len(lengths)} lengths for {num_samples} samples.")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.repeats = repeats
        self.lengths, self.window = lengths, window
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, batches to skip)

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at the start of every epoch (through `sampler` below)."""
        self.epoch = epoch

    @property
    def sampler(self) -> ResumableBatchSampler:
        """Lightning calls `set_epoch` on `dataloader.batch_sampler.sampler`, never on the batch sampler itself;
        without this it never reaches us, every epoch repeats epoch 0's order and resume beyond epoch 0 skips
        the wrong batches."""
        return self

    def skip_once(self, epoch: int, batches: int) -> None:
        """The next iteration over `epoch` starts after `batches` batches."""
        self._skip = (epoch, batches)

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
            if self.lengths is not None:
                order = group_by_length(order, self.lengths, self.batch_size * self.world_size, self.window, g)
        else:
            order = list(range(self.num_samples))
        per_rank = self.num_samples // self.world_size  # equal shards: every rank steps the same number of times
        return order[: per_rank * self.world_size][self.rank :: self.world_size]

    def _batches(self) -> list[list[int]]:
        idx = self._indices()
        batches = [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return [b for b in batches for _ in range(self.repeats)]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        if self._skip is not None and self._skip[0] == self.epoch:
            batches = batches[self._skip[1] :]
        self._skip = None
        yield from batches

    def __len__(self) -> int:
        return len(self._batches())


def group_by_length(
    order: list[int], lengths: list[int], global_batch: int, window: int, generator: torch.Generator
) -> list[int]:
    """`order` rearranged so that each run of `global_batch` indices holds samples of similar length."""
    span = global_batch * window
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: -lengths[i])
        batches += [chunk[i : i + global_batch] for i in range(0, len(chunk), global_batch)]
    full = [b for b in batches if len(b) == global_batch]  # a short tail batch stays last
    tail = batches[len(full) :] if len(full) < len(batches) else []
    full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    if full:
        longest = max(range(len(full)), key=lambda k: max(lengths[i] for i in full[k]))
        full.insert(0, full.pop(longest))
    return [i for b in full + tail for i in b]

"""Out-of-memory retry for a training step: the micro-batch is cut into pieces (1, 2, 4, ... of its rows) and each
piece's gradient, weighted by its share of the labelled tokens, is summed. The sum is the whole micro-batch's
gradient (the loss is a mean over labelled tokens), so half the micro-batch at twice the accumulation keeps the
effective batch and the maths; only the memory changes.

Each piece's gradient comes from torch.autograd.grad, which returns it instead of adding it to `.grad`: a piece that
runs out of memory half-way through its backward has added nothing, so the retry starts clean. Lightning then
backpropagates `surrogate(params, grads)`, whose gradient is exactly `grads` (through its precision plugin, loss
scaling and DDP's all-reduce, as for any loss). The cost over a plain backward is one elementwise pass over the
trainable tensors. Left out: GRPO's step (its log-prob passes are chunked already).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable

import torch

from quantum_ft.data.encode import IGNORE_INDEX

log = logging.getLogger(__name__)
Batch = dict[str, torch.Tensor]


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's RuntimeError."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
    )


def split_rows(batch: Batch, pieces: int) -> list[Batch]:
    """The batch cut along its rows into `pieces` parts (fewer when it has fewer rows)."""
    rows = batch["input_ids"].shape[0]
    bounds = torch.linspace(0, rows, min(pieces, rows) + 1).round().long().tolist()
    return [{k: v[a:b] for k, v in batch.items()} for a, b in zip(bounds, bounds[1:]) if b > a]


def labelled(batch: Batch) -> int:
    """Tokens that are a target of the next-token loss (labels shifted by one)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def surrogate(params: list[torch.Tensor], grads: list[torch.Tensor | None]) -> torch.Tensor:
    """sum_p <p, g_p>: its gradient with respect to each p is g_p (zero where g_p is None)."""
    return torch.stack([(p * g).sum() if g is not None else (p * 0).sum() for p, g in zip(params, grads)]).sum()


class PieceWiseStep:
    """Loss and gradient of a micro-batch in `pieces` parts, doubling `pieces` on each out-of-memory error down to
    `min_rows` rows a piece, after which the error is raised with what to change."""

    def __init__(self, min_rows: int = 1) -> None:
        if min_rows < 1:
            raise ValueError(f"stage.oom_min_rows must be at least 1, got {min_rows}.")
        self.min_rows = min_rows
        self.pieces = 1

    def __call__(
        self, loss_fn: Callable[[Batch], torch.Tensor], batch: Batch, params: list[torch.Tensor], step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the micro-batch's mean loss, detached; a surrogate loss carrying its gradient)."""
        rows = batch["input_ids"].shape[0]
        while True:
            try:
                return self._run(loss_fn, batch, params)
            except RuntimeError as error:  # torch.OutOfMemoryError is one
                if not is_out_of_memory(error):
                    raise
                smaller = self.pieces * 2
                if -(-rows // smaller) < self.min_rows or self.pieces >= rows:
                    raise torch.OutOfMemoryError(
                        f"Out of memory at step {step} even with {-(-rows // self.pieces)} row(s) a piece "
                        f"(stage.oom_min_rows={self.min_rows}): lower data.cutoff_len, turn on "
                        "stage.gradient_checkpointing, or use adapter=qlora."
                    ) from error
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self.pieces = smaller
                log.warning(
                    "Out of memory at step %d on a micro-batch of %d rows: retrying it as %d pieces of about %d rows "
                    "(same effective batch and gradient; kept for the rest of the run).",
                    step,
                    rows,
                    self.pieces,
                    -(-rows // self.pieces),
                )

    def _run(
        self, loss_fn: Callable[[Batch], torch.Tensor], batch: Batch, params: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        total = labelled(batch)
        parts = split_rows(batch, self.pieces)
        grads: list[torch.Tensor | None] = [None] * len(params)
        mean = torch.zeros((), device=batch["input_ids"].device)  # stays on the device: no sync per piece
        for part in parts:
            share = labelled(part) / total if total else 1 / len(parts)
            if total and not share:
                continue  # no target in this piece: nothing to learn from it
            loss = loss_fn(part)
            piece_grads = torch.autograd.grad(loss * share, params, allow_unused=True)
            grads = [g if acc is None else (acc if g is None else acc + g) for acc, g in zip(grads, piece_grads)]
            mean = mean + loss.detach().float() * share
            del loss, piece_grads
        return mean, surrogate(params, grads)

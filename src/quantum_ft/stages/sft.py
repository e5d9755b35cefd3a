"""Teacher-forced next-token cross-entropy on the labelled tokens of a batch: supervised fine-tuning on chat data
(labels on the assistant replies) and the plain causal-LM objective on raw text (every token labelled, what DiLoCo
and DDP train) are the same module; the data decides which tokens carry loss."""

from __future__ import annotations

from typing import ClassVar

import torch

from quantum_ft.data.encode import IGNORE_INDEX
from quantum_ft.stages.base import StageModule


class SFTModule(StageModule):
    monitor: ClassVar[str] = "val/loss"

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        mask = batch.get("attention_mask")
        self.step_tokens = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        targets = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        # weighted by target tokens, so val/loss is the mean per-token loss over the whole split
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=max(targets, 1), sync_dist=True)
        return loss

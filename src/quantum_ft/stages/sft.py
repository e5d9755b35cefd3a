"""Teacher-forced next-token cross-entropy on the labelled tokens of a batch: supervised fine-tuning on chat data
(labels on the assistant replies) and the plain causal-LM objective on raw text (every token labelled, what DiLoCo
and DDP train) are the same module; the data decides which tokens carry loss."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch

from quantum_ft.data.encode import IGNORE_INDEX, TOKEN_COUNTS
from quantum_ft.stages.base import StageModule
from quantum_ft.stages.kernels import apply_liger, liger_decision
from quantum_ft.stages.lm_loss import causal_lm_loss
from quantum_ft.stages.oom_retry import PieceWiseStep

log = logging.getLogger(__name__)


class SFTModule(StageModule):
    """`fused_loss`: the LM head and cross-entropy on labelled positions only, in chunks of `loss_chunk_size`
    rows (quantum_ft.stages.lm_loss; exact, and no full logits tensor); false: the model's own forward.
    `oom_retry`: a step that runs out of memory is redone in smaller pieces of its micro-batch, down to
    `oom_min_rows` rows (quantum_ft.stages.oom_retry; same gradient). `use_liger_kernel`: auto | true | false
    (quantum_ft.stages.kernels: Liger's Triton kernels on CUDA)."""

    monitor: ClassVar[str] = "val/loss"
    tunable: ClassVar[bool] = True  # tune.batch_size / tune.lr (quantum_ft.tuning) apply to this stage

    def __init__(
        self,
        *args: Any,
        fused_loss: bool = True,
        loss_chunk_size: int = 1024,
        oom_retry: bool = True,
        oom_min_rows: int = 1,
        use_liger_kernel: bool | str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if loss_chunk_size < 1:
            raise ValueError(f"stage.loss_chunk_size must be at least 1, got {loss_chunk_size}.")
        self.fused_loss, self.loss_chunk_size = fused_loss, loss_chunk_size
        self.piecewise = PieceWiseStep(oom_min_rows) if oom_retry else None
        self.use_liger_kernel, self.kernels = use_liger_kernel, "not decided (before setup)"

    def setup(self, stage: str) -> None:
        """Patch Liger's kernels once the device is known (the strategy's, before the model is moved there)."""
        if self.kernels.startswith("liger"):
            return  # patched already (a tuner's fit came first)
        patch, why = liger_decision(self.use_liger_kernel, self.trainer.strategy.root_device)
        if patch:
            apply_liger(self.model, self.fused_loss)
        kernels = f"liger ({why})" if patch else f"torch ({why})"
        if kernels != self.kernels:  # once a run: setup comes again for each stage (validate before, fit)
            log.info("Kernels: %s", kernels)
        self.kernels = kernels

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return causal_lm_loss(self.model, batch, self.loss_chunk_size, fused=self.fused_loss)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        counts = batch.pop(TOKEN_COUNTS, None)  # packed rows: their real tokens (they carry no attention mask)
        mask = batch.get("attention_mask")
        if counts is not None:
            self.step_tokens = int(counts.sum())
        else:
            self.step_tokens = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        if self.piecewise is None:
            loss = objective = self.loss(batch)
        else:
            params = [p for p in self.model.parameters() if p.requires_grad]
            loss, objective = self.piecewise(self.loss, batch, params, self.trainer.global_step)
        self.last_loss = loss.detach()  # read by callbacks.loss_guard once an optimiser step, not synced here
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return objective

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        targets = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        # weighted by target tokens, so val/loss is the mean per-token loss over the whole split
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=max(targets, 1), sync_dist=True)
        return loss

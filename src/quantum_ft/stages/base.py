"""What every training stage shares: the optimiser and its schedule, checkpoints that hold only the trained tensors
(and refuse to load into a model they do not fit), per-step seeding for exact resume, and the figure it is judged
by (`monitor`). SFT and GRPO are siblings on this base; train() relies on nothing else."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch

from quantum_ft.distributed.sharding import clean_parameter_name
from quantum_ft.stages.schedules import lr_lambda


class StageModule(L.LightningModule):
    """The contract with train(): `model` (the trained model), `tokenizer`, `monitor` (a validation metric it
    logs, reported before and after fitting and returned to sweepers; `monitor_mode` says which way is better) and
    `step_tokens` (tokens the last training step processed, read by the Throughput callback)."""

    monitor: ClassVar[str]
    monitor_mode: ClassVar[str] = "min"  # whether a lower (loss) or higher (reward) `monitor` is better
    tunable: ClassVar[bool] = False  # whether tune.batch_size / tune.lr (quantum_ft.tuning) can tune this stage

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: str = "cosine",
        warmup_steps: int = 0,
        warmup_ratio: float = 0.0,
        min_lr_ratio: float = 0.0,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        # from_pretrained returns eval mode and Lightning keeps a module's mode: without this, dropout
        # (LoRA's included) would be silently off during training.
        self.model = model.train()
        self.tokenizer = tokenizer
        self.optimizer_factory = optimizer
        self.scheduler = scheduler
        self.warmup_steps, self.warmup_ratio, self.min_lr_ratio = warmup_steps, warmup_ratio, min_lr_ratio
        self.step_tokens = 0
        # What this run trains, fixed here: a callback may freeze some of it for a while (quantum_opt), and the
        # optimiser and the checkpoints still hold every one of them.
        self.trained_names = [n for n, p in model.named_parameters() if p.requires_grad]
        # Checkpoints hold only trained tensors, so loading one must not demand the frozen base.
        self.strict_loading = False
        # Every step draws its randomness (dropout, GRPO's sampling) from a seed of its own, derived from the
        # run's seed (set by seed_everything before the module is built), the rank and the step: a resumed run
        # repeats an uninterrupted one exactly, whatever else drew random numbers in between (a new epoch's
        # DataLoader iterator does, after the last checkpoint of an epoch and before the next step).
        self.base_seed = torch.initial_seed()
        if gradient_checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.model(**batch)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        seed_step(self.base_seed, self.trainer.global_rank, self.trainer.global_step, batch_idx)

    # ---------------------------------------------------------------- optimisation
    def trained_parameters(self) -> list[torch.nn.Parameter]:
        """Every tensor this run trains, frozen for the moment or not."""
        named = dict(self.model.named_parameters())
        if all(n in named for n in self.trained_names):
            return [named[n] for n in self.trained_names]
        return [p for p in self.model.parameters() if p.requires_grad]  # renamed by a wrapper (FSDP): none frozen

    def configure_optimizers(self) -> dict[str, Any]:
        params = self.trained_parameters()
        if not params:
            raise ValueError("The adapter left no trainable parameter: check `adapter.target_modules`.")
        optimizer = self.optimizer_factory(params)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = self.warmup_steps or int(self.warmup_ratio * total)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(self.scheduler, warmup, total, self.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ---------------------------------------------------------------- checkpoints
    def trainable_keys(self) -> set[str]:
        return {f"model.{clean_parameter_name(n)}" for n in self.trained_names}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trained tensors: a LoRA checkpoint is megabytes, not the whole base."""
        keys = self.trainable_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keys}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved, expected = set(checkpoint["state_dict"]), self.trainable_keys()
        if saved != expected:
            missing, unexpected = sorted(expected - saved)[:3], sorted(saved - expected)[:3]
            raise ValueError(
                "The checkpoint does not hold this run's trainable tensors (was it written with another adapter "
                f"or model?). Missing e.g. {missing}; unexpected e.g. {unexpected}."
            )


def seed_step(base_seed: int, rank: int, step: int, batch_idx: int) -> None:
    """Seed torch (every device), numpy and random for one batch of one rank (batch_idx tells apart the
    micro-batches of one optimiser step under gradient accumulation)."""
    digest = hashlib.sha256(f"{base_seed}/{rank}/{step}/{batch_idx}".encode()).digest()
    seed = int.from_bytes(digest[:8], "little") >> 1  # torch takes a non-negative int64
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)

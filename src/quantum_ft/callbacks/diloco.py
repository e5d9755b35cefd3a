"""DiLoCo (Douillard et al. 2023, arXiv 2311.08105): the outer loop, as a Lightning callback.

Every worker trains its own copy with the inner optimiser on its own data shard for `tau` optimiser steps; then the
pseudo-gradient delta = theta_global - theta_local is averaged with one all-reduce per trained tensor, an outer SGD
with Nesterov momentum steps the global copy with it, and every worker restarts from the new global parameters,
keeping its own inner optimiser state. It needs quantum_ft.distributed.DiLoCoStrategy (no DDP wrapper), which
`stage=diloco` selects through `distributed=diloco`.

A callback, so its state (global copy, outer optimiser, counters) travels in checkpoints. Each worker's own state
(local parameters mid-loop, inner optimiser) differs per rank, and Lightning writes only rank 0's checkpoint, so
every rank also writes `checkpoints/diloco/rank{r}-step{s}.pt`. Only trained parameters are synchronised, so DiLoCo
works on adapters (LoRA, vqc, ...) too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist

from quantum_ft.distributed.strategies import DiLoCoStrategy
from quantum_ft.utils.dtypes import resolve_dtype
from quantum_ft.utils.io import atomic_torch_save


class DiLoCo(L.Callback):
    def __init__(
        self,
        tau: int = 50,
        outer_lr: float = 0.7,
        outer_momentum: float = 0.9,
        nesterov: bool = True,
        comm_dtype: str = "float32",
    ) -> None:
        if tau < 1:
            raise ValueError(f"DiLoCo tau={tau} must be >= 1 (inner steps between outer steps).")
        if nesterov and outer_momentum <= 0:
            raise ValueError("DiLoCo nesterov=true needs outer_momentum > 0.")
        self.tau, self.outer_lr, self.outer_momentum, self.nesterov = tau, outer_lr, outer_momentum, nesterov
        self.comm_dtype = resolve_dtype(comm_dtype)
        self.outer_steps = 0
        self._global: list[torch.Tensor] = []
        self._outer: torch.optim.SGD | None = None
        self._loaded: dict[str, Any] | None = None
        self._last_step = 0

    # ------------------------------------------------------------------ set-up and resume
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and not isinstance(trainer.strategy, DiLoCoStrategy):
            raise ValueError(
                f"DiLoCo needs trainer.strategy=DiLoCoStrategy (stage=diloco sets it), got "
                f"{type(trainer.strategy).__name__}: DDP would all-reduce gradients every step."
            )

    def _trained(self, pl_module: L.LightningModule) -> list[torch.nn.Parameter]:
        return [p for p in pl_module.parameters() if p.requires_grad]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = self._trained(pl_module)
        if self._loaded is None:  # fresh: every worker starts from rank 0's parameters
            if trainer.world_size > 1:
                for p in params:
                    dist.broadcast(p.data, src=0)
            self._global = [p.detach().clone().to(_master_dtype(p)) for p in params]
            self._outer = self._outer_optimizer()
        else:
            state, self._loaded = self._loaded, None
            self._global = [g.to(p.device) for g, p in zip(state["global"], params)]
            self._outer = self._outer_optimizer()
            self._outer.load_state_dict(state["outer"])
            self.outer_steps = state["outer_steps"]
            local = torch.load(self._rank_file(trainer, state["step"]), weights_only=True)
            with torch.no_grad():
                for p, saved in zip(params, local["params"]):
                    p.copy_(saved)
            trainer.optimizers[0].load_state_dict(local["inner"])
        self._last_step = trainer.global_step

    def _outer_optimizer(self) -> torch.optim.SGD:
        return torch.optim.SGD(self._global, lr=self.outer_lr, momentum=self.outer_momentum, nesterov=self.nesterov)

    # ------------------------------------------------------------------ the outer loop
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step == self._last_step:  # still accumulating gradients
            return
        self._last_step = step
        if step % self.tau == 0:
            self.outer_step(trainer, pl_module)

    @torch.no_grad()
    def outer_step(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        strategy: DiLoCoStrategy = trainer.strategy
        params = self._trained(pl_module)
        for p, g in zip(params, self._global):
            g.grad = strategy.all_reduce_mean(g - p.detach().to(g.dtype), self.comm_dtype)
        self._outer.step()
        self._outer.zero_grad(set_to_none=True)
        for p, g in zip(params, self._global):
            p.copy_(g)
        self.outer_steps += 1
        pl_module.log("diloco/outer_step", float(self.outer_steps), on_step=True, batch_size=1)

    # ------------------------------------------------------------------ checkpoints
    def _rank_file(self, trainer: L.Trainer, step: int) -> Path:
        return Path(trainer.default_root_dir) / "checkpoints" / "diloco" / f"rank{trainer.global_rank}-step{step}.pt"

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Runs on every rank: each writes its own local state; the shared state goes into the checkpoint."""
        step = trainer.global_step
        local = {
            "params": [p.detach().clone() for p in self._trained(pl_module)],
            "inner": trainer.optimizers[0].state_dict(),
        }
        atomic_torch_save(local, self._rank_file(trainer, step))
        self._prune_rank_files(trainer, keep=2)
        checkpoint["diloco"] = {
            "global": [g.detach().clone() for g in self._global],
            "outer": self._outer.state_dict() if self._outer else None,
            "outer_steps": self.outer_steps,
            "step": step,
        }

    def _prune_rank_files(self, trainer: L.Trainer, keep: int) -> None:
        """Keep this rank's `keep` newest files: the newest a checkpoint can point to, and the one before it in
        case a crash lands between writing the rank file and the checkpoint."""
        mine = self._rank_file(trainer, 0).parent.glob(f"rank{trainer.global_rank}-step*.pt")
        by_step = sorted(mine, key=lambda f: int(f.stem.split("step")[1]))
        for old in by_step[:-keep]:
            old.unlink(missing_ok=True)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if "diloco" not in checkpoint:
            raise ValueError("This checkpoint holds no DiLoCo state: it was not written by a stage=diloco run.")
        self._loaded = checkpoint["diloco"]


def _master_dtype(p: torch.Tensor) -> torch.dtype:
    """The global copy is kept in fp32 (fp64 stays fp64) whatever the workers train in."""
    return torch.float64 if p.dtype == torch.float64 else torch.float32

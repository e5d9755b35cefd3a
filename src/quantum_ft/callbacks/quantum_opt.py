"""`quantum_opt`: every `every` optimiser steps, choose which adapter units keep training by solving a QUBO, the
quantum training agent's "quantum optimisation in the loop" made concrete.

Units: the trained tensors grouped by decoder layer, `layers_per_unit` layers each (a unit is every adapter tensor
of those layers). Each decision is made at a *probe step*, which trains every unit; from its gradients g and the
update it applied, delta:
    importance_u = sum |g_u * delta_u|        the first-order loss change the unit's update bought
    similarity_uv = |cos(delta_u, delta_v)|   how alike two units' updates are (redundancy)
both as exponential moving averages over probe steps. The QUBO (quantum_opt/qubo.py: selection_qubo) keeps
m = `budget` units: importance (scaled to a maximum of 1) lowers the energy, `redundancy` x similarity of two kept
units raises it, and a penalty makes every minimiser keep exactly m. `strategy=qubo` solves it with `solver` (QAOA,
annealing, exact, a cloud service), falling back to `fallback` on a timeout or failure (said once); `greedy` keeps
the m most important units and `random` m random ones (the study's controls). The units not kept are frozen
(requires_grad off) until the next probe step: the optimiser keeps their state and skips them (no gradient), and
autograd computes no gradient below the lowest unit that still trains, which is where backward compute is saved
(`quantum_opt/backward_s` is measured every step).

Each decision is logged (QUBO size, energy, units kept, solver, seconds, approximation ratio against exact
enumeration when N is small) and appended to <run>/quantum_opt.jsonl; the mask and the averages are in the
checkpoint, so a resumed run freezes what the interrupted one had frozen. Left out: LoRA rank slices as units (a
unit here is whole layers), and any claim of a benefit (experiments/quantum_opt_study measures it).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from quantum_ft.quantum_opt import ExactSolver, Solver, selection_qubo, solve_with_fallback
from quantum_ft.utils.config import ConfigError
from quantum_ft.utils.io import append_journal

log = logging.getLogger(__name__)
STRATEGIES = ("qubo", "greedy", "random")
LAYER = re.compile(r"\.layers\.(\d+)\.")


def layer_units(names: list[str], layers_per_unit: int) -> list[list[str]]:
    """The trained tensor names grouped into units of `layers_per_unit` consecutive decoder layers."""
    layers = [LAYER.search(n) for n in names]
    missing = [n for n, m in zip(names, layers) if m is None]
    if missing:
        raise ConfigError(
            f"quantum_opt groups trained tensors by decoder layer, but {missing[0]} belongs to no layer "
            f"(and {len(missing) - 1} more): use an adapter on layer modules only (e.g. adapter.target_modules)."
        )
    count = max(int(m.group(1)) for m in layers) + 1
    if layers_per_unit < 1 or count % layers_per_unit:
        divisors = [d for d in range(1, count + 1) if count % d == 0]
        raise ConfigError(
            f"callbacks.quantum_opt.layers_per_unit={layers_per_unit} does not divide the model's {count} layers "
            f"(units must be alike to compare their updates): choose one of {divisors}."
        )
    units: list[list[str]] = [[] for _ in range(count // layers_per_unit)]
    for name, match in zip(names, layers):
        units[int(match.group(1)) // layers_per_unit].append(name)
    return units


def unit_statistics(grads: list[torch.Tensor], deltas: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """(importance [N], similarity [N, N]) from each unit's flattened gradient and update (equal lengths)."""
    g, d = torch.stack(grads).double(), torch.stack(deltas).double()
    importance = (g * d).abs().sum(dim=1)
    unit = d / d.norm(dim=1, keepdim=True).clamp_min(1e-300)
    similarity = (unit @ unit.T).abs()
    similarity.fill_diagonal_(0.0)
    return importance.numpy(), similarity.numpy()


def budget_count(budget: float, units: int) -> int:
    """A fraction of the units (0 < budget < 1) or a count (>= 1)."""
    m = round(budget * units) if 0 < budget < 1 else int(budget)
    if not 1 <= m <= units:
        raise ConfigError(f"callbacks.quantum_opt.budget={budget} keeps {m} of {units} units: keep 1 to {units}.")
    return m


def approximation_ratio(qubo: Any, energy: float, m: int) -> float | None:
    """(worst - found) / (worst - best) over the selections of exactly m units: 1 is optimal (N <= 20 only)."""
    n = qubo.num_variables
    if n > 20:
        return None
    indices = np.arange(2**n)
    bits = (indices[:, None] >> np.arange(n)[None, :]) & 1
    feasible = bits[bits.sum(axis=1) == m]
    energies = np.asarray(qubo.energy(feasible), dtype=np.float64)
    best, worst = float(energies.min()), float(energies.max())
    return 1.0 if worst == best else (worst - energy) / (worst - best)


class QuantumOpt(L.Callback):
    def __init__(
        self,
        every: int = 10,
        layers_per_unit: int = 1,
        budget: float = 0.5,
        redundancy: float = 0.2,
        strategy: str = "qubo",
        solver: Solver | None = None,
        fallback: Solver | None = None,
        timeout_s: float = 10.0,
        ema: float = 0.5,
    ) -> None:
        if every < 2:
            raise ConfigError(f"callbacks.quantum_opt.every={every}: decide at most every 2 steps (>= 2).")
        if strategy not in STRATEGIES:
            raise ConfigError(f"callbacks.quantum_opt.strategy={strategy!r}: choose one of {STRATEGIES}.")
        self.every, self.layers_per_unit, self.budget = every, layers_per_unit, budget
        self.redundancy, self.strategy, self.timeout_s, self.ema = redundancy, strategy, timeout_s, ema
        self.solver = solver or ExactSolver()
        self.fallback = fallback or ExactSolver()
        self.units: list[list[torch.nn.Parameter]] = []
        self.mask: list[bool] | None = None  # units training now; None before the first decision
        self.importance: np.ndarray | None = None
        self.similarity: np.ndarray | None = None
        self.decisions = 0
        self._probe_from: int | None = None
        self._before: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._backward_started = 0.0

    # ------------------------------------------------------------------------------------------ set-up and resume
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        named = dict(pl_module.model.named_parameters())
        groups = layer_units(list(pl_module.trained_names), self.layers_per_unit)
        self.units = [[named[n] for n in group] for group in groups]
        self.m = budget_count(self.budget, len(self.units))
        self.journal = Path(trainer.default_root_dir) / "quantum_opt.jsonl"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.mask is not None:  # resumed: freeze what the interrupted run had frozen
            self.apply(self.mask)

    def state_dict(self) -> dict[str, Any]:
        return {
            "mask": self.mask,
            "importance": None if self.importance is None else self.importance.tolist(),
            "similarity": None if self.similarity is None else self.similarity.tolist(),
            "decisions": self.decisions,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mask, self.decisions = state["mask"], state["decisions"]
        self.importance = None if state["importance"] is None else np.array(state["importance"])
        self.similarity = None if state["similarity"] is None else np.array(state["similarity"])

    def apply(self, mask: list[bool]) -> None:
        for keep, params in zip(mask, self.units):
            for p in params:
                p.requires_grad_(keep)

    # ------------------------------------------------------------------------------------------ the loop
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int) -> None:
        if trainer.global_step % self.every == 0 and self._probe_from != trainer.global_step:
            self._probe_from = trainer.global_step  # a probe step: every unit trains and is measured
            self.apply([True] * len(self.units))

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._backward_started = time.perf_counter()

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("quantum_opt/backward_s", time.perf_counter() - self._backward_started, on_step=True)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if self._probe_from == trainer.global_step:
            grads = [
                torch.cat([flat(p.grad if p.grad is not None else torch.zeros_like(p)) for p in unit])
                for unit in self.units
            ]
            values = [torch.cat([flat(p) for p in unit]) for unit in self.units]
            self._before = (grads, values)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        trained = sum(p.numel() for unit in self.units for p in unit if p.requires_grad)
        total = sum(p.numel() for unit in self.units for p in unit)
        pl_module.log("quantum_opt/trainable_fraction", trained / total, on_step=True)
        if self._before is None or trainer.global_step != (self._probe_from or 0) + 1:
            return
        grads, before = self._before
        self._before = None
        deltas = [torch.cat([flat(p) for p in unit]) - b for unit, b in zip(self.units, before)]
        importance, similarity = unit_statistics(grads, deltas)
        if self.importance is None:
            self.importance, self.similarity = importance, similarity
        else:
            self.importance = self.ema * self.importance + (1 - self.ema) * importance
            self.similarity = self.ema * self.similarity + (1 - self.ema) * similarity
        self.decide(trainer, pl_module)

    def decide(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n, m = len(self.units), self.m
        scale = float(self.importance.max()) or 1.0
        qubo = selection_qubo(self.importance / scale, self.similarity, m, self.redundancy)
        started = time.perf_counter()
        record: dict[str, Any] = {"step": trainer.global_step, "units": n, "keep": m, "strategy": self.strategy}
        if self.strategy == "qubo":
            solution, fell_back = solve_with_fallback(self.solver, self.fallback, qubo, self.timeout_s, "quantum_opt")
            chosen = solution.selected
            record.update(solver=solution.solver, fell_back=fell_back, info=plain(solution.info))
        elif self.strategy == "greedy":
            chosen = sorted(np.argsort(-self.importance, kind="stable")[:m].tolist())
        else:
            rng = np.random.default_rng([int(pl_module.base_seed) % 2**32, self.decisions])
            chosen = sorted(rng.choice(n, size=m, replace=False).tolist())
        x = np.zeros(n)
        x[chosen] = 1
        energy = float(qubo.energy(x))
        record.update(
            chosen=chosen,
            energy=energy,
            seconds=time.perf_counter() - started,
            approximation_ratio=approximation_ratio(qubo, energy, m) if len(chosen) == m else None,
            lowest_trained_layer=min(chosen) * self.layers_per_unit if chosen else None,
        )
        self.mask = [i in chosen for i in range(n)]
        self.apply(self.mask)
        self.decisions += 1
        if trainer.is_global_zero:
            append_journal(self.journal, record)
        pl_module.log_dict(
            {"quantum_opt/energy": energy, "quantum_opt/solver_s": record["seconds"], "quantum_opt/kept": len(chosen)},
            on_step=True,
        )
        log.info(
            "quantum_opt at step %d: %d-variable QUBO, kept units %s (energy %.4f, %s, %.3f s%s)",
            trainer.global_step,
            n,
            chosen,
            energy,
            record.get("solver", self.strategy),
            record["seconds"],
            ", fell back" if record.get("fell_back") else "",
        )


def flat(tensor: torch.Tensor) -> torch.Tensor:
    """A detached float32 copy on the CPU, as one row."""
    return tensor.detach().reshape(-1).float().cpu().clone()


def plain(info: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of a solution's details."""
    return {k: v for k, v in info.items() if isinstance(v, int | float | str | bool | None)}

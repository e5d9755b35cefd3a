"""Parameter search on the exact batched engine: L-BFGS-B (scipy) on all restarts at once with torch gradients,
stopping on convergence; QAOA depth p starts from the INTERP transfer of the best p-1 angles (Zhou et al.,
PRX 10, 021067) plus perturbed and fresh restarts.

Objectives: `energy` minimises the expectation (normalised to [0, 1] by the spectrum's range); `ground_mass`
maximises the probability of the ground states (-log of it), which the exact solution makes available and which
is what a circuit is judged by (its most probable bitstring should be a ground state)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from .ansatz import Ansatz
from .hamiltonian import Spectrum
from .simulator import Engine, QaoaAdjoint

GTOL = 1e-5  # with ftol 1e-7: measured to lose no ground-state mass against 1e-9 / 1e-6 at half the time
OBJECTIVES = ("energy", "ground_mass")


@dataclass
class Result:
    params: np.ndarray  # in the circuit's own units (gamma multiplies the real energies)
    objective: float
    steps: int  # L-BFGS-B iterations over every restart run
    evaluations: int
    seconds: float


class Problem:
    """One instance's energies ready for optimisation."""

    def __init__(self, energies: np.ndarray, spec: Spectrum, n: int, objective: str = "ground_mass") -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
        self.n, self.spec, self.objective = n, spec, objective
        self.scale = float(np.std(energies)) or 1.0  # gamma is searched in units of 1 / std(E)
        self.engine = Engine(energies / self.scale, n)
        self.adjoint = QaoaAdjoint(energies / self.scale, n)
        self.weights = (energies - spec.ground_energy) / max(spec.max_energy - spec.ground_energy, 1e-12)
        self.mask = np.zeros(2**n, dtype=bool)
        self.mask[spec.ground_indices] = True
        self.energies = torch.as_tensor(energies, dtype=torch.float64)
        self.ground = torch.as_tensor(spec.ground_indices)
        self.span = max(spec.max_energy - spec.ground_energy, 1e-12)

    def values(self, ansatz: Ansatz, x: torch.Tensor) -> torch.Tensor:
        probs = self.engine.probabilities(ansatz.kind, x, ansatz.layers)
        if self.objective == "energy":
            return (probs @ self.energies - self.spec.ground_energy) / self.span
        return -torch.log(probs[:, self.ground].sum(dim=1) + 1e-300)

    def to_circuit_units(self, ansatz: Ansatz, x: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=np.float64)
        if ansatz.kind == "qaoa":
            x[: ansatz.layers] /= self.scale
        return x

    def value_and_grad(self, ansatz: Ansatz, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row objective and gradient: numpy adjoint for QAOA, torch autograd for the VQE."""
        if ansatz.kind == "qaoa":
            if self.objective == "energy":
                return self.adjoint.value_and_grad(x, weights=self.weights)
            return self.adjoint.value_and_grad(x, mask=self.mask)
        xt = torch.tensor(x, requires_grad=True)
        values = self.values(ansatz, xt)
        values.sum().backward()
        return values.detach().numpy(), xt.grad.numpy()

    def run(self, ansatz: Ansatz, starts: np.ndarray, maxiter: int = 200, tol: float = 1e-7) -> tuple:
        """L-BFGS-B over every start at once (their sum separates, so each keeps its own gradient)."""
        r, k = starts.shape
        evals = 0

        def fun(flat: np.ndarray):
            nonlocal evals
            evals += 1
            values, grad = self.value_and_grad(ansatz, flat.reshape(r, k))
            return float(values.sum()), grad.reshape(-1)

        res = minimize(
            fun,
            starts.reshape(-1),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": maxiter, "ftol": tol, "gtol": 1e-7},
        )
        x = res.x.reshape(r, k)
        with torch.no_grad():
            vals = self.values(ansatz, torch.tensor(x)).numpy()
        best = int(np.argmin(vals))
        return x[best], float(vals[best]), int(res.nit), evals


def interp(x: np.ndarray, p: int) -> np.ndarray:
    """INTERP: p-layer (gammas, betas) -> p+1 layers by linear interpolation of each schedule."""

    def grow(a: np.ndarray) -> np.ndarray:
        padded = np.concatenate([[0.0], a, [0.0]])
        return np.array([(i / p) * padded[i] + ((p - i) / p) * padded[i + 1] for i in range(p + 1)])

    return np.concatenate([grow(x[:p]), grow(x[p:])])


def qaoa_schedule(
    problem: Problem, depths: list[int], rng: np.random.Generator, restarts: int = 4, maxiter: int = 200
) -> dict[int, Result]:
    """Optimise p = 1 .. max(depths), each p warm-started from the best p-1; returns the depths asked for."""
    out: dict[int, Result] = {}
    best = None
    t0, total_steps, total_evals = time.perf_counter(), 0, 0
    for p in range(1, max(depths) + 1):
        ansatz = Ansatz("qaoa", p)
        fresh = np.concatenate([rng.uniform(0.05, 1.5, (restarts, p)), rng.uniform(0.05, np.pi / 2, (restarts, p))], 1)
        if best is not None:  # INTERP, the p-1 optimum plus an identity layer (never worse), perturbed INTERPs
            warm = interp(best, p - 1)
            fresh[0] = warm
            fresh[1] = np.concatenate([best[: p - 1], [0.0], best[p - 1 :], [0.0]])
            k = max(3, restarts // 2 + 1)
            fresh[2:k] = warm + rng.normal(0, 0.1, (k - 2, 2 * p))
        best, value, steps, evals = problem.run(ansatz, fresh, maxiter)
        total_steps, total_evals = total_steps + steps, total_evals + evals
        if p in depths:  # steps and time include the shallower runs this one was warm-started from
            out[p] = Result(
                problem.to_circuit_units(ansatz, best), value, total_steps, total_evals, time.perf_counter() - t0
            )
    return out


def vqe(problem: Problem, layers: int, rng: np.random.Generator, restarts: int = 4, maxiter: int = 200) -> Result:
    ansatz = Ansatz("vqe", layers)
    t0 = time.perf_counter()
    starts = rng.uniform(-np.pi, np.pi, (restarts, ansatz.num_params(problem.n)))
    best, value, steps, evals = problem.run(ansatz, starts, maxiter)
    return Result(best, value, steps, evals, time.perf_counter() - t0)

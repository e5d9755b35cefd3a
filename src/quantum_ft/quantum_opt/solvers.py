"""QUBO solvers behind one interface (`Solver.solve(qubo, timeout_s) -> Solution`), the classical ones, and the
fallback rule: a solver that cannot answer (too many variables, not installed, not reachable, out of time) raises
SolverUnavailable, and solve_with_fallback then asks a classical solver and says so once per key."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .qubo import Qubo, basis_bits

log = logging.getLogger(__name__)


class SolverUnavailable(RuntimeError):
    """The solver cannot answer this problem now; the message says why and what would fix it."""


class SolverTimeout(SolverUnavailable):
    """The solver ran out of its time budget before answering."""


@dataclass
class Solution:
    """A minimiser found by `solver`: x (0/1 per variable, int8), its QUBO energy, wall seconds, solver-specific
    details in `info` (e.g. QAOA's expected energy, approximation ratio, probability of the optimum)."""

    x: np.ndarray
    energy: float
    seconds: float
    solver: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def selected(self) -> list[int]:
        """Indices of the variables set to 1 (the adapter units kept)."""
        return [int(i) for i in np.flatnonzero(self.x)]


class Deadline:
    """A wall-clock budget checked between units of work (chunks, optimiser steps, restarts)."""

    def __init__(self, timeout_s: float | None, solver: str) -> None:
        self.timeout_s, self.solver = timeout_s, solver
        self.start = time.perf_counter()

    def remaining(self) -> float | None:
        return None if self.timeout_s is None else self.timeout_s - (time.perf_counter() - self.start)

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def check(self, where: str) -> None:
        if self.expired():
            raise SolverTimeout(
                f"{self.solver}: timed out after {self.timeout_s:g} s ({where}); raise timeout_s, shrink the problem "
                "or use a faster solver"
            )


class Solver(ABC):
    """Subclasses implement `_solve(qubo, deadline)`; `solve` enforces `max_variables` and times the call."""

    name: str = "solver"

    def __init__(self, max_variables: int, timeout_s: float | None = None) -> None:
        if int(max_variables) < 1:
            raise ValueError(f"{type(self).__name__}: max_variables must be >= 1, got {max_variables!r}")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"{type(self).__name__}: timeout_s must be > 0 seconds or None, got {timeout_s!r}")
        self.max_variables = int(max_variables)
        self.timeout_s = timeout_s

    def solve(self, qubo: Qubo, timeout_s: float | None = None) -> Solution:
        """Minimise `qubo` within timeout_s (this call's, else the solver's own; None: no limit)."""
        if qubo.num_variables > self.max_variables:
            raise SolverUnavailable(
                f"{self.name}: {qubo.num_variables} variables exceed max_variables={self.max_variables}; "
                "use fewer adapter units or a solver that takes more"
            )
        deadline = Deadline(timeout_s if timeout_s is not None else self.timeout_s, self.name)
        deadline.check("before starting")
        solution = self._solve(qubo, deadline)
        deadline.check("answer came too late")
        solution.seconds = time.perf_counter() - deadline.start
        return solution

    @abstractmethod
    def _solve(self, qubo: Qubo, deadline: Deadline) -> Solution: ...


class ExactSolver(Solver):
    """Enumerates all 2^N states in chunks (memory O(chunk * N), time O(2^N N^2)); ties go to the lowest index."""

    name = "exact"

    def __init__(self, max_variables: int = 22, timeout_s: float | None = None, chunk: int = 1 << 15) -> None:
        super().__init__(max_variables, timeout_s)
        if max_variables > 30:
            raise ValueError(f"ExactSolver: max_variables={max_variables} means 2^{max_variables} states; use <= 30")
        self.chunk = int(chunk)

    def _solve(self, qubo: Qubo, deadline: Deadline) -> Solution:
        n = qubo.num_variables
        best_e, best_k, count = np.inf, -1, 0
        for start in range(0, 2**n, self.chunk):
            deadline.check(f"enumerated {start} of {2**n} states")
            energies = qubo.energy(basis_bits(n, start, min(start + self.chunk, 2**n)))
            k = int(np.argmin(energies))
            if energies[k] < best_e:
                best_e, best_k = float(energies[k]), start + k
            count += energies.size
        x = basis_bits(n, best_k, best_k + 1)[0]
        return Solution(x, float(qubo.energy(x)), 0.0, self.name, {"states": count})


def to_bqm(qubo: Qubo):
    """The QUBO as a dimod BinaryQuadraticModel over variables 0 .. N-1 (every one present, even unbiased)."""
    import dimod

    n, u = qubo.num_variables, qubo.upper
    linear = {i: float(u[i, i]) for i in range(n)}
    quadratic = {(int(i), int(j)): float(u[i, j]) for i, j in zip(*np.nonzero(np.triu(u, 1)))}
    return dimod.BinaryQuadraticModel(linear, quadratic, qubo.offset, dimod.BINARY)


def pair_flip_descent(qubo: Qubo, x: np.ndarray) -> np.ndarray:
    """Steepest descent over single flips and pair flips (which include swaps) until neither lowers the energy.

    Why: with a budget penalty, moving between two feasible selections by single flips crosses a barrier of about
    P, so single-flip annealing freezes into a feasible set at a temperature where the objective still barely
    matters; one swap is one move here. O(N^2) per step; the energy strictly falls, so it ends."""
    a = (qubo.upper + qubo.upper.T) / 2  # E = x^T a x + offset, a symmetric with a_ii = U_ii
    x = np.array(x, dtype=np.float64)
    for _ in range(10 * x.size * x.size + 10):
        s = 1.0 - 2.0 * x  # +1 where a flip sets the bit, -1 where it clears it
        single = s * (np.diag(a) + 2.0 * (a @ x - np.diag(a) * x))
        pair = single[:, None] + single[None, :] + 2.0 * a * np.outer(s, s)
        np.fill_diagonal(pair, np.inf)
        i, j = np.unravel_index(int(np.argmin(pair)), pair.shape)
        k = int(np.argmin(single))
        if min(single[k], pair[i, j]) >= -1e-12:
            break
        if single[k] <= pair[i, j]:
            x[k] = 1 - x[k]
        else:
            x[i], x[j] = 1 - x[i], 1 - x[j]
    return x.astype(np.int8)


class AnnealingSolver(Solver):
    """Simulated annealing from dwave-samplers on the QUBO's binary quadratic model; best of `num_reads` reads,
    each then polished by pair_flip_descent (polish=False: raw annealing). `seed` makes runs reproducible; the
    time budget interrupts the sampler between reads."""

    name = "annealing"

    def __init__(
        self,
        num_reads: int = 32,
        num_sweeps: int = 1000,
        seed: int | None = 0,
        polish: bool = True,
        max_variables: int = 5000,
        timeout_s: float | None = None,
    ) -> None:
        super().__init__(max_variables, timeout_s)
        if num_reads < 1 or num_sweeps < 1:
            raise ValueError(f"AnnealingSolver: num_reads and num_sweeps must be >= 1, got {num_reads}, {num_sweeps}")
        self.num_reads, self.num_sweeps, self.seed, self.polish = int(num_reads), int(num_sweeps), seed, polish

    def _solve(self, qubo: Qubo, deadline: Deadline) -> Solution:
        try:
            from dwave.samplers import SimulatedAnnealingSampler
        except ImportError as err:  # a core dependency, but say how to get it back
            raise SolverUnavailable(
                f"{self.name}: dwave-samplers is not installed ({err}); pip install dwave-samplers"
            ) from err
        n = qubo.num_variables
        sampleset = SimulatedAnnealingSampler().sample(
            to_bqm(qubo),
            num_reads=self.num_reads,
            num_sweeps=self.num_sweeps,
            seed=self.seed,
            interrupt_function=deadline.expired,
        )
        deadline.check(f"annealing, {len(sampleset)} of {self.num_reads} reads done")
        columns = [sampleset.variables.index(i) for i in range(n)]
        samples = np.unique(np.asarray(sampleset.record.sample)[:, columns].astype(np.int8), axis=0)
        raw = qubo.energy(samples)
        info = {"num_reads": len(sampleset), "annealed_energy": float(raw.min()), "polished": self.polish}
        if self.polish:
            polished = []
            for row in samples:
                deadline.check("polishing the annealed samples")
                polished.append(pair_flip_descent(qubo, row))
            samples = np.array(polished)
        x = samples[int(np.argmin(qubo.energy(samples)))]
        return Solution(x, float(qubo.energy(x)), 0.0, self.name, info)


_WARNED: set[str] = set()


def reset_fallback_warnings() -> None:
    """Forget which fallback keys have warned (tests; a new run)."""
    _WARNED.clear()


def solve_with_fallback(
    primary: Solver,
    fallback: Solver,
    qubo: Qubo,
    timeout_s: float | None = None,
    warn_once_key: str | None = None,
) -> tuple[Solution, bool]:
    """Ask `primary`; if it is unavailable or times out, ask `fallback` (with its own timeout_s) instead.

    Returns (solution, fell_back). The first fallback for a key logs one WARNING naming both solvers and the
    reason; later ones for the same key log at DEBUG, so a callback solving every k steps warns once per run.
    The reason is also kept in solution.info["fallback_reason"]."""
    try:
        return primary.solve(qubo, timeout_s), False
    except SolverUnavailable as err:
        reason = str(err)
    solution = fallback.solve(qubo, timeout_s)
    solution.info["fallback_reason"] = reason
    key = warn_once_key if warn_once_key is not None else f"{primary.name}->{fallback.name}"
    message = "solver %r could not answer (%s); solution taken from the fallback solver %r%s"
    if key in _WARNED:
        log.debug(message, primary.name, reason, fallback.name, "")
    else:
        _WARNED.add(key)
        log.warning(message, primary.name, reason, fallback.name, " (said once; repeats are logged at debug level)")
    return solution, True

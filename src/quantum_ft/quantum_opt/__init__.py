"""Adapter-unit selection as a QUBO (qubo.py) and the solvers behind one interface: exact enumeration, simulated
annealing (dwave-samplers), QAOA on our engine or PennyLane, a cloud-service adapter, and a classical fallback
that says once when it was needed (solvers.py, qaoa.py, cloud.py, registry.py)."""

from .cloud import PROVIDERS, CloudSolver
from .qaoa import QaoaSolver
from .qubo import Qubo, basis_bits, selection_penalty_bound, selection_qubo
from .registry import SOLVERS, make_solver
from .solvers import (
    AnnealingSolver,
    ExactSolver,
    Solution,
    Solver,
    SolverTimeout,
    SolverUnavailable,
    reset_fallback_warnings,
    solve_with_fallback,
)

__all__ = [
    "PROVIDERS",
    "SOLVERS",
    "AnnealingSolver",
    "CloudSolver",
    "ExactSolver",
    "QaoaSolver",
    "Qubo",
    "Solution",
    "Solver",
    "SolverTimeout",
    "SolverUnavailable",
    "basis_bits",
    "make_solver",
    "reset_fallback_warnings",
    "selection_penalty_bound",
    "selection_qubo",
    "solve_with_fallback",
]

"""A QUBO over N binary variables and the adapter-selection QUBO built from importance and redundancy.

Energy: E(x) = x^T U x + offset with x in {0, 1}^N and U upper-triangular (x_i^2 = x_i, so the diagonal holds the
linear terms). Bit and qubit conventions are those of quantum_ft.qasm.hamiltonian: qubit i is variable i, x_i = 1 is
|1> (Z = -1, so x_i = (1 - z_i) / 2), and basis-state index k has qubit i in bit i of k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from quantum_ft.qasm.hamiltonian import Term
from quantum_ft.qasm.hamiltonian import to_ising as poly_to_ising
from quantum_ft.qasm.problems.base import Poly


@dataclass(frozen=True, eq=False)  # arrays: no field-wise ==
class Qubo:
    """Minimise x^T matrix x + offset over x in {0, 1}^N.

    `matrix` may be symmetric, upper-triangular or neither: it is folded once into the upper-triangular form
    (U_ii = Q_ii, U_ij = Q_ij + Q_ji for i < j), which has the same energy on every binary x."""

    matrix: np.ndarray
    offset: float = 0.0
    labels: tuple[str, ...] | None = None
    upper: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        q = np.asarray(self.matrix, dtype=np.float64)
        if q.ndim != 2 or q.shape[0] != q.shape[1] or q.shape[0] == 0:
            raise ValueError(f"Qubo.matrix must be a non-empty square (N, N) matrix, got shape {q.shape}")
        if not np.all(np.isfinite(q)) or not np.isfinite(self.offset):
            raise ValueError("Qubo.matrix and Qubo.offset must be finite (found NaN or inf); check the inputs")
        if self.labels is not None and len(self.labels) != q.shape[0]:
            raise ValueError(f"Qubo.labels has {len(self.labels)} names for {q.shape[0]} variables; give one each")
        upper = np.triu(q + q.T, 1) + np.diag(np.diag(q))
        object.__setattr__(self, "matrix", q)
        object.__setattr__(self, "offset", float(self.offset))
        object.__setattr__(self, "upper", upper)
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))

    @property
    def num_variables(self) -> int:
        return int(self.upper.shape[0])

    def energy(self, x: np.ndarray) -> np.ndarray | float:
        """E of one 0/1 vector (N,) -> float, or of a batch (B, N) -> (B,) array."""
        arr = np.asarray(x)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.num_variables:
            raise ValueError(
                f"Qubo.energy expects 0/1 vectors of length {self.num_variables} (shape (N,) or (B, N)), "
                f"got shape {arr.shape}"
            )
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError("Qubo.energy expects binary vectors: every entry must be 0 or 1")
        xf = np.atleast_2d(arr).astype(np.float64)
        values = ((xf @ self.upper) * xf).sum(axis=1) + self.offset
        return float(values[0]) if arr.ndim == 1 else values

    def to_poly(self) -> Poly:
        """The binary polynomial of quantum_ft.qasm (monomial -> coefficient), zero coefficients dropped."""
        poly: Poly = {(): self.offset} if self.offset else {}
        n = self.num_variables
        for i in range(n):
            for j in range(i, n):
                c = float(self.upper[i, j])
                if c:
                    poly[(i,) if i == j else (i, j)] = c
        return poly

    def ising_terms(self) -> tuple[list[Term], float]:
        """Pauli-Z terms and constant, by the same expansion the circuit data uses (qasm.hamiltonian.to_ising)."""
        return poly_to_ising(self.to_poly())

    def to_ising(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(h, J, const) with E = sum_i h_i z_i + sum_{i<j} J_ij z_i z_j + const, z_i = 1 - 2 x_i; J upper."""
        n = self.num_variables
        h, coupling = np.zeros(n), np.zeros((n, n))
        terms, const = self.ising_terms()
        for coef, qubits in terms:
            if len(qubits) == 1:
                h[qubits[0]] += coef
            else:
                coupling[qubits[0], qubits[1]] += coef
        return h, coupling, const

    def diagonal(self) -> np.ndarray:
        """E on every basis state k = 0 .. 2^N - 1 (qubit i = bit i of k): the cost Hamiltonian's diagonal."""
        return self.energy(basis_bits(self.num_variables))


def basis_bits(n: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows k = start .. stop - 1 as 0/1 vectors (bit i of k in column i), int8."""
    idx = np.arange(start, 2**n if stop is None else stop, dtype=np.int64)
    return ((idx[:, None] >> np.arange(n, dtype=np.int64)[None, :]) & 1).astype(np.int8)


def selection_penalty_bound(importance: np.ndarray, similarity: np.ndarray, redundancy: float) -> float:
    """L = max_i max(importance_i + r * sum_{j != i} max(-S_ij, 0), -importance_i + r * sum_{j != i} max(S_ij, 0)):
    the most that dropping or adding one unit can lower the objective f(x) = -importance.x + r sum_{i<j} S_ij x_i x_j.

    Why P > L makes every minimiser keep exactly m: take x with k != m units. If k > m, dropping any kept unit
    changes the penalty by P((k-1-m)^2 - (k-m)^2) = -P(2(k-m) - 1) <= -P and f by at most L; if k < m, adding any
    unit likewise changes the penalty by <= -P. Either way a neighbour has lower energy, so x is no minimiser.
    L is at most the cruder D = sum|importance| + r sum_{i<j}|S_ij| (f's whole range), and usually ~N/2 times
    smaller; a small penalty matters, since it is the barrier annealing and QAOA must cross between feasible sets."""
    imp = np.asarray(importance, dtype=np.float64)
    off = np.asarray(similarity, dtype=np.float64) * redundancy
    off = off - np.diag(np.diag(off))
    gain_adding = imp + np.clip(-off, 0, None).sum(axis=1)  # f(x) - f(x + e_i), at its largest over x
    gain_dropping = -imp + np.clip(off, 0, None).sum(axis=1)  # f(x) - f(x - e_i), likewise
    return float(max(gain_adding.max(), gain_dropping.max(), 0.0))


def selection_qubo(
    importance: np.ndarray,
    similarity: np.ndarray,
    budget: int,
    redundancy: float = 1.0,
    penalty: float | None = None,
    labels: list[str] | tuple[str, ...] | None = None,
) -> Qubo:
    """Keep `budget` = m of N adapter units: minimise
    -sum_i importance_i x_i + redundancy * sum_{i<j} similarity_ij x_i x_j + P (sum_i x_i - m)^2.

    Important units lower the energy; two similar units kept together raise it (so two identical units are not
    both kept when a comparable distinct one exists). P defaults to 1.1 * L + 1e-9 with L from
    selection_penalty_bound, which guarantees that every minimiser has exactly m ones; an explicit P <= L gives a
    softer budget with no such guarantee. The diagonal of `similarity` is ignored (a unit is not redundant with
    itself); the matrix must be symmetric."""
    imp = np.asarray(importance, dtype=np.float64)
    sim = np.asarray(similarity, dtype=np.float64)
    if imp.ndim != 1 or imp.size == 0:
        raise ValueError(f"selection_qubo: importance must be a non-empty 1-D array (one per unit), got {imp.shape}")
    n = imp.size
    if sim.shape != (n, n):
        raise ValueError(f"selection_qubo: similarity must be ({n}, {n}) for {n} importance values, got {sim.shape}")
    if not (np.all(np.isfinite(imp)) and np.all(np.isfinite(sim))):
        raise ValueError("selection_qubo: importance and similarity must be finite (found NaN or inf)")
    if not np.allclose(sim, sim.T, rtol=1e-9, atol=1e-12):
        raise ValueError("selection_qubo: similarity must be symmetric (similarity[i, j] == similarity[j, i])")
    if isinstance(budget, bool) or int(budget) != budget or not 1 <= int(budget) <= n:
        raise ValueError(f"selection_qubo: budget must be an integer in 1..{n} (units to keep), got {budget!r}")
    if not (np.isfinite(redundancy) and redundancy >= 0):
        raise ValueError(f"selection_qubo: redundancy must be finite and >= 0, got {redundancy!r}")
    m = int(budget)
    bound = selection_penalty_bound(imp, sim, redundancy)
    if penalty is None:
        penalty = 1.1 * bound + 1e-9  # strictly above L, with a margin against rounding
    elif not (np.isfinite(penalty) and penalty > 0):
        raise ValueError(f"selection_qubo: penalty must be finite and > 0 (None: the safe default), got {penalty!r}")
    # P (sum x - m)^2 = P [sum_i (1 - 2m) x_i + 2 sum_{i<j} x_i x_j + m^2]
    q = np.triu(redundancy * sim + 2.0 * penalty, 1)
    q[np.diag_indices(n)] = -imp + penalty * (1 - 2 * m)
    return Qubo(q, offset=penalty * m * m, labels=tuple(labels) if labels is not None else None)

"""QUBO (or higher-order binary polynomial) -> Ising Pauli-Z terms, the diagonal of the cost, and its ground states.

Conventions, stated once: qubit i is variable i (node i for node-variable problems). x_i = 1 is the state |1>,
whose Z eigenvalue is -1, so x_i = (1 - z_i) / 2. Basis-state index k has qubit i in bit i of k (little-endian,
as qiskit's Statevector). A written bitstring has qubit 0 as its FIRST (leftmost) character, so character i is
qubit i; qiskit prints the reverse (qubit 0 rightmost).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .problems.base import Poly

Term = tuple[float, tuple[int, ...]]  # coefficient, qubits of the Z product (empty: identity)


def to_ising(poly: Poly) -> tuple[list[Term], float]:
    """Expand every monomial prod_{i in T} x_i = 2^-|T| sum_{S in T} (-1)^|S| z_S; returns (terms, constant),
    terms sorted by order then qubits, zero coefficients dropped."""
    acc: dict[tuple[int, ...], float] = {}
    for key, coef in poly.items():
        scale = coef / 2 ** len(key)
        for r in range(len(key) + 1):
            for subset in itertools.combinations(key, r):
                acc[subset] = acc.get(subset, 0.0) + scale * (-1) ** r
    const = acc.pop((), 0.0)
    terms = [(c, q) for q, c in acc.items() if abs(c) > 1e-12]
    terms.sort(key=lambda t: (len(t[1]), t[1]))
    return terms, float(const)


def z_parity(n: int, qubits: tuple[int, ...]) -> np.ndarray:
    """prod_{i in qubits} z_i on every basis state, as +-1."""
    idx = np.arange(2**n)
    mask = sum(1 << q for q in qubits)
    ones = np.zeros(2**n, dtype=np.int64)
    x = idx & mask
    while np.any(x):
        ones += x & 1
        x >>= 1
    return 1.0 - 2.0 * (ones & 1)


def diagonal(terms: list[Term], const: float, n: int) -> np.ndarray:
    """The cost on every basis state (index convention above): the whole Hamiltonian, since it is diagonal."""
    energies = np.full(2**n, const, dtype=np.float64)
    for coef, qubits in terms:
        energies += coef * z_parity(n, qubits)
    return energies


def bitstring(index: int, n: int) -> str:
    """Qubit 0 first."""
    return "".join(str((index >> i) & 1) for i in range(n))


def index_of(bits: str) -> int:
    return sum(int(b) << i for i, b in enumerate(bits))


def bits_of(index: int, n: int) -> tuple[int, ...]:
    return tuple((index >> i) & 1 for i in range(n))


@dataclass(frozen=True)
class Spectrum:
    """What the diagonal says: ground energy and states (within `tol`), first excited energy, range."""

    ground_energy: float
    ground_indices: np.ndarray
    first_excited_energy: float | None  # None when every state is a ground state
    max_energy: float
    tol: float

    @property
    def degeneracy(self) -> int:
        return int(self.ground_indices.size)


def spectrum(energies: np.ndarray, rtol: float = 1e-9, atol: float = 1e-9) -> Spectrum:
    """Ground states are the energies within atol + rtol * max|E| of the minimum (never float equality)."""
    tol = atol + rtol * float(np.max(np.abs(energies)))
    e0 = float(energies.min())
    ground = np.flatnonzero(energies <= e0 + tol)
    rest = energies[energies > e0 + tol]
    return Spectrum(e0, ground, float(rest.min()) if rest.size else None, float(energies.max()), tol)


def format_hamiltonian(terms: list[Term], const: float, digits: int = 6) -> str:
    """A readable sum such as `0.5 * Z0 Z1 - 1.0 * Z2 + 3.0`: Z<i> acts on qubit i; the constant keeps the
    energies equal to the problem's objective."""
    parts = []
    for coef, qubits in terms:
        parts.append((coef, " ".join(f"Z{q}" for q in qubits)))
    if abs(const) > 1e-12 or not parts:
        parts.append((const, ""))
    out = ""
    for k, (coef, ops) in enumerate(parts):
        c = round(coef, digits)
        sign = "-" if c < 0 else "+"
        body = f"{abs(c):g}" + (f" * {ops}" if ops else "")
        out += (("-" if sign == "-" else "") + body) if k == 0 else f" {sign} {body}"
    return out


def parse_hamiltonian(text: str, n: int) -> np.ndarray:
    """The diagonal of a string written by format_hamiltonian (for readers of the dataset and the tests)."""
    energies = np.zeros(2**n)
    for chunk in text.replace(" - ", " + -").split(" + "):
        chunk = chunk.strip()
        coef_text, _, ops = chunk.partition(" * ")
        qubits = tuple(int(op[1:]) for op in ops.split()) if ops else ()
        energies += float(coef_text) * z_parity(n, qubits)
    return energies

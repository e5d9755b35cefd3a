"""What every problem class provides: a binary polynomial (QUBO, or higher order for hypergraphs) over qubits, the
decoding of a bitstring back to a solution, a feasibility check and an independent exact solver for the tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

Poly = dict[tuple[int, ...], float]  # monomial (sorted distinct variable indices; () is the constant) -> coefficient
Bits = tuple[int, ...]  # bits[i] is qubit i


@dataclass
class Instance:
    """One posed problem. `poly` is minimised over bits; `qubit_labels[i]` says what qubit i means."""

    problem: str
    graph: nx.Graph
    poly: Poly
    num_qubits: int
    qubit_labels: list[str]
    attributes: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable: root, k, colours, source, ...
    signature_graph: nx.Graph | None = None  # what the WL hash sees when `graph` alone does not hold the instance


@dataclass(frozen=True)
class ProblemClass:
    """A registry entry. `decode` returns None for a bitstring that is no solution at all (e.g. not one-hot);
    `optimal` is an independent method (networkx or exhaustive search over solutions), used by the tests only."""

    name: str
    description: str
    build: Callable[..., Instance]
    decode: Callable[[Instance, Bits], Any]
    feasible: Callable[[Instance, Bits], bool]
    optimal: Callable[[Instance], set]
    random_instance: Callable[[np.random.Generator, int], Instance | None]
    sizes: Callable[[int], list[int]]  # the qubit counts this class can pose, up to a cap


class PolyBuilder:
    """Accumulates a binary polynomial; x_i^2 = x_i, so monomials are sets of variables."""

    def __init__(self) -> None:
        self.terms: Poly = {}

    def add(self, coef: float, *variables: int) -> None:
        key = tuple(sorted(set(variables)))
        self.terms[key] = self.terms.get(key, 0.0) + float(coef)

    def add_square(self, coef: float, linear: dict[int, float], const: float) -> None:
        """coef * (const + sum_i linear[i] x_i)^2."""
        self.add(coef * const * const)
        items = sorted(linear.items())
        for i, a in items:
            self.add(coef * (a * a + 2 * const * a), i)
        for (i, a), (j, b) in itertools.combinations(items, 2):
            self.add(coef * 2 * a * b, i, j)

    def add_permutation_penalty(self, coef: float, n: int) -> None:
        """coef * (sum over rows and columns of (1 - their ones)^2) on the n x n matrix x[r * n + c]: zero exactly on
        permutation matrices, the feasible set `permutation` decodes."""
        for r in range(n):
            self.add_square(coef, {r * n + c: -1.0 for c in range(n)}, 1.0)
        for c in range(n):
            self.add_square(coef, {r * n + c: -1.0 for r in range(n)}, 1.0)

    def add_one_minus_product(self, coef: float, variables: Iterable[int]) -> None:
        """coef * prod_i (1 - x_i): 1 exactly when every x_i is 0 (an exact k-body term, no slack qubits)."""
        variables = sorted(set(variables))
        for r in range(len(variables) + 1):
            for subset in itertools.combinations(variables, r):
                self.add(coef * (-1) ** r, *subset)

    def add_product_all(self, coef: float, variables: Iterable[int]) -> None:
        """coef * prod_i x_i."""
        self.add(coef, *variables)

    def poly(self) -> Poly:
        return {k: v for k, v in self.terms.items() if abs(v) > 1e-12}


def poly_value(poly: Poly, bits: Bits) -> float:
    return float(sum(c * all(bits[i] for i in key) for key, c in poly.items()))


def all_bits(n: int) -> Iterable[Bits]:
    """Every bitstring of n bits, bits[i] = qubit i."""
    return itertools.product((0, 1), repeat=n)


def connected_gnp(rng: np.random.Generator, n: int, p: float) -> nx.Graph:
    """A random connected graph on nodes 0..n-1: G(n, p) plus a random spanning tree's edges."""
    g = nx.gnp_random_graph(n, p, seed=int(rng.integers(2**31)))
    order = rng.permutation(n).tolist()
    for a in range(1, n):
        g.add_edge(order[a], order[int(rng.integers(a))])
    return g


def unit_weights(g: nx.Graph) -> nx.Graph:
    for u, v in g.edges:
        g[u][v]["weight"] = 1
    return g


def int_weights(rng: np.random.Generator, g: nx.Graph, high: int = 3) -> nx.Graph:
    for u, v in g.edges:
        g[u][v]["weight"] = int(rng.integers(1, high + 1))
    return g


def sorted_edges(g: nx.Graph) -> list[tuple[int, int]]:
    """Edges as (u, v) with u < v (undirected) in sorted order: edge i is qubit i for edge-variable classes."""
    if g.is_directed():
        return sorted(g.edges)
    return sorted(tuple(sorted(e)) for e in g.edges)


def bipartition(inst: Instance, bits: Bits) -> frozenset:
    """The decode of the two-sided classes (cuts, communities): the non-empty sides as sets of qubits, unordered, so
    a bitstring and its complement are the same solution."""
    sides = [frozenset(i for i, x in enumerate(bits) if x == s) for s in (0, 1)]
    return frozenset(s for s in sides if s)


def chosen_edges(inst: Instance, bits: Bits) -> frozenset:
    """The decode of the edge-variable classes (matching, edge cover): the edges whose qubit is 1."""
    return frozenset(tuple(e) for e, x in zip(inst.attributes["edges"], bits, strict=True) if x)


def permutation(bits: Bits, n: int) -> tuple[int, ...] | None:
    """The n x n one-hot matrix bits[r * n + c] as perm[r] = the column of row r's one, or None when it is not a
    permutation matrix (the decode of isomorphism and Hamiltonian path)."""
    perm = []
    for r in range(n):
        ones = [c for c in range(n) if bits[r * n + c]]
        if len(ones) != 1:
            return None
        perm.append(ones[0])
    return tuple(perm) if len(set(perm)) == n else None


def unconstrained(inst: Instance, bits: Bits) -> bool:
    """The feasibility of classes where every bitstring is a solution (cuts, communities)."""
    return True


def min_solutions(candidates: Iterable[tuple[float, Any]], tol: float = 1e-9) -> set:
    """The solutions whose value is within tol of the smallest."""
    items = list(candidates)
    if not items:
        return set()
    best = min(v for v, _ in items)
    return {s for v, s in items if v <= best + tol}

"""Hamiltonian path (Lucas section 7.1): x_{v,j} = 1 puts node v at position j (qubit v*n + j).
H = A sum_v (1 - sum_j x_{v,j})^2 + A sum_j (1 - sum_v x_{v,j})^2 + A sum_{uv not an edge} sum_j
(x_{u,j} x_{v,j+1} + x_{v,j} x_{u,j+1}): energy 0 exactly on the paths through every node (n^2 qubits)."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass, permutation

NAME = "hamiltonian_path"
A = 1.0


def build(graph: nx.Graph) -> Instance:
    n = graph.number_of_nodes()
    b = PolyBuilder()
    b.add_permutation_penalty(A, n)
    for u, v in itertools.combinations(range(n), 2):
        if not graph.has_edge(u, v):
            for j in range(n - 1):
                b.add(A, u * n + j, v * n + j + 1)
                b.add(A, v * n + j, u * n + j + 1)
    labels = [f"node {v} at position {j}" for v in range(n) for j in range(n)]
    return Instance(NAME, graph, b.poly(), n * n, labels)


def decode(inst: Instance, bits: Bits) -> tuple[int, ...] | None:
    """The nodes in path order (bit v * n + j: node v at position j), or None when the bits are not a permutation
    matrix."""
    position = permutation(bits, inst.graph.number_of_nodes())
    if position is None:
        return None
    order = [0] * len(position)
    for v, j in enumerate(position):
        order[j] = v
    return tuple(order)


def feasible(inst: Instance, bits: Bits) -> bool:
    order = decode(inst, bits)
    return order is not None and nx.is_simple_path(inst.graph, list(order))


def optimal(inst: Instance) -> set:
    """Exhaustive over node orders, checked with networkx's is_simple_path."""
    g = inst.graph
    return {p for p in itertools.permutations(range(g.number_of_nodes())) if nx.is_simple_path(g, list(p))}


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    """A planted random Hamiltonian path plus random extra edges."""
    n = int(round(np.sqrt(num_qubits)))
    if n * n != num_qubits or n < 2:
        return None
    order = rng.permutation(n).tolist()
    g = nx.empty_graph(n)
    g.add_edges_from(zip(order, order[1:], strict=False))
    for u, v in itertools.combinations(range(n), 2):
        if rng.random() < 0.25:
            g.add_edge(u, v)
    return build(g)


def sizes(cap: int) -> list[int]:
    return [n * n for n in range(2, 5) if n * n <= cap]


PROBLEM = ProblemClass(NAME, "a path through every node", build, decode, feasible, optimal, random_instance, sizes)

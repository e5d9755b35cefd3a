"""Minimum vertex cover (Lucas section 4.3): A sum_edges (1 - x_u)(1 - x_v) + B sum_v x_v with A = 2 > B = 1, so
adding a node to cover an open edge always lowers the energy: no uncovering assignment is a minimiser."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass, connected_gnp, unit_weights

NAME = "vertex_cover"
A, B = 2.0, 1.0


def build(graph: nx.Graph) -> Instance:
    b = PolyBuilder()
    for u, v in graph.edges:
        b.add(A)
        b.add(-A, u)
        b.add(-A, v)
        b.add(A, u, v)
    for v in graph.nodes:
        b.add(B, v)
    n = graph.number_of_nodes()
    return Instance(NAME, graph, b.poly(), n, [f"node {v} in cover" for v in range(n)])


def decode(inst: Instance, bits: Bits) -> frozenset:
    return frozenset(i for i, x in enumerate(bits) if x)


def feasible(inst: Instance, bits: Bits) -> bool:
    return all(bits[u] or bits[v] for u, v in inst.graph.edges)


def optimal(inst: Instance) -> set:
    """Every node set of the minimum size that touches every edge; that size is checked against networkx's
    maximum independent set (the complement of a minimum cover)."""
    g = inst.graph
    independent, _ = nx.max_weight_clique(nx.complement(g), weight=None)
    size = g.number_of_nodes() - len(independent)
    return {frozenset(c) for c in itertools.combinations(g.nodes, size) if all(u in c or v in c for u, v in g.edges)}


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    if num_qubits < 2:
        return None
    return build(unit_weights(connected_gnp(rng, num_qubits, float(rng.uniform(0.2, 0.7)))))


def sizes(cap: int) -> list[int]:
    return list(range(2, cap + 1))


PROBLEM = ProblemClass(NAME, "minimum vertex cover", build, decode, feasible, optimal, random_instance, sizes)

"""Max-cut (the canonical QAOA problem): x_v is node v's side; minimise -(weight of the cut edges)."""

from __future__ import annotations

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass, all_bits, connected_gnp, int_weights, min_solutions

NAME = "max_cut"


def build(graph: nx.Graph) -> Instance:
    b = PolyBuilder()
    for u, v, w in graph.edges(data="weight", default=1):
        b.add(-w, u)  # -w (x_u + x_v - 2 x_u x_v): -w exactly when the edge is cut
        b.add(-w, v)
        b.add(2 * w, u, v)
    n = graph.number_of_nodes()
    return Instance(NAME, graph, b.poly(), n, [f"node {v}" for v in range(n)])


def _partition(bits: Bits) -> frozenset:
    sides = [frozenset(i for i, x in enumerate(bits) if x == s) for s in (0, 1)]
    return frozenset(s for s in sides if s)


def decode(inst: Instance, bits: Bits) -> frozenset:
    return _partition(bits)


def feasible(inst: Instance, bits: Bits) -> bool:
    return True


def optimal(inst: Instance) -> set:
    g = inst.graph
    n = g.number_of_nodes()
    cands = []
    for bits in all_bits(n):
        side = {i for i in range(n) if bits[i]}
        cut = nx.cut_size(g, side, weight="weight") if 0 < len(side) < n else 0
        cands.append((-cut, _partition(bits)))
    return min_solutions(cands)


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    if num_qubits < 2:
        return None
    g = int_weights(rng, connected_gnp(rng, num_qubits, float(rng.uniform(0.3, 0.8))))
    return build(g)


def sizes(cap: int) -> list[int]:
    return list(range(2, cap + 1))


PROBLEM = ProblemClass(NAME, "maximum (weighted) cut", build, decode, feasible, optimal, random_instance, sizes)

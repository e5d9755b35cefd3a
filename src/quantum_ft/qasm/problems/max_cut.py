"""Max-cut (the canonical QAOA problem): x_v is node v's side; minimise -(weight of the cut edges)."""

from __future__ import annotations

import networkx as nx
import numpy as np

from .base import (
    Instance,
    PolyBuilder,
    ProblemClass,
    all_bits,
    bipartition,
    connected_gnp,
    int_weights,
    min_solutions,
    unconstrained,
)

NAME = "max_cut"


def build(graph: nx.Graph) -> Instance:
    b = PolyBuilder()
    for u, v, w in graph.edges(data="weight", default=1):
        b.add(-w, u)  # -w (x_u + x_v - 2 x_u x_v): -w exactly when the edge is cut
        b.add(-w, v)
        b.add(2 * w, u, v)
    n = graph.number_of_nodes()
    return Instance(NAME, graph, b.poly(), n, [f"node {v}" for v in range(n)])


decode = bipartition
feasible = unconstrained


def optimal(inst: Instance) -> set:
    g = inst.graph
    n = g.number_of_nodes()
    cands = []
    for bits in all_bits(n):
        side = {i for i in range(n) if bits[i]}
        cut = nx.cut_size(g, side, weight="weight") if 0 < len(side) < n else 0
        cands.append((-cut, bipartition(inst, bits)))
    return min_solutions(cands)


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    if num_qubits < 2:
        return None
    g = int_weights(rng, connected_gnp(rng, num_qubits, float(rng.uniform(0.3, 0.8))))
    return build(g)


def sizes(cap: int) -> list[int]:
    return list(range(2, cap + 1))


PROBLEM = ProblemClass(NAME, "maximum (weighted) cut", build, decode, feasible, optimal, random_instance, sizes)

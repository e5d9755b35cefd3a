"""Community detection as two-way modularity maximisation (Newman): minimise
-(1/2m) sum_ij (A_ij - k_i k_j / 2m) [c_i = c_j], with [c_i = c_j] = 1 - x_i - x_j + 2 x_i x_j. No constraint."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np

from .base import (
    Instance,
    PolyBuilder,
    ProblemClass,
    all_bits,
    bipartition,
    connected_gnp,
    min_solutions,
    unconstrained,
    unit_weights,
)

NAME = "community_detection"


def build(graph: nx.Graph) -> Instance:
    n = graph.number_of_nodes()
    m = graph.number_of_edges()
    deg = dict(graph.degree())
    b = PolyBuilder()
    for i in range(n):  # i = j: always the same community
        b.add(-(0.0 - deg[i] * deg[i] / (2 * m)) / (2 * m))
    for i, j in itertools.combinations(range(n), 2):
        bij = (1.0 if graph.has_edge(i, j) else 0.0) - deg[i] * deg[j] / (2 * m)
        c = -2 * bij / (2 * m)  # ordered pairs (i, j) and (j, i)
        b.add(c)
        b.add(-c, i)
        b.add(-c, j)
        b.add(2 * c, i, j)
    return Instance(NAME, graph, b.poly(), n, [f"node {v} in community 1" for v in range(n)])


decode = bipartition
feasible = unconstrained


def optimal(inst: Instance) -> set:
    """Exhaustive over bipartitions, scored by networkx's own modularity."""
    n = inst.graph.number_of_nodes()
    cands = []
    for bits in all_bits(n):
        part = bipartition(inst, bits)
        cands.append((-nx.community.modularity(inst.graph, [set(s) for s in part]), part))
    return min_solutions(cands)


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    """Two planted groups, dense inside, sparse across."""
    if num_qubits < 3:
        return None
    n = num_qubits
    group = rng.integers(0, 2, size=n)
    g = nx.empty_graph(n)
    for i, j in itertools.combinations(range(n), 2):
        if rng.random() < (0.7 if group[i] == group[j] else 0.15):
            g.add_edge(i, j)
    if g.number_of_edges() == 0:
        g = connected_gnp(rng, n, 0.3)
    return build(unit_weights(g))


def sizes(cap: int) -> list[int]:
    return list(range(3, cap + 1))


PROBLEM = ProblemClass(
    NAME, "two communities of maximum modularity", build, decode, feasible, optimal, random_instance, sizes
)

"""k-clique (Lucas section 2.3): H = A (k - sum_v x_v)^2 + B (k(k-1)/2 - sum_edges x_u x_v), B = 1, A = k + 1 > kB,
so extra nodes never buy enough edges to pay for themselves. Energy 0 exactly on the k-cliques."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass

NAME = "k_clique"


def build(graph: nx.Graph, k: int) -> Instance:
    n = graph.number_of_nodes()
    a, b_ = k + 1.0, 1.0
    b = PolyBuilder()
    b.add_square(a, {v: -1.0 for v in range(n)}, float(k))
    b.add(b_ * k * (k - 1) / 2)
    for u, v in graph.edges:
        b.add(-b_, u, v)
    return Instance(NAME, graph, b.poly(), n, [f"node {v} in the clique" for v in range(n)], {"k": k})


def decode(inst: Instance, bits: Bits) -> frozenset:
    return frozenset(i for i, x in enumerate(bits) if x)


def feasible(inst: Instance, bits: Bits) -> bool:
    nodes = [i for i, x in enumerate(bits) if x]
    return len(nodes) == inst.attributes["k"] and all(
        inst.graph.has_edge(u, v) for u, v in itertools.combinations(nodes, 2)
    )


def optimal(inst: Instance) -> set:
    k = inst.attributes["k"]
    return {frozenset(c) for c in nx.enumerate_all_cliques(inst.graph) if len(c) == k}


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    """A planted k-clique in a sparse random graph (k from 2 to n - 1)."""
    n = num_qubits
    if n < 3:
        return None
    k = int(rng.integers(2, min(n - 1, 5) + 1))
    g = nx.gnp_random_graph(n, float(rng.uniform(0.1, 0.4)), seed=int(rng.integers(2**31)))
    g.add_edges_from(itertools.combinations(rng.choice(n, size=k, replace=False).tolist(), 2))
    return build(g, k)


def sizes(cap: int) -> list[int]:
    return list(range(3, cap + 1))


PROBLEM = ProblemClass(NAME, "a clique of k nodes", build, decode, feasible, optimal, random_instance, sizes)

"""The connected component of a given root node: the smallest node set that holds the root and that no edge
leaves. H = A sum_edges (x_u - x_v)^2 + sum_v x_v - (n + 1) x_root with A = n: leaving an edge costs more than
any set can save, and dropping the root costs more than the whole graph."""

from __future__ import annotations

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass

NAME = "connected_components"


def build(graph: nx.Graph, root: int) -> Instance:
    n = graph.number_of_nodes()
    b = PolyBuilder()
    for u, v in graph.edges:
        b.add(n, u)
        b.add(n, v)
        b.add(-2 * n, u, v)
    for v in graph.nodes:
        b.add(1.0, v)
    b.add(-(n + 1.0), root)
    return Instance(NAME, graph, b.poly(), n, [f"node {v} in the root's component" for v in range(n)], {"root": root})


def decode(inst: Instance, bits: Bits) -> frozenset:
    return frozenset(i for i, x in enumerate(bits) if x)


def feasible(inst: Instance, bits: Bits) -> bool:
    return bool(bits[inst.attributes["root"]]) and all(bits[u] == bits[v] for u, v in inst.graph.edges)


def optimal(inst: Instance) -> set:
    return {frozenset(nx.node_connected_component(inst.graph, inst.attributes["root"]))}


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    """Two to three random components (sometimes one), so the answer is rarely the whole graph."""
    if num_qubits < 2:
        return None
    n = num_qubits
    labels = rng.integers(0, int(rng.integers(1, 4)), size=n)
    g = nx.empty_graph(n)
    for part in {int(c) for c in labels}:
        members = [i for i in range(n) if labels[i] == part]
        order = rng.permutation(members).tolist()
        for a in range(1, len(order)):  # a random tree keeps the part connected
            g.add_edge(order[a], order[int(rng.integers(a))])
        for i in members:
            for j in members:
                if i < j and rng.random() < 0.3:
                    g.add_edge(i, j)
    return build(g, int(rng.integers(n)))


def sizes(cap: int) -> list[int]:
    return list(range(2, cap + 1))


PROBLEM = ProblemClass(
    NAME, "connected component of a root node", build, decode, feasible, optimal, random_instance, sizes
)

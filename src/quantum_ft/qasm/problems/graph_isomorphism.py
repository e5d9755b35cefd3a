"""Graph isomorphism (Lucas section 9): x_{v,i} = 1 maps node v of G1 onto node i of G2 (qubit v*n + i).
H = A sum_v (1 - sum_i x_{v,i})^2 + A sum_i (1 - sum_v x_{v,i})^2 + B (edge of one graph mapped onto a non-edge
of the other): energy 0 exactly on the isomorphisms. G1 is `graph`; G2's edges are in the attributes."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass, permutation

NAME = "graph_isomorphism"
A, B = 1.0, 1.0


def build(graph: nx.Graph, graph2: nx.Graph) -> Instance:
    n = graph.number_of_nodes()
    if graph2.number_of_nodes() != n:
        raise ValueError(f"graph_isomorphism needs two graphs of equal size, got {n} and {graph2.number_of_nodes()}")
    b = PolyBuilder()
    b.add_permutation_penalty(A, n)
    for u, v in itertools.combinations(range(n), 2):
        for i, j in itertools.permutations(range(n), 2):
            if graph.has_edge(u, v) != graph2.has_edge(i, j):
                b.add(B, u * n + i, v * n + j)
    g = graph.copy()
    g.graph["graph_2_edges"] = sorted(tuple(sorted(e)) for e in graph2.edges)
    pair = nx.disjoint_union(graph, graph2)  # the signature sees both graphs
    labels = [f"G1 node {v} -> G2 node {i}" for v in range(n) for i in range(n)]
    attrs = {"graph_2_edges": [list(e) for e in g.graph["graph_2_edges"]]}
    return Instance(NAME, g, b.poly(), n * n, labels, attrs, signature_graph=pair)


def _graph2(inst: Instance) -> nx.Graph:
    g2 = nx.empty_graph(inst.graph.number_of_nodes())
    g2.add_edges_from(tuple(e) for e in inst.attributes["graph_2_edges"])
    return g2


def decode(inst: Instance, bits: Bits) -> tuple[int, ...] | None:
    """mapping[v] = the G2 node of G1's node v, or None when the bits are not a permutation matrix."""
    return permutation(bits, inst.graph.number_of_nodes())


def feasible(inst: Instance, bits: Bits) -> bool:
    m = decode(inst, bits)
    if m is None:
        return False
    g1, g2 = inst.graph, _graph2(inst)
    return all(g1.has_edge(u, v) == g2.has_edge(m[u], m[v]) for u, v in itertools.combinations(range(len(m)), 2))


def optimal(inst: Instance) -> set:
    """Every isomorphism networkx's VF2 finds."""
    matcher = nx.algorithms.isomorphism.GraphMatcher(inst.graph, _graph2(inst))
    n = inst.graph.number_of_nodes()
    return {tuple(m[v] for v in range(n)) for m in matcher.isomorphisms_iter()}


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    """G2 is a random relabelling of a random G1, so they are isomorphic."""
    n = int(round(np.sqrt(num_qubits)))
    if n * n != num_qubits or n < 2:
        return None
    g1 = nx.gnp_random_graph(n, float(rng.uniform(0.3, 0.7)), seed=int(rng.integers(2**31)))
    perm = rng.permutation(n).tolist()
    g2 = nx.relabel_nodes(g1, {v: perm[v] for v in range(n)})
    out = nx.empty_graph(n)
    out.add_edges_from(g2.edges)
    return build(g1, out)


def sizes(cap: int) -> list[int]:
    return [n * n for n in range(2, 5) if n * n <= cap]


PROBLEM = ProblemClass(
    NAME, "an isomorphism between two graphs", build, decode, feasible, optimal, random_instance, sizes
)

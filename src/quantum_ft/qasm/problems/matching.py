"""Maximum matching (Lucas section 4.5 style): x_e = 1 takes edge e. H = -sum_e x_e + A sum_v sum_{e<f at v} x_e x_f
with A = 2 > 1: dropping one of two edges that share a node always lowers the energy."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass, chosen_edges, sorted_edges, unit_weights

NAME = "matching"
A = 2.0


def build(graph: nx.Graph) -> Instance:
    edges = sorted_edges(graph)
    b = PolyBuilder()
    for i in range(len(edges)):
        b.add(-1.0, i)
    for v in graph.nodes:
        incident = [i for i, e in enumerate(edges) if v in e]
        for i, j in itertools.combinations(incident, 2):
            b.add(A, i, j)
    labels = [f"edge {u}-{v} in the matching" for u, v in edges]
    return Instance(NAME, graph, b.poly(), len(edges), labels, {"edges": [list(e) for e in edges]})


decode = chosen_edges


def feasible(inst: Instance, bits: Bits) -> bool:
    return nx.is_matching(inst.graph, set(decode(inst, bits)))


def optimal(inst: Instance) -> set:
    """Every matching of networkx's maximum-cardinality size (exhaustive over edge subsets of that size)."""
    size = len(nx.max_weight_matching(inst.graph, maxcardinality=True, weight=None))
    edges = [tuple(e) for e in inst.attributes["edges"]]
    return {frozenset(c) for c in itertools.combinations(edges, size) if nx.is_matching(inst.graph, set(c))}


def random_graph_with_edges(rng: np.random.Generator, m: int, cover_all: bool = False) -> nx.Graph | None:
    """A random simple graph with exactly m edges on 2..m+1 nodes; with cover_all, no isolated node."""
    for _ in range(50):
        lo = max(2, int(np.ceil((1 + np.sqrt(1 + 8 * m)) / 2)))  # C(n, 2) >= m
        hi = 2 * m if cover_all else m + 1
        if lo > hi:
            return None
        n = int(rng.integers(lo, hi + 1))
        pairs = list(itertools.combinations(range(n), 2))
        pick = rng.choice(len(pairs), size=m, replace=False)
        g = nx.empty_graph(n)
        g.add_edges_from(pairs[int(i)] for i in pick)
        if not cover_all or min(d for _, d in g.degree()) > 0:
            return unit_weights(g)
    return None


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    g = random_graph_with_edges(rng, num_qubits)
    return build(g) if g is not None else None


def sizes(cap: int) -> list[int]:
    return list(range(2, cap + 1))


PROBLEM = ProblemClass(NAME, "maximum-cardinality matching", build, decode, feasible, optimal, random_instance, sizes)

"""Minimum edge cover: x_e = 1 takes edge e; every node must touch a taken edge. H = sum_e x_e
+ A sum_v prod_{e at v} (1 - x_e), A = 2: the product is an exact k-body penalty (1 exactly when node v is
uncovered; no slack qubits), and covering a node by one more edge always lowers the energy."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass, chosen_edges, sorted_edges
from .matching import random_graph_with_edges

NAME = "edge_cover"
A = 2.0


def build(graph: nx.Graph) -> Instance:
    edges = sorted_edges(graph)
    b = PolyBuilder()
    for i in range(len(edges)):
        b.add(1.0, i)
    for v in graph.nodes:
        b.add_one_minus_product(A, [i for i, e in enumerate(edges) if v in e])
    labels = [f"edge {u}-{v} in the cover" for u, v in edges]
    return Instance(NAME, graph, b.poly(), len(edges), labels, {"edges": [list(e) for e in edges]})


decode = chosen_edges


def feasible(inst: Instance, bits: Bits) -> bool:
    return nx.is_edge_cover(inst.graph, set(decode(inst, bits)))


def optimal(inst: Instance) -> set:
    """Every edge cover of networkx's minimum size (exhaustive over edge subsets of that size)."""
    size = len(nx.min_edge_cover(inst.graph))
    edges = [tuple(e) for e in inst.attributes["edges"]]
    return {frozenset(c) for c in itertools.combinations(edges, size) if nx.is_edge_cover(inst.graph, set(c))}


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    g = random_graph_with_edges(rng, num_qubits, cover_all=True)
    return build(g) if g is not None else None


def sizes(cap: int) -> list[int]:
    return list(range(2, cap + 1))


PROBLEM = ProblemClass(
    NAME, "minimum edge cover (exact k-body penalty)", build, decode, feasible, optimal, random_instance, sizes
)

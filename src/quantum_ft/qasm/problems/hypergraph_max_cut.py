"""Hypergraph max-cut: a hyperedge is cut unless all its nodes are on one side. Its uncut indicator
prod x_i + prod (1 - x_i) is exact and, as Ising, holds only the even-order Z terms of the hyperedge (k-body Z
terms, not Agent-Q's pairwise heuristic). Minimise sum_e w_e (uncut_e - 1) = -(weight cut)."""

from __future__ import annotations

import networkx as nx
import numpy as np

from .base import Instance, PolyBuilder, ProblemClass, all_bits, bipartition, min_solutions, unconstrained

NAME = "hypergraph_max_cut"


def build(num_nodes: int, hyperedges: list[list[int]], weights: list[float] | None = None) -> Instance:
    weights = weights or [1.0] * len(hyperedges)
    b = PolyBuilder()
    for e, w in zip(hyperedges, weights, strict=True):
        b.add_product_all(w, e)
        b.add_one_minus_product(w, e)
        b.add(-w)
    g = nx.empty_graph(num_nodes)
    g.graph["hyperedges"] = [sorted(e) for e in hyperedges]
    g.graph["hyperedge_weights"] = list(weights)
    incidence = nx.Graph()  # nodes and hyperedges as a bipartite graph: what the signature hashes
    incidence.add_nodes_from((v, {"kind": "node"}) for v in range(num_nodes))
    for k, e in enumerate(hyperedges):
        incidence.add_node(f"e{k}", kind=f"edge{weights[k]}")
        incidence.add_edges_from((f"e{k}", v) for v in e)
    attrs = {"hyperedges": g.graph["hyperedges"], "weights": list(weights)}
    labels = [f"node {v} side" for v in range(num_nodes)]
    return Instance(NAME, g, b.poly(), num_nodes, labels, attrs, signature_graph=incidence)


decode = bipartition
feasible = unconstrained


def optimal(inst: Instance) -> set:
    """Exhaustive over partitions, counting cut hyperedges directly."""
    edges, weights = inst.attributes["hyperedges"], inst.attributes["weights"]
    cands = []
    for bits in all_bits(inst.num_qubits):
        cut = sum(w for e, w in zip(edges, weights, strict=True) if len({bits[v] for v in e}) == 2)
        cands.append((-cut, bipartition(inst, bits)))
    return min_solutions(cands)


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    """About n hyperedges of 2 to 4 nodes, at least one of 3 or more, every node in one."""
    n = num_qubits
    if n < 3:
        return None
    edges: list[list[int]] = []
    seen = set()
    for _ in range(8 * n):
        if len(edges) >= max(2, n - 1) and all(any(v in e for e in edges) for v in range(n)):
            break
        size = int(rng.integers(2, min(4, n) + 1)) if edges else 3
        e = tuple(sorted(rng.choice(n, size=size, replace=False).tolist()))
        if e not in seen:
            seen.add(e)
            edges.append(list(e))
    return build(n, edges)


def sizes(cap: int) -> list[int]:
    return list(range(3, cap + 1))


PROBLEM = ProblemClass(
    NAME, "maximum cut of a hypergraph (exact k-body terms)", build, decode, feasible, optimal, random_instance, sizes
)

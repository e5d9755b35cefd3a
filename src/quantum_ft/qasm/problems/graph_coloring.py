"""Graph k-colouring (Lucas section 6.1): x_{v,c} = 1 paints node v in colour c (qubit v*k + c).
H = A sum_v (1 - sum_c x_{v,c})^2 + A sum_edges sum_c x_{u,c} x_{v,c}: energy 0 exactly on proper colourings."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass

NAME = "graph_coloring"
A = 1.0


def build(graph: nx.Graph, colours: int) -> Instance:
    n, k = graph.number_of_nodes(), colours
    b = PolyBuilder()
    for v in range(n):
        b.add_square(A, {v * k + c: -1.0 for c in range(k)}, 1.0)
    for u, v in graph.edges:
        for c in range(k):
            b.add(A, u * k + c, v * k + c)
    labels = [f"node {v} colour {c}" for v in range(n) for c in range(k)]
    return Instance(NAME, graph, b.poly(), n * k, labels, {"colours": k})


def decode(inst: Instance, bits: Bits) -> tuple[int, ...] | None:
    """The colour of each node, or None when a node has no colour or several."""
    k = inst.attributes["colours"]
    out = []
    for v in range(inst.graph.number_of_nodes()):
        row = bits[v * k : (v + 1) * k]
        if sum(row) != 1:
            return None
        out.append(row.index(1))
    return tuple(out)


def feasible(inst: Instance, bits: Bits) -> bool:
    colours = decode(inst, bits)
    return colours is not None and all(colours[u] != colours[v] for u, v in inst.graph.edges)


def optimal(inst: Instance) -> set:
    """Exhaustive over all colour assignments: every proper one."""
    n, k = inst.graph.number_of_nodes(), inst.attributes["colours"]
    return {c for c in itertools.product(range(k), repeat=n) if all(c[u] != c[v] for u, v in inst.graph.edges)}


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    """A planted colouring with edges only between colour classes, so the instance is always colourable."""
    pairs = [(n, num_qubits // n) for n in range(2, num_qubits + 1) if num_qubits % n == 0 and num_qubits // n >= 2]
    if not pairs:
        return None
    n, k = pairs[int(rng.integers(len(pairs)))]
    colour = rng.integers(0, k, size=n)
    g = nx.empty_graph(n)
    for u, v in itertools.combinations(range(n), 2):
        if colour[u] != colour[v] and rng.random() < 0.6:
            g.add_edge(u, v)
    if g.number_of_edges() == 0 and n >= 2:
        g.add_edge(0, 1)  # still colourable: k >= 2
    return build(g, k)


def sizes(cap: int) -> list[int]:
    return [q for q in range(4, cap + 1) if any(q % n == 0 and q // n >= 2 for n in range(2, q + 1))]


PROBLEM = ProblemClass(
    NAME, "proper colouring with k colours", build, decode, feasible, optimal, random_instance, sizes
)

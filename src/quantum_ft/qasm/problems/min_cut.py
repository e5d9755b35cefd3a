"""Minimum s-t cut: x_v = 1 puts node v on the sink's side. H = sum_edges w (x_u - x_v)^2 + A x_s + A (1 - x_t)
with A = total weight + 1, more than any cut, so s and t always sit on their own sides."""

from __future__ import annotations

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass, all_bits, connected_gnp, int_weights, min_solutions

NAME = "min_cut"


def build(graph: nx.Graph, source: int, sink: int) -> Instance:
    a = float(sum(w for _, _, w in graph.edges(data="weight", default=1))) + 1.0
    b = PolyBuilder()
    for u, v, w in graph.edges(data="weight", default=1):
        b.add(w, u)
        b.add(w, v)
        b.add(-2 * w, u, v)
    b.add(a, source)
    b.add(a)
    b.add(-a, sink)
    n = graph.number_of_nodes()
    attrs = {"source": source, "sink": sink}
    return Instance(NAME, graph, b.poly(), n, [f"node {v} on the sink side" for v in range(n)], attrs)


def decode(inst: Instance, bits: Bits) -> frozenset:
    """The source side."""
    return frozenset(i for i, x in enumerate(bits) if not x)


def feasible(inst: Instance, bits: Bits) -> bool:
    return bits[inst.attributes["source"]] == 0 and bits[inst.attributes["sink"]] == 1


def optimal(inst: Instance) -> set:
    """Exhaustive over s-t partitions; the value is checked against networkx's max-flow min-cut."""
    g, s, t = inst.graph, inst.attributes["source"], inst.attributes["sink"]
    cands = []
    for bits in all_bits(g.number_of_nodes()):
        if bits[s] == 0 and bits[t] == 1:
            side = {i for i, x in enumerate(bits) if not x}
            cands.append((nx.cut_size(g, side, weight="weight"), frozenset(side)))
    best = min_solutions(cands)
    value = nx.minimum_cut_value(g, s, t, capacity="weight")
    assert abs(min(v for v, _ in cands) - value) < 1e-9, "exhaustive search and networkx disagree"
    return best


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    n = num_qubits
    if n < 2:
        return None
    g = int_weights(rng, connected_gnp(rng, n, float(rng.uniform(0.3, 0.7))))
    s, t = (int(x) for x in rng.choice(n, size=2, replace=False))
    return build(g, s, t)


def sizes(cap: int) -> list[int]:
    return list(range(2, cap + 1))


PROBLEM = ProblemClass(NAME, "minimum weight s-t cut", build, decode, feasible, optimal, random_instance, sizes)

"""Maximum s-t flow with unit capacities: x_e = 1 sends one unit along directed edge e.
H = -(outflow(s) - inflow(s)) + A sum_{v != s, t} (inflow(v) - outflow(v))^2, A = 2: every unit of imbalance costs
more than the unit of value it could buy. Integral capacities >1 would need binary-encoded flows (more qubits)."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np

from .base import Bits, Instance, PolyBuilder, ProblemClass, all_bits, min_solutions

NAME = "max_flow"
A = 2.0


def build(graph: nx.DiGraph, source: int, sink: int) -> Instance:
    edges = sorted(graph.edges)
    b = PolyBuilder()
    for i, (u, v) in enumerate(edges):
        if u == source:
            b.add(-1.0, i)
        if v == source:
            b.add(1.0, i)
    for node in graph.nodes:
        if node in (source, sink):
            continue
        balance = {i: (1.0 if v == node else -1.0) for i, (u, v) in enumerate(edges) if node in (u, v)}
        if balance:
            b.add_square(A, balance, 0.0)
    labels = [f"one unit on {u}->{v}" for u, v in edges]
    attrs = {"source": source, "sink": sink, "edges": [list(e) for e in edges]}
    return Instance(NAME, graph, b.poly(), len(edges), labels, attrs)


def _value(inst: Instance, bits: Bits) -> int:
    s = inst.attributes["source"]
    return sum(x * ((u == s) - (v == s)) for (u, v), x in zip(inst.attributes["edges"], bits, strict=True))


def decode(inst: Instance, bits: Bits) -> frozenset:
    return frozenset(tuple(e) for e, x in zip(inst.attributes["edges"], bits, strict=True) if x)


def feasible(inst: Instance, bits: Bits) -> bool:
    s, t = inst.attributes["source"], inst.attributes["sink"]
    net = dict.fromkeys(inst.graph.nodes, 0)
    for (u, v), x in zip(inst.attributes["edges"], bits, strict=True):
        net[u] -= x
        net[v] += x
    return all(net[v] == 0 for v in inst.graph.nodes if v not in (s, t))


def optimal(inst: Instance) -> set:
    """Exhaustive over unit flows that conserve at every inner node; the value is checked against networkx."""
    s, t = inst.attributes["source"], inst.attributes["sink"]
    cands = [(-_value(inst, bits), decode(inst, bits)) for bits in all_bits(inst.num_qubits) if feasible(inst, bits)]
    value = nx.maximum_flow_value(inst.graph, s, t, capacity="capacity")
    assert -min(v for v, _ in cands) == value, "exhaustive search and networkx disagree"
    return min_solutions(cands)


def random_instance(rng: np.random.Generator, num_qubits: int) -> Instance | None:
    """A random digraph with exactly num_qubits edges and at least one s -> t path (s = 0, t = n - 1)."""
    m = num_qubits
    for _ in range(50):
        n = int(rng.integers(3, max(3, min(m, 7)) + 1))
        pairs = [(u, v) for u, v in itertools.permutations(range(n), 2) if u != n - 1 and v != 0]
        if len(pairs) < m:
            continue
        g = nx.DiGraph()
        g.add_nodes_from(range(n))
        g.add_edges_from(pairs[int(i)] for i in rng.choice(len(pairs), size=m, replace=False))
        if nx.has_path(g, 0, n - 1):
            nx.set_edge_attributes(g, 1, "capacity")
            return build(g, 0, n - 1)
    return None


def sizes(cap: int) -> list[int]:
    return list(range(2, cap + 1))


PROBLEM = ProblemClass(
    NAME, "maximum s-t flow, unit capacities", build, decode, feasible, optimal, random_instance, sizes
)

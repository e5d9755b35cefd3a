"""The problem classes, one module each, and their registry. Agent-Q's Steiner tree is not here: its Lucas
formulation needs depth / flow auxiliary qubits (far beyond 16 qubits for all but trivial graphs)."""

from __future__ import annotations

from . import (
    community_detection,
    connected_components,
    edge_cover,
    graph_coloring,
    graph_isomorphism,
    hamiltonian_path,
    hypergraph_max_cut,
    k_clique,
    matching,
    max_cut,
    max_flow,
    min_cut,
    vertex_cover,
)
from .base import Bits, Instance, Poly, ProblemClass, all_bits, poly_value

_MODULES = [
    max_cut,
    connected_components,
    community_detection,
    k_clique,
    hypergraph_max_cut,
    graph_isomorphism,
    graph_coloring,
    hamiltonian_path,
    matching,
    max_flow,
    min_cut,
    vertex_cover,
    edge_cover,
]
REGISTRY: dict[str, ProblemClass] = {m.PROBLEM.name: m.PROBLEM for m in _MODULES}
NOT_IMPLEMENTED = {
    "steiner_tree": "connectivity needs Lucas' depth/flow auxiliary qubits: beyond 16 qubits for all but trivial graphs"
}


def get(name: str) -> ProblemClass:
    """The class named `name`; an unknown name lists the known ones."""
    if name not in REGISTRY:
        hint = f" ({NOT_IMPLEMENTED[name]})" if name in NOT_IMPLEMENTED else ""
        raise KeyError(f"unknown problem class {name!r}{hint}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


__all__ = ["REGISTRY", "NOT_IMPLEMENTED", "Bits", "Instance", "Poly", "ProblemClass", "all_bits", "get", "poly_value"]

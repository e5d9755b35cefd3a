"""Every problem class: the QUBO's brute-force minimisers decode to exactly the optimal solutions of an independent
method (networkx or exhaustive search over solutions), and no infeasible assignment is a minimiser."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from quantum_ft.qasm import problems
from quantum_ft.qasm.hamiltonian import bits_of, diagonal, spectrum, to_ising
from quantum_ft.qasm.problems import vertex_cover

CASES = [(name, q) for name, pc in problems.REGISTRY.items() for q in pc.sizes(9) if 3 <= q <= 9]


def minimisers(inst):
    n = inst.num_qubits
    terms, const = to_ising(inst.poly)
    spec = spectrum(diagonal(terms, const, n))
    return [bits_of(int(k), n) for k in spec.ground_indices]


@pytest.mark.parametrize("name,num_qubits", CASES)
def test_minimisers_are_exactly_the_optimal_solutions(name: str, num_qubits: int) -> None:
    pc = problems.get(name)
    rng = np.random.default_rng(1000 + num_qubits)
    checked = 0
    for _ in range(3):
        inst = pc.random_instance(rng, num_qubits)
        if inst is None:
            continue
        assert inst.num_qubits == num_qubits
        mins = minimisers(inst)
        assert all(pc.feasible(inst, b) for b in mins), "an infeasible assignment is a minimiser"
        assert {pc.decode(inst, b) for b in mins} == pc.optimal(inst)
        checked += 1
    assert checked, f"{name} posed no instance of {num_qubits} qubits"


@pytest.mark.parametrize("name", list(problems.REGISTRY))
def test_poly_and_ising_agree_on_every_bitstring(name: str) -> None:
    pc = problems.get(name)
    rng = np.random.default_rng(7)
    size = [q for q in pc.sizes(9) if q >= 4][0]
    inst = pc.random_instance(rng, size)
    terms, const = to_ising(inst.poly)
    energies = diagonal(terms, const, inst.num_qubits)
    direct = [problems.poly_value(inst.poly, bits_of(k, inst.num_qubits)) for k in range(2**inst.num_qubits)]
    np.testing.assert_allclose(energies, direct, atol=1e-9)
    assert len(inst.qubit_labels) == inst.num_qubits


def test_the_check_catches_a_too_small_penalty(monkeypatch) -> None:
    """With A = 0.5 < B, leaving an edge uncovered is cheaper than covering it: the same comparison must fail."""
    monkeypatch.setattr(vertex_cover, "A", 0.5)
    g = nx.path_graph(4)
    inst = vertex_cover.build(g)
    mins = minimisers(inst)
    assert not all(vertex_cover.feasible(inst, b) for b in mins)
    assert {vertex_cover.decode(inst, b) for b in mins} != vertex_cover.optimal(inst)


def test_hypergraph_terms_are_exact_k_body() -> None:
    """A 4-node hyperedge gives a 4-body Z term (even subsets only); nothing odd survives."""
    inst = problems.get("hypergraph_max_cut").build(4, [[0, 1, 2, 3]])
    terms, _ = to_ising(inst.poly)
    orders = {len(q) for _, q in terms}
    assert orders == {2, 4}
    assert ((1.0 / 8), (0, 1, 2, 3)) in [(round(c, 12), q) for c, q in terms]


def test_unknown_class_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: max_cut"):
        problems.get("travelling_salesman")
    with pytest.raises(KeyError, match="depth/flow"):
        problems.get("steiner_tree")


def test_node_i_is_qubit_i_for_node_classes() -> None:
    """Node labels 0..n-1 map to qubits by value, not by string order (Agent-Q put node 10 before node 2)."""
    g = nx.star_graph(11)  # centre 0, leaves 1..11: the unique minimum cover is {0}
    inst = vertex_cover.build(g)
    (only,) = minimisers(inst)
    assert only == tuple([1] + [0] * 11)

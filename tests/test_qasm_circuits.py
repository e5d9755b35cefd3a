"""The engine, the writer and the optimiser against qiskit: same states, the stated bit order, rounded text."""

from __future__ import annotations

import re

import numpy as np
import pytest
import qiskit.qasm3
import torch
from qiskit.quantum_info import Statevector

from quantum_ft.qasm import problems
from quantum_ft.qasm.ansatz import Ansatz
from quantum_ft.qasm.hamiltonian import (
    bitstring,
    diagonal,
    format_hamiltonian,
    index_of,
    parse_hamiltonian,
    spectrum,
    to_ising,
)
from quantum_ft.qasm.optimize import Problem, interp, qaoa_schedule, vqe
from quantum_ft.qasm.simulator import Engine, QaoaAdjoint
from quantum_ft.qasm.writer import format_angle, write, write_symbolic


def qiskit_probs(text: str) -> np.ndarray:
    circuit = qiskit.qasm3.loads(text)
    circuit.remove_final_measurements()
    return Statevector(circuit).probabilities()


def instance(name: str, q: int, seed: int = 0):
    inst = problems.get(name).random_instance(np.random.default_rng(seed), q)
    terms, const = to_ising(inst.poly)
    return inst, terms, const, diagonal(terms, const, inst.num_qubits)


def test_bit_order_against_qiskit() -> None:
    """x on qubit 0 of 3: our bitstring '100' (qubit 0 first) is qiskit's key '001', basis index 1 in both."""
    text = write([], 3).replace("c = measure q;", "x q[0];\nc = measure q;")
    probs = qiskit_probs(text)
    assert probs[1] == pytest.approx(1.0)
    assert bitstring(1, 3) == "100" and index_of("100") == 1
    circuit = qiskit.qasm3.loads(text)
    circuit.remove_final_measurements()
    assert Statevector(circuit).probabilities_dict() == {"001": pytest.approx(1.0)}


@pytest.mark.parametrize("name", ["max_cut", "hypergraph_max_cut", "edge_cover", "graph_coloring"])
@pytest.mark.parametrize("kind,layers", [("qaoa", 1), ("qaoa", 3), ("vqe", 1), ("vqe", 2)])
def test_engine_and_written_text_agree_with_qiskit(name: str, kind: str, layers: int) -> None:
    inst, terms, const, energies = instance(name, 6)
    n = inst.num_qubits
    ansatz = Ansatz(kind, layers)
    x = np.random.default_rng(3).uniform(-1.5, 1.5, ansatz.num_params(n))
    ours = Engine(energies, n).probabilities(kind, torch.tensor(x)[None], layers)[0].numpy()
    gates = ansatz.gates(list(x), terms, n)
    symbolic = qiskit.qasm3.loads(write_symbolic(gates, n, ansatz.param_names(n)))
    bound = symbolic.assign_parameters({p: x[ansatz.param_names(n).index(p.name)] for p in symbolic.parameters})
    bound.remove_final_measurements()
    np.testing.assert_allclose(Statevector(bound).probabilities(), ours, atol=1e-12)  # exact angles: exact
    rounded = qiskit_probs(write(gates, n))
    assert np.abs(rounded - ours).max() < 1e-2  # 4-decimal angles: close, not equal
    if kind == "qaoa":
        adj = np.abs(QaoaAdjoint(energies, n).state(x[None])[0]) ** 2
        np.testing.assert_allclose(adj, ours, atol=1e-12)


def test_adjoint_gradient_matches_finite_differences() -> None:
    inst, terms, const, energies = instance("k_clique", 5)
    spec = spectrum(energies)
    for objective in ("energy", "ground_mass"):
        problem = Problem(energies, spec, 5, objective)
        x = np.random.default_rng(0).uniform(0.1, 1.0, (2, 6))
        _, grad = problem.value_and_grad(Ansatz("qaoa", 3), x)
        eps = 1e-6
        for j in range(6):
            up, down = x.copy(), x.copy()
            up[:, j] += eps
            down[:, j] -= eps
            fd = problem.value_and_grad(Ansatz("qaoa", 3), up)[0] - problem.value_and_grad(Ansatz("qaoa", 3), down)[0]
            np.testing.assert_allclose(grad[:, j], fd / (2 * eps), rtol=1e-5, atol=1e-7)


def test_writer_format() -> None:
    inst, terms, const, energies = instance("hypergraph_max_cut", 5)
    n = inst.num_qubits
    text = write(Ansatz("qaoa", 2).gates([0.123456, -7.0, 0.5, 3.3], terms, n), n)
    lines = text.strip().splitlines()
    assert lines[0] == "OPENQASM 3.0;" and lines[1] == 'include "stdgates.inc";'
    assert lines[-1] == "c = measure q;" and text.count("measure") == 1
    assert "rzz" not in text
    names = {re.match(r"[a-z]+", line).group(0) for line in lines[4:-1]}
    assert names <= {"h", "cx", "rz", "rx"}
    for angle in re.findall(r"\(([^)]*)\)", text):
        assert re.fullmatch(r"-?\d\.\d{4}", angle) and -np.pi <= float(angle) <= np.pi + 1e-4
    assert format_angle(2 * np.pi + 0.1) == "0.1000" and format_angle(-1e-9) == "0.0000"


def test_hamiltonian_string_round_trips() -> None:
    inst, terms, const, energies = instance("community_detection", 6)
    np.testing.assert_allclose(parse_hamiltonian(format_hamiltonian(terms, const), 6), energies, atol=1e-5)


def test_spectrum_degeneracy_uses_a_tolerance() -> None:
    energies = np.array([1.0, 0.1 + 0.2, 0.3, 2.0, 0.3 + 1e-7])
    spec = spectrum(energies)
    assert 0.1 + 0.2 != 0.3 and spec.degeneracy == 2  # float equality would have said 1
    assert spec.first_excited_energy == pytest.approx(0.3 + 1e-7)


def test_interp_keeps_the_endpoints_shape() -> None:
    grown = interp(np.array([0.2, 0.4, 0.9, 0.5]), 2)
    assert grown.shape == (6,)
    np.testing.assert_allclose(grown[:3], [0.2, 0.3, 0.4])


def test_optimiser_reaches_the_ground_state() -> None:
    inst, terms, const, energies = instance("max_cut", 5, seed=2)
    spec = spectrum(energies)
    problem = Problem(energies, spec, 5)
    rng = np.random.default_rng(0)
    schedule = qaoa_schedule(problem, [1, 2, 3], rng)
    masses = []
    for res in schedule.values():
        state = Engine(energies, 5).qaoa_state(torch.tensor(res.params)[None])[0].numpy()
        masses.append(float((np.abs(state[spec.ground_indices]) ** 2).sum()))
    assert masses[0] > 2 * spec.degeneracy / 32  # better than twice uniform
    assert masses == sorted(masses)  # transfer from p-1 never loses
    vqe_res = vqe(problem, 1, rng)
    assert np.exp(-vqe_res.objective) > 0.99


def test_unknown_ansatz_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: qaoa, vqe"):
        Ansatz("adapt_vqe", 1)

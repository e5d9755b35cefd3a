"""One instance -> its dataset records: Ising terms, exact spectrum, optimised circuits written as OpenQASM 3.0 and
re-verified from their text; every stored probability, energy and mass comes from that written, rounded text."""

from __future__ import annotations

import json
import warnings
from typing import Any

import networkx as nx
import numpy as np

from . import problems
from .ansatz import Ansatz
from .hamiltonian import Spectrum, bits_of, bitstring, diagonal, format_hamiltonian, spectrum, to_ising
from .optimize import Problem, Result, qaoa_schedule, vqe
from .problems.base import Instance
from .verify import verify
from .writer import write, write_symbolic


class Skip(Exception):
    """An instance that yields no records, with the reason the dataset card counts."""


def signature(inst: Instance) -> str:
    """Weisfeiler-Lehman hash of the graph (weights and node kinds included): the split key."""
    g = inst.signature_graph if inst.signature_graph is not None else inst.graph
    h = g.__class__()
    h.add_nodes_from((v, {"label": str(d.get("kind", ""))}) for v, d in g.nodes(data=True))
    for u, v, d in g.edges(data=True):
        h.add_edge(u, v, label=str(d.get("weight", d.get("capacity", ""))))
    with warnings.catch_warnings():  # networkx notes that directed hashes changed in 3.5; we pin >= 3.5
        warnings.simplefilter("ignore", UserWarning)
        return nx.weisfeiler_lehman_graph_hash(h, node_attr="label", edge_attr="label", iterations=3)


def graph_json(g: nx.Graph) -> str:
    return json.dumps(nx.node_link_data(g, edges="edges"), sort_keys=True)


def _exact(spec: Spectrum, n: int) -> dict[str, Any]:
    return {
        "smallest_eigenvalues": [spec.ground_energy] * spec.degeneracy,
        "number_of_smallest_eigenvalues": spec.degeneracy,
        "first_excited_energy": spec.first_excited_energy,
        "smallest_bitstrings": [bitstring(int(k), n) for k in spec.ground_indices],
    }


def circuit_record(
    inst: Instance,
    ansatz: Ansatz,
    result: Result,
    terms,
    const: float,
    energies: np.ndarray,
    spec: Spectrum,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Write the circuit, verify it from its text, and describe it by what the text does."""
    n = inst.num_qubits
    gates = ansatz.gates(result.params.tolist(), terms, n)
    text = write(gates, n)
    verdict = verify(text, max_qubits=settings["max_qubits"], max_gates=settings["max_gates"])
    if not verdict.valid:  # our own writer failed the verifier: a bug, never silently shipped
        raise Skip(f"verify_failed: {verdict.kind}")
    probs = verdict.probabilities
    order = np.argsort(-probs, kind="stable")[: settings["top_k"]]
    ground = set(int(k) for k in spec.ground_indices)
    expectation = float(probs @ energies)
    span = spec.max_energy - spec.ground_energy
    top = int(order[0])
    return {
        "signature": signature(inst),
        "problem_type": inst.problem,
        "optimization_type": ansatz.kind,
        "graph": graph_json(inst.graph),
        "cost_hamiltonian": format_hamiltonian(terms, const),
        "number_of_qubits": n,
        "number_of_layers": ansatz.layers,
        "ansatz_id": ansatz.ansatz_id,
        "exact_solution": _exact(spec, n),
        "solution": {
            "states": [int(k) for k in order],
            "expectation_value": expectation,
            "params": [float(x) for x in result.params],
            "bitstrings": [bitstring(int(k), n) for k in order],
            "probabilities": [float(probs[k]) for k in order],
            "total_optimization_steps": result.steps,
            "optimization_time": round(result.seconds, 4),
            "energy": float(energies[top]),
            "ground_state_probability": float(probs[sorted(ground)].sum()),
            "approximation_ratio": float((spec.max_energy - expectation) / span) if span > 0 else 1.0,
            "most_probable_is_ground": top in ground,
            "objective": settings["objective"],
        },
        "circuit_with_params": text,
        "circuit_with_symbols": write_symbolic(gates, n, ansatz.param_names(n)),
        "problem_specific_attributes": json.dumps({**inst.attributes, "qubit_labels": inst.qubit_labels}),
    }


def instance_records(inst: Instance, rng: np.random.Generator, settings: dict[str, Any]) -> tuple[list, list]:
    """(records, dropped reasons) for every ansatz entry in settings; raises Skip for a degenerate instance."""
    pc = problems.get(inst.problem)
    n = inst.num_qubits
    if n > settings["max_qubits"]:
        raise Skip("too_many_qubits")
    terms, const = to_ising(inst.poly)
    if not terms:
        raise Skip("degenerate: constant cost")
    energies = diagonal(terms, const, n)
    spec = spectrum(energies)
    if spec.first_excited_energy is None:
        raise Skip("degenerate: every state is a ground state")
    if not all(pc.feasible(inst, bits_of(int(k), n)) for k in spec.ground_indices):
        raise Skip("no feasible solution")
    problem = Problem(energies, spec, n, settings["objective"])
    results: list[tuple[Ansatz, Result]] = []
    if settings["qaoa_layers"]:
        schedule = qaoa_schedule(problem, settings["qaoa_layers"], rng, settings["restarts"], settings["maxiter"])
        results += [(Ansatz("qaoa", p), schedule[p]) for p in settings["qaoa_layers"]]
    for layers in settings["vqe_layers"]:
        results.append((Ansatz("vqe", layers), vqe(problem, layers, rng, settings["restarts"], settings["maxiter"])))
    records, dropped = [], []
    for ansatz, result in results:
        try:
            rec = circuit_record(inst, ansatz, result, terms, const, energies, spec, settings)
        except Skip as why:
            dropped.append(str(why))
            continue
        if settings["require_ground_top"] and not rec["solution"]["most_probable_is_ground"]:
            dropped.append("most probable bitstring is not a ground state")
            continue
        records.append(rec)
    return records, dropped

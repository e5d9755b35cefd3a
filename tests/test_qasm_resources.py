"""The dataset shipped in the package: every class, thousands of small circuits, splits disjoint by signature, and
a sample re-checked from its text against qiskit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import qiskit.qasm3
from qiskit.quantum_info import Statevector

from quantum_ft.qasm import problems
from quantum_ft.qasm.generate import load
from quantum_ft.qasm.hamiltonian import index_of
from quantum_ft.qasm.verify import verify
from quantum_ft.utils.config import resource

SHIPPED = Path(resource("qasm"))


def test_shipped_dataset_is_complete_and_split_by_signature() -> None:
    splits = {s: load(SHIPPED / f"{s}.jsonl.gz") for s in ("train", "val", "test")}
    records = [r for rs in splits.values() for r in rs]
    assert len(records) >= 2000
    assert {r["problem_type"] for r in records} == set(problems.REGISTRY)
    assert max(r["number_of_qubits"] for r in records) <= 9
    sigs = [{r["signature"] for r in rs} for rs in splits.values()]
    assert not (sigs[0] & sigs[1] or sigs[0] & sigs[2] or sigs[1] & sigs[2])
    assert all(len(rs) > 0 for rs in splits.values())
    card = json.loads((SHIPPED / "card.json").read_text())
    assert card["splits"] == {s: len(rs) for s, rs in splits.items()}
    assert sum(p.stat().st_size for p in SHIPPED.glob("*.jsonl.gz")) < 8 * 2**20  # a few MB


def test_a_sample_reproduces_from_its_text() -> None:
    records = load(SHIPPED / "val.jsonl.gz")
    rng = np.random.default_rng(0)
    for i in rng.choice(len(records), size=min(40, len(records)), replace=False):
        r = records[int(i)]
        assert verify(r["circuit_with_params"]).valid
        circuit = qiskit.qasm3.loads(r["circuit_with_params"])
        circuit.remove_final_measurements()
        probs = Statevector(circuit).probabilities()
        sol = r["solution"]
        np.testing.assert_allclose([probs[index_of(b)] for b in sol["bitstrings"]], sol["probabilities"], atol=1e-9)
        assert sol["most_probable_is_ground"] and sol["bitstrings"][0] in r["exact_solution"]["smallest_bitstrings"]

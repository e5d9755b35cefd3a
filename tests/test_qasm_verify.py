"""The verifier: a table of invalid programs of every kind it must refuse, exact simulation against qiskit, no
exception on any text, and the CLI's exit codes."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
import qiskit.qasm3
from qiskit.quantum_info import Statevector

from quantum_ft.qasm.verify import Verdict, main, verify

H = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
GOOD = H + "qubit[3] q;\nbit[3] c;\nh q[0];\ncx q[0], q[1];\nry(0.3) q[2];\ncp(0.7) q[1], q[2];\nc = measure q;\n"

INVALID = {
    "no_header": ('include "stdgates.inc";\nqubit[1] q;\nh q[0];\n', "no_header"),
    "old_version": ('OPENQASM 2.0;\ninclude "stdgates.inc";\nqubit[1] q;\nh q[0];\n', "no_header"),
    "no_include": ("OPENQASM 3.0;\nqubit[1] q;\nh q[0];\n", "no_include"),
    "undefined_gate": (H + "qubit[2] q;\nrzz(0.1) q[0], q[1];\n", "undefined_gate"),
    "wrong_arity": (H + "qubit[2] q;\ncx q[0];\n", "wrong_arity"),
    "wrong_arity_1q": (H + "qubit[2] q;\nh q[0], q[1];\n", "wrong_arity"),
    "out_of_range": (H + "qubit[2] q;\nh q[2];\n", "out_of_range"),
    "undeclared_register": (H + "qubit[2] q;\nh r[0];\n", "undeclared"),
    "if": (H + "qubit[2] q;\nbit[2] c;\nc[0] = measure q[0];\nif (c[0]) { x q[1]; }\n", "control_flow"),
    "for": (H + "qubit[2] q;\nfor int i in [0:1] { h q[i]; }\n", "control_flow"),
    "while": (H + "qubit[1] q;\nbit b;\nwhile (b) { h q[0]; b = measure q[0]; }\n", "control_flow"),
    "def": (H + "qubit[1] q;\ndef f(qubit a) { h a; }\nf(q[0]);\n", "control_flow"),
    "too_many_qubits": (H + "qubit[17] q;\nh q[0];\n", "too_many_qubits"),
    "too_many_qubits_split": (H + "qubit[9] a;\nqubit[9] b;\nh a[0];\n", "too_many_qubits"),
    "too_many_gates": (H + "qubit[1] q;\n" + "x q[0];\n" * 20_001, "too_many_gates"),
    "too_many_gates_broadcast": (H + "qubit[16] q;\n" + "h q;\n" * 1300, "too_many_gates"),
    "nested_gate_blowup": (
        H
        + "gate g0 a { x a; x a; }\n"
        + "".join(f"gate g{k} a {{ g{k - 1} a; g{k - 1} a; }}\n" for k in range(1, 20))
        + "qubit[1] q;\ng19 q[0];\n",
        "too_many_gates",
    ),
    "unbound_parameter": (H + "input float[64] theta;\nqubit[1] q;\nrz(theta) q[0];\n", "unbound_parameter"),
    "reset": (H + "qubit[1] q;\nreset q[0];\nh q[0];\n", "non_unitary"),
    "mid_circuit_measurement": (
        H + "qubit[1] q;\nbit[1] c;\nc[0] = measure q[0];\nh q[0];\n",
        "mid_circuit_measurement",
    ),
    "syntax": (H + "qubit[2] q;\nh q[0]\ncx q[0], q[1];\n", "parse_error"),
    "bad_angle": (H + "qubit[1] q;\nrz(x) q[0];\n", "parse_error"),
    "no_qubits": (H, "no_qubits"),
    "not_text": (None, "not_text"),
    "too_long": (H + "// " + "x" * 200_001 + "\nqubit[1] q;\n", "too_long"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_rejects(case: str) -> None:
    text, kind = INVALID[case]
    verdict = verify(text)
    assert not verdict.valid
    assert verdict.kind == kind, verdict.reason
    assert verdict.reason and "\n" not in verdict.reason


def test_accepts_and_simulates_exactly() -> None:
    verdict = verify(GOOD)
    assert verdict.valid and verdict.num_qubits == 3 and verdict.num_gates == 4
    circuit = qiskit.qasm3.loads(GOOD)
    circuit.remove_final_measurements()
    np.testing.assert_allclose(verdict.probabilities, Statevector(circuit).probabilities(), atol=1e-9)


def test_custom_gate_definitions_are_expanded() -> None:
    text = H + "gate rzz(t) a, b { cx a, b; rz(t) b; cx a, b; }\nqubit[2] q;\nh q[0];\nh q[1];\nrzz(0.4) q[0], q[1];\n"
    verdict = verify(text)
    assert verdict.valid and verdict.num_gates == 5
    circuit = qiskit.qasm3.loads(text)
    np.testing.assert_allclose(verdict.probabilities, Statevector(circuit).probabilities(), atol=1e-9)


def test_every_stdgate_against_qiskit() -> None:
    body = "qubit[3] q;\nh q[0];\nh q[1];\nry(0.4) q[2];\n" + "\n".join(
        [
            "x q[0];", "y q[1];", "z q[2];", "s q[0];", "sdg q[1];", "t q[2];", "tdg q[0];", "sx q[1];",
            "rx(0.3) q[0];", "p(0.2) q[1];", "cy q[0], q[1];", "cz q[1], q[2];", "crx(0.5) q[0], q[2];",
            "cry(0.6) q[2], q[0];", "crz(0.7) q[1], q[0];", "ch q[2], q[1];", "swap q[0], q[2];",
            "ccx q[0], q[1], q[2];", "cswap q[2], q[0], q[1];", "cu(0.1, 0.2, 0.3, 0.4) q[0], q[1];",
            "u1(0.3) q[2];", "u2(0.1, 0.2) q[0];", "u3(0.1, 0.2, 0.3) q[1];", "U(0.4, 0.5, 0.6) q[2];",
            "id q[0];", "cphase(0.3) q[0], q[1];", "phase(0.2) q[2];", "CX q[2], q[0];",
        ]
    )  # fmt: skip
    text = H + body + "\n"
    verdict = verify(text)
    assert verdict.valid, verdict.reason
    np.testing.assert_allclose(verdict.probabilities, Statevector(qiskit.qasm3.loads(text)).probabilities(), atol=1e-9)


def test_caps_are_configurable() -> None:
    assert not verify(GOOD, max_qubits=2).valid
    assert not verify(GOOD, max_gates=3).valid
    assert verify(GOOD, max_gates=4).valid


def test_never_raises_on_junk() -> None:
    rng = random.Random(0)
    alphabet = 'OPENQASM3.0;include"stdgates.inc"qubit[]q;hcxrz()0123456789,{}/*\n -+@ifgate'
    for _ in range(300):
        junk = H + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        assert isinstance(verify(junk), Verdict)
    for thing in [b"OPENQASM 3.0;", 3, ["x"], "\x00" * 10, "OPENQASM 3.0;\0include"]:
        assert isinstance(verify(thing), Verdict)


def test_top_is_in_qubit_0_first_order() -> None:
    verdict = verify(H + "qubit[3] q;\nx q[0];\n")
    assert verdict.top(1) == [("100", pytest.approx(1.0))]


def test_cli_exit_codes(tmp_path, capsys) -> None:
    good, bad = tmp_path / "good.qasm", tmp_path / "bad.qasm"
    good.write_text(GOOD)
    bad.write_text(INVALID["undefined_gate"][0])
    assert main([str(good)]) == 0
    assert "valid: 3 qubits, 4 gates" in capsys.readouterr().out
    assert main([str(bad)]) == 1
    assert "invalid (undefined_gate)" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.qasm")]) == 2


@pytest.mark.integration
def test_cli_as_a_module(tmp_path) -> None:
    bad = tmp_path / "bad.qasm"
    bad.write_text(INVALID["for"][0])
    run = subprocess.run([sys.executable, "-m", "quantum_ft.qasm.verify", str(bad)], capture_output=True, text=True)
    assert run.returncode == 1 and "control_flow" in run.stdout

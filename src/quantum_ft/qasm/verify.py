"""A strict OpenQASM 3.0 verifier: header and include required, qiskit's importer (qiskit-qasm3-import) for the
grammar and the gate definitions, caps on qubits and gates, no control flow, no non-unitary instructions except
final measurements; then an exact simulation to probabilities. It never raises on user text: every failure is a
Verdict with a one-line reason.

    python -m quantum_ft.qasm.verify FILE.qasm [--max-qubits 16] [--max-gates 20000] [--top 8]

exits 0 for a valid program, 1 for an invalid one, 2 when FILE cannot be read. Probabilities are indexed with
qubit i in bit i (qiskit's order); bitstrings are printed with qubit 0 first (see hamiltonian.py)."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_QUBITS = 16
MAX_GATES = 20_000
MAX_CHARS = 200_000

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_HEADER = re.compile(r"\A\s*OPENQASM\s+3(\.0)?\s*;")
_INCLUDE = re.compile(r'^\s*include\s+"stdgates\.inc"\s*;', re.M)
_QUBIT_DECL = re.compile(r"\bqubit\s*\[\s*(\d+)\s*\]|\bqreg\s+\w+\s*\[\s*(\d+)\s*\]|\bqubit\s+\w+\s*;")
_CONTROL = re.compile(r"\b(if|else|for|while|switch|case|box|def|return|break|continue|end|extern|cal|defcal)\b")
_ALLOWED_NON_GATES = {"barrier"}
_NOT_GATES = {
    "OPENQASM",
    "include",
    "qubit",
    "bit",
    "qreg",
    "creg",
    "input",
    "output",
    "barrier",
    "const",
    "float",
    "int",
    "uint",
    "angle",
    "bool",
    "complex",
    "duration",
    "stretch",
    "let",
    "gphase",
}
_GATE_DEF = re.compile(r"\bgate\s+([A-Za-z_]\w*)[^{;]*\{([^}]*)\}")
_CALL = re.compile(r"\s*(?:(?:ctrl|negctrl|inv|pow)\b[^@;]*@\s*)*([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Verdict:
    """valid, or not with `kind` (a stable tag) and `reason` (one line for people)."""

    valid: bool
    kind: str
    reason: str
    num_qubits: int = 0
    num_gates: int = 0
    probabilities: np.ndarray | None = field(default=None, repr=False, compare=False)

    def top(self, k: int = 8) -> list[tuple[str, float]]:
        """The k most probable bitstrings (qubit 0 first) with their probabilities."""
        if self.probabilities is None:
            return []
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        n = self.num_qubits
        return [("".join(str((int(i) >> q) & 1) for q in range(n)), float(self.probabilities[i])) for i in order]


def _invalid(kind: str, reason: str, **extra) -> Verdict:
    return Verdict(False, kind, " ".join(str(reason).split())[:300] or kind, **extra)


def _classify_import_error(exc: Exception) -> tuple[str, str]:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(msg) > 1 and msg[0] == msg[-1] and msg[0] in "\"'":
        msg = msg[1:-1]  # the importer's message comes quoted
    msg = re.sub(r"^(\d+),(\d+): ", r"line \1, column \2: ", msg)  # the importer says "4,0: ..."
    low = msg.lower()
    if "is not defined" in low and "gate" in low:
        return "undefined_gate", msg
    if "undefined symbol" in low:
        return "undeclared", msg
    if "amount of qubit" in low or "arguments does not match" in low or "wrong number" in low:
        return "wrong_arity", msg
    if isinstance(exc, IndexError) or "out of range" in low:
        return "out_of_range", f"an index is out of range ({msg})"
    return "parse_error", f"{type(exc).__name__}: {msg}"


def _declared_qubits(code: str) -> int:
    total = 0
    for m in _QUBIT_DECL.finditer(code):
        size = m.group(1) or m.group(2)
        total += int(size) if size else 1
    return total


def _estimated_gates(code: str, cap: int) -> int:
    """Gates after expanding custom definitions, counted on the text (capped at cap + 1). qiskit's importer
    expands definitions eagerly, so `gate g1 a { g0 a; g0 a; }` ... g20 would take it minutes: refuse first."""
    cost: dict[str, int] = {}

    def statements(body: str) -> int:
        total = 0
        for stmt in body.split(";"):
            if (m := _CALL.match(stmt)) and m.group(1) not in _NOT_GATES and "measure" not in stmt:
                total += cost.get(m.group(1), 1)
            if total > cap:
                return cap + 1
        return total

    for m in _GATE_DEF.finditer(code):
        cost[m.group(1)] = statements(m.group(2))
    return statements(_GATE_DEF.sub(" ", code))


def _apply(state: np.ndarray, matrix: np.ndarray, qubits: list[int], n: int) -> np.ndarray:
    """state: shape (2,)*n, axis j is qubit n-1-j. matrix: qiskit's convention (its first qubit least significant)."""
    k = len(qubits)
    tensor = matrix.reshape((2,) * (2 * k))  # axes: outputs q_{k-1}..q_0, inputs q_{k-1}..q_0
    axes = [n - 1 - q for q in reversed(qubits)]
    out = np.tensordot(tensor, state, axes=(list(range(k, 2 * k)), axes))
    return np.moveaxis(out, list(range(k)), axes)


class _Budget(Exception):
    pass


def _flatten(circuit, qubit_index: dict, out: list, max_gates: int, depth: int = 0) -> None:
    """Leaf gates (matrix, qubit indices) in order; custom gates are expanded through their definitions."""
    for inst in circuit.data:
        op = inst.operation
        qubits = [qubit_index[q] for q in inst.qubits]
        if op.name in _ALLOWED_NON_GATES:
            continue
        if op.name == "measure":
            out.append(("measure", qubits))
            continue
        # Only qiskit's standard gates give their matrix here: asking a user-defined gate for its matrix makes
        # qiskit expand its whole definition unbounded (gate g1 { g0; g0; } ... is 2^k gates: minutes).
        if getattr(op, "_standard_gate", None) is not None:
            matrix = np.asarray(op.to_matrix(), dtype=np.complex128)
        else:
            definition = getattr(op, "definition", None)
            if definition is None or depth > 32:
                raise ValueError(f"instruction '{op.name}' is not a unitary gate")
            inner = {q: qubits[i] for i, q in enumerate(definition.qubits)}
            _flatten(definition, inner, out, max_gates, depth + 1)
            continue
        out.append((matrix, qubits))
        if len(out) > max_gates:
            raise _Budget


def verify(
    text: object,
    max_qubits: int = MAX_QUBITS,
    max_gates: int = MAX_GATES,
    max_chars: int = MAX_CHARS,
    simulate: bool = True,
) -> Verdict:
    """Check one program strictly; when valid (and `simulate`), the exact probabilities of its final state."""
    try:
        return _verify(text, max_qubits, max_gates, max_chars, simulate)
    except Exception as exc:  # the promise: user text never raises
        return _invalid("internal_error", f"{type(exc).__name__}: {exc}")


def _verify(text: object, max_qubits: int, max_gates: int, max_chars: int, simulate: bool) -> Verdict:
    if not isinstance(text, str):
        return _invalid("not_text", f"expected program text, got {type(text).__name__}")
    if len(text) > max_chars:
        return _invalid("too_long", f"the program has {len(text)} characters; the cap is {max_chars}")
    code = _COMMENTS.sub(" ", text)
    if not _HEADER.match(code):
        return _invalid("no_header", "the program must start with `OPENQASM 3.0;`")
    if not _INCLUDE.search(code):
        return _invalid("no_include", 'the program must `include "stdgates.inc";`')
    declared = _declared_qubits(code)
    if declared > max_qubits:
        return _invalid("too_many_qubits", f"{declared} qubits declared; the cap is {max_qubits}")
    if m := _CONTROL.search(re.sub(r'"[^"\n]*"', " ", code)):
        return _invalid("control_flow", f"`{m.group(1)}` is not allowed: straight-line gate programs only")
    if _estimated_gates(code, max_gates) > max_gates:
        return _invalid("too_many_gates", f"more than {max_gates} gates (counted on the text, definitions expanded)")

    import qiskit.qasm3  # heavy (0.6 s): imported on first use only

    try:
        circuit = qiskit.qasm3.loads(text)
    except Exception as exc:
        kind, reason = _classify_import_error(exc)
        return _invalid(kind, reason)
    n = circuit.num_qubits
    if n > max_qubits:
        return _invalid("too_many_qubits", f"{n} qubits; the cap is {max_qubits}")
    if n == 0:
        return _invalid("no_qubits", "the program declares no qubits")
    if circuit.parameters:
        names = ", ".join(sorted(p.name for p in circuit.parameters))
        return _invalid("unbound_parameter", f"free parameters {names}: give every angle a number")
    for inst in circuit.data:
        if inst.operation.name in {
            "if_else",
            "while_loop",
            "for_loop",
            "switch_case",
            "box",
            "break_loop",
            "continue_loop",
        }:
            return _invalid("control_flow", f"`{inst.operation.name}` is not allowed: straight-line gates only")
    index = {q: i for i, q in enumerate(circuit.qubits)}
    leaves: list = []
    try:
        _flatten(circuit, index, leaves, max_gates)
    except _Budget:
        return _invalid("too_many_gates", f"more than {max_gates} gates after expanding definitions", num_qubits=n)
    except ValueError as exc:
        return _invalid("non_unitary", str(exc), num_qubits=n)
    measured: set[int] = set()
    gates = 0
    for matrix, qubits in leaves:
        if isinstance(matrix, str):
            measured.update(qubits)
            continue
        gates += 1
        if hit := measured.intersection(qubits):
            return _invalid(
                "mid_circuit_measurement", f"a gate acts on qubit {min(hit)} after it was measured", num_qubits=n
            )
    if not simulate:
        return Verdict(True, "ok", "valid", n, gates)
    state = np.zeros((2,) * n, dtype=np.complex128)
    state[(0,) * n] = 1.0
    for matrix, qubits in leaves:
        if not isinstance(matrix, str):
            state = _apply(state, matrix, qubits, n)
    probs = np.abs(state.reshape(-1)) ** 2
    norm = float(probs.sum())
    if not np.isfinite(norm) or abs(norm - 1.0) > 1e-6:
        return _invalid("simulation_error", f"the final state has norm {norm}", num_qubits=n, num_gates=gates)
    return Verdict(True, "ok", "valid", n, gates, probs / norm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantum_ft.qasm.verify", description=__doc__.split("\n")[0])
    parser.add_argument("file", help="an OpenQASM 3.0 program ('-' reads stdin)")
    parser.add_argument("--max-qubits", type=int, default=MAX_QUBITS)
    parser.add_argument("--max-gates", type=int, default=MAX_GATES)
    parser.add_argument("--top", type=int, default=8, help="how many of the most probable bitstrings to print")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    verdict = verify(text, max_qubits=args.max_qubits, max_gates=args.max_gates)
    if not verdict.valid:
        print(f"invalid ({verdict.kind}): {verdict.reason}")
        return 1
    print(f"valid: {verdict.num_qubits} qubits, {verdict.num_gates} gates")
    print("top probabilities (qubit 0 first):")
    for bits, p in verdict.top(args.top):
        print(f"  {bits}  {p:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

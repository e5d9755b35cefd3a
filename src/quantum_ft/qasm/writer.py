"""OpenQASM 3.0 text: `OPENQASM 3.0;`, `include "stdgates.inc";`, stdgates only (no rzz: stdgates does not define
it), angles wrapped to [-pi, pi) and rounded to 4 decimals, one measurement of the whole register at the end.

Wrapping is exact up to a global phase: rz/rx/ry(theta + 2 pi) = -rz/rx/ry(theta), also inside a cx ladder.
The rounded text is what every stored figure is recomputed from."""

from __future__ import annotations

import math
from collections.abc import Callable

from .ansatz import Gate

DECIMALS = 4
HEADER = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


def format_angle(theta: float) -> str:
    wrapped = (theta + math.pi) % (2 * math.pi) - math.pi
    text = f"{round(wrapped, DECIMALS):.{DECIMALS}f}"
    return "0.0000" if text == "-0.0000" else text


def _operands(qubits: tuple[int, ...]) -> str:
    return ", ".join(f"q[{i}]" for i in qubits)


def write(gates: list[Gate], n: int) -> str:
    """The circuit with numeric, rounded angles."""
    return _program(gates, n, [], lambda g: None if g.angle is None else format_angle(g.angle))


def write_symbolic(gates: list[Gate], n: int, names: list[str]) -> str:
    """The same circuit with `input float[64]` parameters (qiskit imports them as Parameters; bind them to get the
    numeric circuit before the 4-decimal rounding)."""
    return _program(gates, n, names, lambda g: g.symbol)


def _program(gates: list[Gate], n: int, inputs: list[str], argument: Callable[[Gate], str | None]) -> str:
    lines = [HEADER.rstrip("\n"), *(f"input float[64] {name};" for name in inputs), f"qubit[{n}] q;", f"bit[{n}] c;"]
    for g in gates:
        arg = argument(g)
        lines.append(f"{g.name}{'' if arg is None else f'({arg})'} {_operands(g.qubits)};")
    lines.append("c = measure q;")
    return "\n".join(lines) + "\n"

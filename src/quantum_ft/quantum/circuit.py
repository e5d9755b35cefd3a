"""The circuit of the `vqc` / `tq` adapters, described once as data: a list of gates derived from its spec. The
torch engine (quantum/vqc.py), every PennyLane backend and the OpenQASM 3 export all read this list, so the ansatz
is written in one place.

Circuit on n >= 2 qubits, L layers, weights theta[L, 4, n] = (a, b, c, d) per layer:

    RY(h_i) on every qubit                      angle encoding of the down-mapped input (raw values)
    per layer k:
      [RY(h_i) again if re-uploading and k > 0]
      RY(a_k,i)                                  every qubit
      CRZ(b_k,i) control i, target i+1 mod n     i = n-1 ... 0
      RY(c_k,i)                                  every qubit
      CRZ(d_k,i) control i, target i-1 mod n     i = n-1, 0, 1, ..., n-2
    z_i = <Z_i>

Wire 0 is the most significant bit of a basis-state index (PennyLane's convention).
"""

from __future__ import annotations

from dataclasses import dataclass

GATES = {"ry": 1, "crz": 2}  # name -> number of wires
MAX_QUBITS = 20  # a 2^20 state per row is the practical limit of exact simulation


@dataclass(frozen=True)
class VQCSpec:
    n_qubits: int
    n_layers: int
    reupload: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.n_qubits <= MAX_QUBITS:
            raise ValueError(
                f"n_qubits={self.n_qubits}: the circuit needs 2 to {MAX_QUBITS} qubits (its CRZ rings entangle "
                "neighbouring wires, and one wire has no neighbour; beyond 20 exact simulation is impractical)."
            )
        if self.n_layers < 1:
            raise ValueError(f"n_layers={self.n_layers} must be >= 1.")

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        return (self.n_layers, 4, self.n_qubits)

    def ring_forward(self) -> list[tuple[int, int]]:
        n = self.n_qubits
        return [(i, (i + 1) % n) for i in range(n - 1, -1, -1)]

    def ring_backward(self) -> list[tuple[int, int]]:
        n = self.n_qubits
        return [(i, (i - 1) % n) for i in [n - 1, *range(n - 1)]]


@dataclass(frozen=True)
class Gate:
    """One gate: `name` (a key of GATES) on `wires`, its angle read from the encoded input (`source="input"`,
    h[..., index[0]]) or from the weights (`source="weight"`, theta[index])."""

    name: str
    wires: tuple[int, ...]
    source: str
    index: tuple[int, ...]


def encoding(spec: VQCSpec) -> list[Gate]:
    return [Gate("ry", (i,), "input", (i,)) for i in range(spec.n_qubits)]


def layer(spec: VQCSpec, k: int) -> list[Gate]:
    """Layer k's trained gates (without the re-uploaded encoding)."""
    n = spec.n_qubits
    gates = [Gate("ry", (i,), "weight", (k, 0, i)) for i in range(n)]
    gates += [Gate("crz", (c, t), "weight", (k, 1, c)) for c, t in spec.ring_forward()]
    gates += [Gate("ry", (i,), "weight", (k, 2, i)) for i in range(n)]
    gates += [Gate("crz", (c, t), "weight", (k, 3, c)) for c, t in spec.ring_backward()]
    return gates


def circuit_gates(spec: VQCSpec, with_encoding: bool = True) -> list[Gate]:
    """The whole circuit in order. `with_encoding=False` leaves out the first encoding (the fused engine applies
    the rest to the basis states once and the encoded product states afterwards)."""
    gates = encoding(spec) if with_encoding else []
    for k in range(spec.n_layers):
        if k > 0 and spec.reupload:
            gates += encoding(spec)
        gates += layer(spec, k)
    return gates


def to_qasm3(spec: VQCSpec, theta: list | None = None, digits: int = 10) -> str:
    """The circuit in OpenQASM 3 (stdgates ry / crz): the encoded inputs are `input float[64] h0, h1, ...`, the
    weights numbers (`theta[L][4][n]`, nested lists or a tensor) or, without `theta`, `input float[64] w_k_j_i`."""
    n = spec.n_qubits
    lines = ["OPENQASM 3.0;", 'include "stdgates.inc";']
    lines += [f"input float[64] h{i};" for i in range(n)]
    gates = circuit_gates(spec)
    if theta is None:
        names = sorted({g.index for g in gates if g.source == "weight"})
        lines += [f"input float[64] w_{k}_{j}_{i};" for k, j, i in names]
    lines.append(f"qubit[{n}] q;")
    for g in gates:
        if g.source == "input":
            angle = f"h{g.index[0]}"
        elif theta is None:
            angle = "w_" + "_".join(map(str, g.index))
        else:
            k, j, i = g.index
            angle = f"{float(theta[k][j][i]):.{digits}f}"
        wires = ", ".join(f"q[{w}]" for w in g.wires)
        lines.append(f"{g.name}({angle}) {wires};")
    return "\n".join(lines) + "\n"

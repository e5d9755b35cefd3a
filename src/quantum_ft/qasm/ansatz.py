"""The circuits we write: QAOA (H, then p x [cost as rz / cx-rz-cx ladders, X mixer as rx]) and a
hardware-efficient VQE (RY/RZ on every qubit + a CX chain, L layers, a final RY layer). One description feeds the
simulator's parameter layout, the writer's gate list and the symbolic circuit."""

from __future__ import annotations

from dataclasses import dataclass

from .hamiltonian import Term

KINDS = ("qaoa", "vqe")


@dataclass(frozen=True)
class Gate:
    name: str  # a stdgates.inc gate
    qubits: tuple[int, ...]
    angle: float | None = None
    symbol: str | None = None  # the same angle as an expression of the named parameters


@dataclass(frozen=True)
class Ansatz:
    kind: str  # "qaoa" | "vqe"
    layers: int  # QAOA p, or VQE depth L

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown ansatz {self.kind!r}; known: {', '.join(KINDS)}")
        if self.layers < 1:
            raise ValueError(f"an ansatz needs at least one layer, got {self.layers}")

    @property
    def ansatz_id(self) -> str:
        return f"qaoa_x_mixer_p{self.layers}" if self.kind == "qaoa" else f"hea_ry_rz_cx_chain_l{self.layers}"

    def num_params(self, n: int) -> int:
        return 2 * self.layers if self.kind == "qaoa" else n * (2 * self.layers + 1)

    def param_names(self, n: int) -> list[str]:
        if self.kind == "qaoa":
            return [f"gamma_{k}" for k in range(self.layers)] + [f"beta_{k}" for k in range(self.layers)]
        names = []
        for layer in range(self.layers + 1):
            names += [f"ry_{layer}_{i}" for i in range(n)]
            if layer < self.layers:
                names += [f"rz_{layer}_{i}" for i in range(n)]
        return names

    def gates(self, params: list[float], terms: list[Term], n: int) -> list[Gate]:
        names = self.param_names(n)
        if len(params) != len(names):
            raise ValueError(f"{self.ansatz_id} on {n} qubits takes {len(names)} parameters, got {len(params)}")
        return (
            _qaoa(self.layers, params, names, terms, n) if self.kind == "qaoa" else _hea(self.layers, params, names, n)
        )


def _qaoa(p: int, params: list[float], names: list[str], terms: list[Term], n: int) -> list[Gate]:
    out = [Gate("h", (i,)) for i in range(n)]
    for layer in range(p):
        gamma, gname = params[layer], names[layer]
        for coef, qubits in terms:  # exp(-i gamma c Z_S) = ladder, rz(2 gamma c) on the last qubit, ladder back
            ladder = [Gate("cx", (a, b)) for a, b in zip(qubits, qubits[1:], strict=False)]
            out += ladder
            out.append(Gate("rz", (qubits[-1],), 2 * gamma * coef, f"{2 * coef!r} * {gname}"))
            out += ladder[::-1]
        beta, bname = params[p + layer], names[p + layer]
        out += [Gate("rx", (i,), 2 * beta, f"2 * {bname}") for i in range(n)]
    return out


def _hea(layers: int, params: list[float], names: list[str], n: int) -> list[Gate]:
    out, k = [], 0
    for layer in range(layers + 1):
        for i in range(n):
            out.append(Gate("ry", (i,), params[k], names[k]))
            k += 1
        if layer == layers:
            break
        for i in range(n):
            out.append(Gate("rz", (i,), params[k], names[k]))
            k += 1
        out += [Gate("cx", (i, i + 1)) for i in range(n - 1)]
    return out

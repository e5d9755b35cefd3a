"""Exact simulation in torch of the `vqc` / `tq` circuit (its gates: quantum/circuit.py), batched over rows.

All CRZ gates are diagonal, so a run of them is one elementwise phase on the state vector (and their order within a
run is irrelevant). The state is kept in real arithmetic, [2, rows, 2^n] = (real, imaginary) parts: RY is real, so
a run of RY gates on distinct wires is applied to both parts at once, as Kronecker blocks of up to BLOCK wires (one
small matrix product per block instead of one pass per wire), and a CRZ run is a complex phase (cos, sin) per basis
state. The gate list is compiled once per spec into such runs. Two exact evaluation modes:
  - "gates": apply the circuit to the batch of encoded states (cost ~ rows * 2^n * L * 2^BLOCK);
  - "fused": when the data enters only at the start, apply the circuit to the 2^n basis states once per call
    (its unitary) and multiply the batch of encoded product states by it (cost ~ 4^n L 2^BLOCK + rows * 4^n).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from quantum_ft.quantum.circuit import Gate, VQCSpec, circuit_gates

MODES = ("auto", "gates", "fused")


@dataclass(frozen=True)
class Run:
    """Consecutive gates of one kind and one angle source that the engine applies in one pass."""

    name: str
    source: str
    wires: tuple[tuple[int, ...], ...]
    index: tuple[tuple[int, ...], ...]


@lru_cache(maxsize=64)
def compile_runs(spec: VQCSpec, with_encoding: bool) -> tuple[Run, ...]:
    """Group the gate list into runs: RY gates on distinct wires, or any CRZ gates (diagonal, so they commute)."""
    runs: list[list[Gate]] = []
    for gate in circuit_gates(spec, with_encoding):
        last = runs[-1] if runs else None
        joins = last is not None and last[0].name == gate.name and last[0].source == gate.source
        if joins and gate.name == "ry":
            joins = all(g.wires[0] != gate.wires[0] for g in last)
        if joins:
            last.append(gate)
        else:
            runs.append([gate])
    return tuple(Run(r[0].name, r[0].source, tuple(g.wires for g in r), tuple(g.index for g in r)) for r in runs)


def _angles(run: Run, theta: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
    """The run's angles, [gates] (weights) or [rows, gates] (inputs)."""
    if run.source == "input":
        return h[:, [i[0] for i in run.index]]
    k, j, i = zip(*run.index)
    return theta[list(k), list(j), list(i)]


@lru_cache(maxsize=32)
def _bits(n: int, device: torch.device) -> torch.Tensor:
    """bits[x, i] = value of wire i in basis state x (wire 0 = most significant bit)."""
    x = torch.arange(2**n, device=device)
    shifts = torch.arange(n - 1, -1, -1, device=device)
    return (x[:, None] >> shifts[None, :]) & 1


BLOCK = 4  # wires per Kronecker block of an RY layer: 16 x 16 matrices


def product_state(h: torch.Tensor) -> torch.Tensor:
    """prod_i RY(h_i)|0>: real amplitudes [rows, 2^n] of the angle-encoded input h [rows, n]."""
    cos, sin = torch.cos(h / 2), torch.sin(h / 2)
    state = torch.ones(h.shape[0], 1, dtype=h.dtype, device=h.device)
    for i in range(h.shape[1]):
        state = (state[:, :, None] * torch.stack([cos[:, i], sin[:, i]], dim=1)[:, None, :]).reshape(h.shape[0], -1)
    return state


def ry_kron(angles: torch.Tensor) -> torch.Tensor:
    """Kronecker product of RY(angles[..., j]) over the last axis: [..., 2^k, 2^k], wire order MSB first."""
    c, s = torch.cos(angles / 2), torch.sin(angles / 2)
    mats = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # [..., k, 2, 2]
    out = mats[..., 0, :, :]
    for j in range(1, angles.shape[-1]):
        m = mats[..., j, :, :]
        out = (out[..., :, None, :, None] * m[..., None, :, None, :]).flatten(-4, -3).flatten(-2, -1)
    return out


def apply_ry(state: torch.Tensor, angles: torch.Tensor, n: int) -> torch.Tensor:
    """RY on every wire. state: [parts, rows, 2^n]; angles: [n] (shared) or [rows, n] (per row)."""
    parts, rows = state.shape[0], state.shape[1]
    per_row = angles.dim() == 2
    for start in range(0, n, BLOCK):
        k = min(BLOCK, n - start)
        rot = ry_kron(angles[..., start : start + k]).to(state.dtype)
        after = 2 ** (n - start - k)
        if after == 1 and not per_row:  # the block is the fastest-varying index: one plain matrix product
            state = (state.reshape(-1, 2**k) @ rot.T).reshape(parts, rows, -1)
            continue
        view = state.reshape(parts, rows, 2**start, 2**k, after)
        rot = rot[:, None] if per_row else rot  # [rows, 1, 2^k, 2^k] broadcasts over the leading wires
        state = torch.matmul(rot, view).reshape(parts, rows, -1)
    return state


def ring_phase(angles: torch.Tensor, pairs: tuple[tuple[int, int], ...], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of the phase a run of CRZ(angles[g]) on pairs[g] = (control, target) puts on each basis state.
    CRZ(t) = diag(1, 1, e^{-it/2}, e^{it/2}): a phase of -+t/2 when the control is 1 (target 0 / 1)."""
    bits = _bits(n, angles.device).to(angles.dtype)
    phase = torch.zeros(2**n, dtype=angles.dtype, device=angles.device)
    for (control, target), angle in zip(pairs, angles):
        phase = phase + bits[:, control] * (2 * bits[:, target] - 1) * (angle / 2)
    return torch.cos(phase), torch.sin(phase)


def apply_phase(state: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    re, im = state[0], state[1]
    return torch.stack([re * cos - im * sin, re * sin + im * cos])


def z_expectations(probs: torch.Tensor, n: int) -> torch.Tensor:
    """<Z_i> = sum_x p(x) (1 - 2 bit_i(x)): [rows, n]."""
    signs = 1 - 2 * _bits(n, probs.device).to(probs.dtype)
    return probs @ signs


def _apply(state: torch.Tensor, runs: tuple[Run, ...], theta: torch.Tensor, h: torch.Tensor | None, n: int):
    for run in runs:
        angles = _angles(run, theta, h)
        if run.name == "crz":
            state = apply_phase(state, *ring_phase(angles, run.wires, n))
            continue
        wires = [w[0] for w in run.wires]
        if wires != list(range(n)):  # RY(0) = identity on the wires the run leaves out
            full = angles.new_zeros(*angles.shape[:-1], n)
            full[..., wires] = angles
            angles = full
        state = apply_ry(state, angles, n)
    return state


def simulate_gates(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec) -> torch.Tensor:
    psi0 = product_state(h)
    runs = compile_runs(spec, with_encoding=False)  # the first encoding is the product state
    state = _apply(torch.stack([psi0, torch.zeros_like(psi0)]), runs, theta, h, spec.n_qubits)
    return z_expectations(state[0] ** 2 + state[1] ** 2, spec.n_qubits)


def simulate_fused(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec) -> torch.Tensor:
    if spec.reupload:
        raise ValueError("The fused mode needs the data encoded once (reupload=false); use mode 'gates'.")
    eye = torch.eye(2**spec.n_qubits, dtype=h.dtype, device=h.device)
    runs = compile_runs(spec, with_encoding=False)
    columns = _apply(torch.stack([eye, torch.zeros_like(eye)]), runs, theta, None, spec.n_qubits)  # row j = U |j>
    psi0 = product_state(h)
    psi_re, psi_im = psi0 @ columns[0], psi0 @ columns[1]
    return z_expectations(psi_re**2 + psi_im**2, spec.n_qubits)


def choose_mode(spec: VQCSpec, rows: int) -> str:
    """The cheaper exact mode by a cost estimate in which a large dense matrix product (the fused mode's) runs
    about 8x more efficiently per flop than the gate path's many small ones (measured on CPU: see
    experiments/adapter_benchmark); fused needs a single encoding."""
    if spec.reupload:
        return "gates"
    dim = 2**spec.n_qubits
    per_row_gates = dim * 2 * spec.n_layers * (2 * 2**BLOCK * -(-spec.n_qubits // BLOCK) + 8)
    gates = rows * per_row_gates
    fused = dim * per_row_gates + rows * dim * dim * 2 / 8
    return "fused" if fused < gates else "gates"


def simulate(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec, mode: str = "auto") -> torch.Tensor:
    """<Z_i> of the circuit for each row of h [rows, n], exact, differentiable in h and theta."""
    if mode not in MODES:
        raise ValueError(f"Unknown simulation mode {mode!r}; choose one of {MODES}.")
    mode = choose_mode(spec, h.shape[0]) if mode == "auto" else mode
    return simulate_fused(h, theta, spec) if mode == "fused" else simulate_gates(h, theta, spec)

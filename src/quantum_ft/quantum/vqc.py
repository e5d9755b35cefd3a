"""The variational circuit of the `vqc` / `tq` adapters and its exact simulation in torch.

Circuit on n qubits, L layers, weights theta[L, 4, n] = (a, b, c, d) per layer:

    RY(h_i) on every qubit                      angle encoding of the down-mapped input (raw values)
    per layer k:
      [RY(h_i) again if re-uploading and k > 0]
      RY(a_k,i)                                  every qubit
      CRZ(b_k,i) control i, target i+1 mod n     i = n-1 ... 0
      RY(c_k,i)                                  every qubit
      CRZ(d_k,i) control i, target i-1 mod n     i = n-1, 0, 1, ..., n-2
    z_i = <Z_i>

Wire 0 is the most significant bit of the state index (PennyLane's convention). All CRZ gates are diagonal,
so a whole ring is one elementwise phase on the state vector (and their order within a ring is irrelevant).
The state is kept in real arithmetic, [2, rows, 2^n] = (real, imaginary) parts: RY is real, so a layer of
RY on all wires is applied to both parts at once, as Kronecker blocks of up to BLOCK wires (one small matrix
product per block instead of one pass per wire), and a CRZ ring is a complex phase (cos, sin) per basis state.
Two exact evaluation modes:
  - "gates": apply the circuit to the batch of encoded states (cost ~ rows * 2^n * L * 2^BLOCK);
  - "fused": when the data enters only at the start, apply the circuit to the 2^n basis states once per call
    (its unitary) and multiply the batch of encoded product states by it (cost ~ 4^n L 2^BLOCK + rows * 4^n).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

MODES = ("auto", "gates", "fused")


@dataclass(frozen=True)
class VQCSpec:
    n_qubits: int
    n_layers: int
    reupload: bool = False

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        return (self.n_layers, 4, self.n_qubits)

    def ring_forward(self) -> list[tuple[int, int]]:
        n = self.n_qubits
        return [(i, (i + 1) % n) for i in range(n - 1, -1, -1)]

    def ring_backward(self) -> list[tuple[int, int]]:
        n = self.n_qubits
        return [(i, (i - 1) % n) for i in [n - 1, *range(n - 1)]]


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


def ring_phase(angles: torch.Tensor, pairs: list[tuple[int, int]], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of the phase a ring of CRZ(angles[control]) puts on each basis state, [2^n] each.
    CRZ(t) = diag(1, 1, e^{-it/2}, e^{it/2}): a phase of -+t/2 when the control is 1 (target 0 / 1)."""
    bits = _bits(n, angles.device).to(angles.dtype)
    phase = torch.zeros(2**n, dtype=angles.dtype, device=angles.device)
    for control, target in pairs:
        phase = phase + bits[:, control] * (2 * bits[:, target] - 1) * (angles[control] / 2)
    return torch.cos(phase), torch.sin(phase)


def apply_phase(state: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    re, im = state[0], state[1]
    return torch.stack([re * cos - im * sin, re * sin + im * cos])


def z_expectations(probs: torch.Tensor, n: int) -> torch.Tensor:
    """<Z_i> = sum_x p(x) (1 - 2 bit_i(x)): [rows, n]."""
    signs = 1 - 2 * _bits(n, probs.device).to(probs.dtype)
    return probs @ signs


def _layers(state: torch.Tensor, spec: VQCSpec, theta: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
    n = spec.n_qubits
    for k in range(spec.n_layers):
        if h is not None and k > 0 and spec.reupload:
            state = apply_ry(state, h, n)
        state = apply_ry(state, theta[k, 0], n)
        state = apply_phase(state, *ring_phase(theta[k, 1], spec.ring_forward(), n))
        state = apply_ry(state, theta[k, 2], n)
        state = apply_phase(state, *ring_phase(theta[k, 3], spec.ring_backward(), n))
    return state


def simulate_gates(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec) -> torch.Tensor:
    psi0 = product_state(h)
    state = _layers(torch.stack([psi0, torch.zeros_like(psi0)]), spec, theta, h)
    return z_expectations(state[0] ** 2 + state[1] ** 2, spec.n_qubits)


def simulate_fused(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec) -> torch.Tensor:
    if spec.reupload:
        raise ValueError("The fused mode needs the data encoded once (reupload=false); use mode 'gates'.")
    eye = torch.eye(2**spec.n_qubits, dtype=h.dtype, device=h.device)
    columns = _layers(torch.stack([eye, torch.zeros_like(eye)]), spec, theta, None)  # row j = U |j>
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

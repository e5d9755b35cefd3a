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
Two exact evaluation modes:
  - "gates": apply RY layers qubit by qubit and rings as phases to the batch of states (cost ~ rows * 2^n * L n);
  - "fused": when the data enters only at the start, build the circuit unitary once per call (applied to the
    2^n basis states) and multiply the batch of encoded product states by it (cost ~ 4^n L n + rows * 4^n).
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


def product_state(h: torch.Tensor) -> torch.Tensor:
    """prod_i RY(h_i)|0>: real amplitudes [rows, 2^n] of the angle-encoded input h [rows, n]."""
    cos, sin = torch.cos(h / 2), torch.sin(h / 2)
    state = torch.ones(h.shape[0], 1, dtype=h.dtype, device=h.device)
    for i in range(h.shape[1]):
        state = (state[:, :, None] * torch.stack([cos[:, i], sin[:, i]], dim=1)[:, None, :]).reshape(h.shape[0], -1)
    return state


def apply_ry(state: torch.Tensor, angles: torch.Tensor, n: int) -> torch.Tensor:
    """RY on every wire; `angles` is [n] (shared) or [rows, n] (per row). state: [rows, 2^n]."""
    rows = state.shape[0]
    for i in range(n):
        view = state.reshape(rows, 2**i, 2, 2 ** (n - i - 1))
        theta = angles[..., i]
        if theta.dim() == 1:  # per-row angles
            theta = theta[:, None, None]
        c, s = torch.cos(theta / 2).to(state.dtype), torch.sin(theta / 2).to(state.dtype)
        s0, s1 = view[:, :, 0, :], view[:, :, 1, :]
        state = torch.stack([c * s0 - s * s1, s * s0 + c * s1], dim=2).reshape(rows, -1)
    return state


def ring_phase(angles: torch.Tensor, pairs: list[tuple[int, int]], n: int, dtype: torch.dtype) -> torch.Tensor:
    """The diagonal of a ring of CRZ(angles[i]) on (control, target) pairs: exp(i * sum of phases), [2^n].
    CRZ(t) = diag(1, 1, e^{-it/2}, e^{it/2}): a phase of -+t/2 when the control is 1 (target 0 / 1)."""
    bits = _bits(n, angles.device).to(angles.dtype)
    phase = torch.zeros(2**n, dtype=angles.dtype, device=angles.device)
    for control, target in pairs:
        phase = phase + bits[:, control] * (2 * bits[:, target] - 1) * (angles[control] / 2)
    return torch.polar(torch.ones_like(phase), phase).to(dtype)


def z_expectations(probs: torch.Tensor, n: int) -> torch.Tensor:
    """<Z_i> = sum_x p(x) (1 - 2 bit_i(x)): [rows, n]."""
    signs = 1 - 2 * _bits(n, probs.device).to(probs.dtype)
    return probs @ signs


def _layers(state: torch.Tensor, spec: VQCSpec, theta: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
    n = spec.n_qubits
    cdtype = state.dtype
    for k in range(spec.n_layers):
        if h is not None and k > 0 and spec.reupload:
            state = apply_ry(state, h, n)
        state = apply_ry(state, theta[k, 0], n)
        state = state * ring_phase(theta[k, 1], spec.ring_forward(), n, cdtype)
        state = apply_ry(state, theta[k, 2], n)
        state = state * ring_phase(theta[k, 3], spec.ring_backward(), n, cdtype)
    return state


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def simulate_gates(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec) -> torch.Tensor:
    state = product_state(h).to(complex_dtype(h.dtype))
    state = _layers(state, spec, theta, h)
    return z_expectations(state.real**2 + state.imag**2, spec.n_qubits)


def simulate_fused(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec) -> torch.Tensor:
    if spec.reupload:
        raise ValueError("The fused mode needs the data encoded once (reupload=false); use mode 'gates'.")
    dim = 2**spec.n_qubits
    basis = torch.eye(dim, dtype=complex_dtype(h.dtype), device=h.device)
    columns = _layers(basis, spec, theta, None)  # row j = U |j>
    psi0 = product_state(h)
    psi_re, psi_im = psi0 @ columns.real, psi0 @ columns.imag
    return z_expectations(psi_re**2 + psi_im**2, spec.n_qubits)


def choose_mode(spec: VQCSpec, rows: int) -> str:
    """Cheaper exact mode by a flop estimate (fused needs a single encoding)."""
    if spec.reupload:
        return "gates"
    n, L = spec.n_qubits, spec.n_layers
    gates = rows * 2**n * (2 * n + 2) * L * 4
    fused = 4**n * (2 * n + 2) * L * 4 + rows * 4**n * 2
    return "fused" if fused < gates else "gates"


def simulate(h: torch.Tensor, theta: torch.Tensor, spec: VQCSpec, mode: str = "auto") -> torch.Tensor:
    """<Z_i> of the circuit for each row of h [rows, n], exact, differentiable in h and theta."""
    if mode not in MODES:
        raise ValueError(f"Unknown simulation mode {mode!r}; choose one of {MODES}.")
    mode = choose_mode(spec, h.shape[0]) if mode == "auto" else mode
    return simulate_fused(h, theta, spec) if mode == "fused" else simulate_gates(h, theta, spec)

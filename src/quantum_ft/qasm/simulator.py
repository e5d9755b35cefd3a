"""An exact, batched statevector engine (torch, complex128, differentiable) for the two ansatz families.

A batch row is one restart. The QAOA cost layer is a diagonal phase exp(-i gamma E) on the whole state (no gate
per term); the X mixer is one 2x2 rotation per qubit. Index convention as in hamiltonian.py (qubit i = bit i)."""

from __future__ import annotations

import numpy as np
import torch

from .hamiltonian import z_parity


def _rotate_each_qubit(psi: torch.Tensor, n: int, m00, m01, m10, m11) -> torch.Tensor:
    """Apply one 2x2 matrix per qubit (entries shaped (R, n) or (R, 1)) to every qubit in turn."""
    r, size = psi.shape
    for i in range(n):
        v = psi.reshape(r, size >> (i + 1), 2, 1 << i)
        a0, a1 = v[:, :, 0, :], v[:, :, 1, :]
        col = slice(i, i + 1) if m00.shape[1] > 1 else slice(0, 1)
        c00, c01, c10, c11 = (m[:, col].unsqueeze(-1) for m in (m00, m01, m10, m11))
        psi = torch.stack((c00 * a0 + c01 * a1, c10 * a0 + c11 * a1), dim=2).reshape(r, size)
    return psi


def cx_chain_permutation(n: int) -> np.ndarray:
    """perm with state_after = state_before[perm] for cx(0,1), cx(1,2), ..., cx(n-2,n-1) applied in that order."""
    idx = np.arange(2**n)
    perm = idx.copy()
    for c in range(n - 1):
        t = c + 1
        perm = perm[idx ^ (((idx >> c) & 1) << t)]
    return perm


class Engine:
    """Holds one instance's diagonal; gives probabilities of QAOA or hardware-efficient states for a batch of
    parameter vectors."""

    def __init__(self, energies: np.ndarray, n: int) -> None:
        self.n = n
        self.energies = torch.as_tensor(energies, dtype=torch.float64)
        self.z = torch.as_tensor(np.stack([z_parity(n, (i,)) for i in range(n)]), dtype=torch.float64)  # (n, N)
        self.perm = torch.as_tensor(cx_chain_permutation(n)) if n > 1 else None

    def qaoa_state(self, params: torch.Tensor) -> torch.Tensor:
        """params (R, 2p) = gammas then betas. H on all qubits, then p times exp(-i gamma E), rx(2 beta) on all."""
        r, two_p = params.shape
        p = two_p // 2
        size = 2**self.n
        psi = torch.full((r, size), size**-0.5, dtype=torch.complex128)
        for layer in range(p):
            gamma, beta = params[:, layer : layer + 1], params[:, p + layer : p + layer + 1]
            psi = psi * torch.exp(-1j * gamma * self.energies[None, :])
            c, s = torch.cos(beta).to(torch.complex128), torch.sin(beta).to(torch.complex128)
            psi = _rotate_each_qubit(psi, self.n, c, -1j * s, -1j * s, c)
        return psi

    def hea_state(self, params: torch.Tensor, layers: int) -> torch.Tensor:
        """params (R, 2nL + n): per layer ry(theta_i) then rz(phi_i) on every qubit, then the cx chain; a final ry
        layer. Starts from |0...0>."""
        r = params.shape[0]
        n, size = self.n, 2**self.n
        psi = torch.zeros((r, size), dtype=torch.complex128)
        psi[:, 0] = 1.0
        blocks = params.reshape(r, -1, n)  # rows: ry, rz, ry, rz, ..., ry
        for layer in range(layers + 1):
            theta = blocks[:, 2 * layer, :]
            c, s = torch.cos(theta / 2).to(torch.complex128), torch.sin(theta / 2).to(torch.complex128)
            psi = _rotate_each_qubit(psi, n, c, -s, s, c)
            if layer == layers:
                break
            phi = blocks[:, 2 * layer + 1, :]
            psi = psi * torch.exp(-0.5j * (phi @ self.z))
            if self.perm is not None:
                psi = psi[:, self.perm]
        return psi

    def probabilities(self, kind: str, params: torch.Tensor, layers: int) -> torch.Tensor:
        psi = self.qaoa_state(params) if kind == "qaoa" else self.hea_state(params, layers)
        return psi.real**2 + psi.imag**2


def fwht(a: np.ndarray, n: int) -> np.ndarray:
    """Normalised Walsh-Hadamard transform H^{(x)n} on the last axis of (R, 2^n); H is real, symmetric, its own
    inverse."""
    r, size = a.shape
    for i in range(n):
        v = a.reshape(r, size >> (i + 1), 2, 1 << i)
        a = np.stack((v[:, :, 0, :] + v[:, :, 1, :], v[:, :, 0, :] - v[:, :, 1, :]), axis=2).reshape(r, size)
    return a * size**-0.5


class QaoaAdjoint:
    """QAOA values and exact gradients in numpy by the adjoint method, without autograd's per-op cost.

    The X mixer exp(-i beta sum X) is diagonal in the Hadamard basis: H diag(exp(-i beta d)) H with
    d_k = n - 2 popcount(k), so each layer is two fast Walsh-Hadamard transforms and two phases."""

    def __init__(self, phase_energies: np.ndarray, n: int) -> None:
        self.n = n
        self.e = np.asarray(phase_energies, dtype=np.float64)
        pop = np.array([bin(k).count("1") for k in range(2**n)], dtype=np.float64)
        self.d = n - 2.0 * pop

    def state(self, params: np.ndarray) -> np.ndarray:
        return self._forward(params)[0]

    def _forward(self, params: np.ndarray):
        r, two_p = params.shape
        p = two_p // 2
        size = 2**self.n
        psi = np.full((r, size), size**-0.5, dtype=np.complex128)
        phis, chis = [], []
        for layer in range(p):
            phi = psi * np.exp(-1j * params[:, layer : layer + 1] * self.e[None, :])
            chi = fwht(phi, self.n) * np.exp(-1j * params[:, p + layer : p + layer + 1] * self.d[None, :])
            psi = fwht(chi, self.n)
            phis.append(phi)
            chis.append(chi)
        return psi, phis, chis

    def value_and_grad(self, params: np.ndarray, weights: np.ndarray | None = None, mask: np.ndarray | None = None):
        """Per row: sum_k weights_k |psi_k|^2 (energy objective), or -log sum_{k in mask} |psi_k|^2."""
        r, two_p = params.shape
        p = two_p // 2
        psi, phis, chis = self._forward(params)
        probs = psi.real**2 + psi.imag**2
        if weights is not None:
            values = probs @ weights
            lam = weights[None, :] * psi
        else:
            mass = probs[:, mask].sum(axis=1) + 1e-300
            values = -np.log(mass)
            lam = np.zeros_like(psi)
            lam[:, mask] = -psi[:, mask] / mass[:, None]
        grad = np.zeros((r, two_p))
        for layer in reversed(range(p)):
            lam_t = fwht(lam, self.n)  # lambda in the Hadamard basis
            grad[:, p + layer] = 2 * np.imag(np.sum(np.conj(lam_t) * self.d[None, :] * chis[layer], axis=1))
            lam_phi = fwht(lam_t * np.exp(1j * params[:, p + layer : p + layer + 1] * self.d[None, :]), self.n)
            grad[:, layer] = 2 * np.imag(np.sum(np.conj(lam_phi) * self.e[None, :] * phis[layer], axis=1))
            lam = lam_phi * np.exp(1j * params[:, layer : layer + 1] * self.e[None, :])
        return values, grad

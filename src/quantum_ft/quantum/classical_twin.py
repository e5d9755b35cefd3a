"""The classical control of the vqc circuit (`adapter.backend=classical`): the same input, the same weights
theta[L, 4, n], the same ring neighbourhoods and the same output width and range, with no quantum state.

    h_i = cos(x_i)                                   <Z_i> of RY(x_i)|0>: the circuit's encoding, unentangled
    per layer k:  h_i <- tanh( sin(a_k,i) h_i + sin(b_k,i) h_{i+1} + sin(c_k,i) h_{i-1} + sin(d_k,i) )

Each layer mixes a wire with the neighbours its CRZ rings couple, with the layer's four weights per wire entering
through a sine, as rotation angles enter a circuit. If a vqc adapter trains better than this twin with the same
down- and up-maps and as many parameters, the circuit is doing something a cheap non-linearity does not; if not,
it is not. Left out: any claim that this is the *best* classical control (it is the closest one).
"""

from __future__ import annotations

import torch

from quantum_ft.quantum.circuit import VQCSpec


def classical_twin(spec: VQCSpec):
    """A `circuit(h, theta) -> z` with the circuit's signature (h: (rows, n), theta: (L, 4, n))."""

    def run(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        h = torch.cos(x)
        for k in range(spec.n_layers):
            w = torch.sin(theta[k])  # (4, n)
            h = torch.tanh(w[0] * h + w[1] * h.roll(-1, dims=-1) + w[2] * h.roll(1, dims=-1) + w[3])
        return h

    return run

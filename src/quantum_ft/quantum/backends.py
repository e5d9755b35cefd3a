"""Circuit backends behind one call, `circuit(h, theta) -> <Z>`: our torch engine (default, any torch device)
or PennyLane devices (default.qubit with backprop, lightning.qubit / lightning.gpu with adjoint)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from quantum_ft.quantum.vqc import VQCSpec, simulate

BACKENDS = ("torch", "pennylane")
PENNYLANE_DEVICES = {"default.qubit": "backprop", "lightning.qubit": "adjoint", "lightning.gpu": "adjoint"}

Circuit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_circuit(spec: VQCSpec, backend: str = "torch", device: str = "default.qubit", mode: str = "auto") -> Circuit:
    if backend == "torch":
        return lambda h, theta: simulate(h, theta, spec, mode)
    if backend == "pennylane":
        return pennylane_circuit(spec, device)
    raise ValueError(f"Unknown circuit backend {backend!r}; choose one of {BACKENDS}.")


def pennylane_circuit(spec: VQCSpec, device: str) -> Circuit:
    import pennylane as qml

    if device not in PENNYLANE_DEVICES:
        raise ValueError(f"Unknown PennyLane device {device!r}; choose one of {sorted(PENNYLANE_DEVICES)}.")
    if device == "lightning.gpu" and not torch.cuda.is_available():
        raise RuntimeError(
            "adapter.device=lightning.gpu needs an NVIDIA GPU and the optional extra "
            "(pip install 'quantum_ft[gpu]'); CUDA is not available here. Use lightning.qubit or backend=torch."
        )
    try:
        dev = qml.device(device, wires=spec.n_qubits)
    except Exception as e:  # plugin missing or broken
        raise RuntimeError(f"PennyLane device {device!r} could not be created: {e}") from e
    n = spec.n_qubits

    @qml.qnode(dev, interface="torch", diff_method=PENNYLANE_DEVICES[device])
    def qnode(inputs: torch.Tensor, weights: torch.Tensor):
        for k in range(spec.n_layers):
            if k == 0 or spec.reupload:
                for i in range(n):
                    qml.RY(inputs[..., i], wires=i)
            for i in range(n):
                qml.RY(weights[k, 0, i], wires=i)
            for control, target in spec.ring_forward():
                qml.CRZ(weights[k, 1, control], wires=[control, target])
            for i in range(n):
                qml.RY(weights[k, 2, i], wires=i)
            for control, target in spec.ring_backward():
                qml.CRZ(weights[k, 3, control], wires=[control, target])
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    def run(h: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        # lightning devices hand results to torch in torch's *default* dtype: float32 unless told otherwise,
        # which silently truncates float64 circuits to ~1e-8.
        default = torch.get_default_dtype()
        torch.set_default_dtype(h.dtype)
        try:
            out = qnode(h, theta)
        finally:
            torch.set_default_dtype(default)
        out = torch.stack(list(out), dim=-1) if isinstance(out, (list, tuple)) else out
        return out.to(h.dtype).reshape(h.shape[0], n)

    return run

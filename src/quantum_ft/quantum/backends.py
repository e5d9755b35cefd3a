"""Circuit backends behind one call, `circuit(h, theta) -> <Z>`, in a registry that says what each supports.

Every backend runs the same gate list (quantum/circuit.py): our torch engine (default; any torch device, exact
gradients by backprop, batched rows) or a PennyLane device (default.qubit with backprop, lightning.qubit and
lightning.gpu with adjoint differentiation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from quantum_ft.quantum.circuit import VQCSpec, circuit_gates
from quantum_ft.quantum.vqc import simulate

Circuit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Backend:
    """What a backend supports, declared (PennyLane's idea: devices state their capabilities)."""

    name: str
    gradients: str  # how dL/dtheta is computed: "backprop" | "adjoint"
    broadcasting: bool  # a batch of rows in one call
    dtypes: tuple[torch.dtype, ...]
    needs_cuda: bool
    make: Callable[[VQCSpec, str], Circuit]  # (spec, engine mode) -> circuit

    def available(self) -> bool:
        return torch.cuda.is_available() or not self.needs_cuda


def _torch_engine(spec: VQCSpec, mode: str) -> Circuit:
    return lambda h, theta: simulate(h, theta, spec, mode)


def _pennylane(device: str) -> Callable[[VQCSpec, str], Circuit]:
    return lambda spec, mode: pennylane_circuit(spec, device)


REAL = (torch.float32, torch.float64)
BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch", "backprop", True, (*REAL, torch.bfloat16), False, _torch_engine),
        Backend("default.qubit", "backprop", True, REAL, False, _pennylane("default.qubit")),
        Backend("lightning.qubit", "adjoint", True, REAL, False, _pennylane("lightning.qubit")),
        Backend("lightning.gpu", "adjoint", True, REAL, True, _pennylane("lightning.gpu")),
    )
}
PENNYLANE_DEVICES = tuple(name for name in BACKENDS if name != "torch")
ENGINES = ("torch", "pennylane")  # adapter.backend; with pennylane, adapter.device names the device


def backend_name(engine: str, device: str) -> str:
    """The registry key of an adapter's (backend, device) settings."""
    if engine not in ENGINES:
        raise ValueError(f"Unknown circuit backend {engine!r}; choose one of {ENGINES}.")
    if engine == "torch":
        return "torch"
    if device not in PENNYLANE_DEVICES:
        raise ValueError(f"Unknown PennyLane device {device!r}; choose one of {PENNYLANE_DEVICES}.")
    return device


def make_circuit(spec: VQCSpec, backend: str = "torch", device: str = "default.qubit", mode: str = "auto") -> Circuit:
    entry = BACKENDS[backend_name(backend, device)]
    if not entry.available():
        raise RuntimeError(
            f"adapter.device={entry.name} needs an NVIDIA GPU and the optional extra (pip install 'quantum_ft[gpu]'); "
            "CUDA is not available here. Use lightning.qubit or backend=torch."
        )
    return entry.make(spec, mode)


def pennylane_circuit(spec: VQCSpec, device: str) -> Circuit:
    import pennylane as qml

    try:
        dev = qml.device(device, wires=spec.n_qubits)
    except Exception as e:  # plugin missing or broken
        raise RuntimeError(f"PennyLane device {device!r} could not be created: {e}") from e
    n = spec.n_qubits
    ops = {"ry": qml.RY, "crz": qml.CRZ}
    gates = circuit_gates(spec)

    @qml.qnode(dev, interface="torch", diff_method=BACKENDS[device].gradients)
    def qnode(inputs: torch.Tensor, weights: torch.Tensor):
        for g in gates:
            angle = inputs[..., g.index[0]] if g.source == "input" else weights[g.index]
            ops[g.name](angle, wires=list(g.wires))
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

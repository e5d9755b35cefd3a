"""Circuit simulation: the adapters' circuit described once (circuit.py), our batched torch state-vector engine
(vqc.py) and the PennyLane devices, in a registry of backends that declare what they support (backends.py)."""

from quantum_ft.quantum.backends import BACKENDS, Backend, make_circuit
from quantum_ft.quantum.circuit import Gate, VQCSpec, circuit_gates, to_qasm3

__all__ = ["BACKENDS", "Backend", "Gate", "VQCSpec", "circuit_gates", "make_circuit", "to_qasm3"]

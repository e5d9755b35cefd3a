"""Circuit simulation: our batched torch state-vector engine and the PennyLane bridge, behind one interface."""

from quantum_ft.quantum.backends import BACKENDS, make_circuit
from quantum_ft.quantum.vqc import VQCSpec

__all__ = ["BACKENDS", "VQCSpec", "make_circuit"]

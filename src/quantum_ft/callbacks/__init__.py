"""The project's Lightning callbacks, one module each, one yaml each in conf/callbacks/ (the stock Lightning ones
are configured there too)."""

from quantum_ft.callbacks.communication import LogCommunication
from quantum_ft.callbacks.completions import CompletionsTable
from quantum_ft.callbacks.diloco import DiLoCo
from quantum_ft.callbacks.loss_guard import LossGuard, TrainingDiverged
from quantum_ft.callbacks.requeue import CheckpointAndRequeue
from quantum_ft.callbacks.resources import ResourceMonitor
from quantum_ft.callbacks.samples import SampleGenerations
from quantum_ft.callbacks.throughput import Throughput

__all__ = [
    "CheckpointAndRequeue",
    "CompletionsTable",
    "DiLoCo",
    "LogCommunication",
    "LossGuard",
    "ResourceMonitor",
    "SampleGenerations",
    "Throughput",
    "TrainingDiverged",
]

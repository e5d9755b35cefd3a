"""Model sources: each config in conf/model/ instantiates one of these and the stage asks it for weights."""

from quantum_ft.models.base import ModelSource, ModelUnavailableError
from quantum_ft.models.bundled import BundledGGUFModel
from quantum_ft.models.hub import HubModel
from quantum_ft.models.nanogpt import NanoGPT, NanoGPTConfig, NanoGPTSource
from quantum_ft.models.tiny import TinyRandomModel

__all__ = [
    "BundledGGUFModel",
    "HubModel",
    "ModelSource",
    "ModelUnavailableError",
    "NanoGPT",
    "NanoGPTConfig",
    "NanoGPTSource",
    "TinyRandomModel",
]

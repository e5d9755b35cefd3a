"""Model sources (one per kind of origin: the embedded GGUF, the hub, NanoGPT, the tiny test model), each built
from a config in conf/model/; `models.build.build_model` turns a config into the model every entry point uses."""

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

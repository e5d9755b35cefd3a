"""Adapters: what is trained on top of a frozen (or quantised) base model. One module and one config each."""

from quantum_ft.adapters.base import Adapter
from quantum_ft.adapters.full import FullFineTune
from quantum_ft.adapters.lora import LoraAdapter, QLoraAdapter

__all__ = ["Adapter", "FullFineTune", "LoraAdapter", "QLoraAdapter"]

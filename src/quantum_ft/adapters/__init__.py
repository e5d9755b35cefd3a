"""Adapters: what is trained on top of a frozen (or quantised) base model. One module and one config each.

Importing this package registers vqc, tq and quanta as PEFT methods."""

from quantum_ft.adapters.base import Adapter
from quantum_ft.adapters.full import FullFineTune
from quantum_ft.adapters.lora import LoraAdapter, QLoraAdapter
from quantum_ft.adapters.quanta import QuanTAAdapter
from quantum_ft.adapters.tq import TQAdapter
from quantum_ft.adapters.vqc import VQCAdapter

__all__ = ["Adapter", "FullFineTune", "LoraAdapter", "QLoraAdapter", "QuanTAAdapter", "TQAdapter", "VQCAdapter"]

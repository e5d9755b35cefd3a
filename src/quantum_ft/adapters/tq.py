"""`tq`: the pyvqnet demo's torchquantum-style variant of `vqc`: the same circuit, input encoded once, circuit angles
drawn U(-pi, pi) as torchquantum does, run on our torch engine. torchquantum itself (0.1.8, the newest on PyPI)
cannot be installed beside the pinned torch: it requires torchvision (no build for torch 2.13 on CPU here),
tensorflow and qiskit < 1.0."""

from __future__ import annotations

from dataclasses import dataclass, field

from quantum_ft.adapters.peft_registry import register_linear_method
from quantum_ft.adapters.vqc import VQCAdapter, VQCConfig, VQCLinear


@dataclass
class TQConfig(VQCConfig):
    angle_init: str = field(default="uniform_pm_pi", metadata={"help": "torchquantum's U(-pi, pi)"})

    def __post_init__(self) -> None:
        if self.reupload:
            raise ValueError("adapter=tq encodes the input once (reupload=false); use adapter=vqc to re-upload.")
        super().__post_init__()

    @staticmethod
    def method_name() -> str:
        return "tq"


class TQLinear(VQCLinear):
    adapter_layer_names = ("tq_down", "tq_theta", "tq_up")
    other_param_names = ("tq_settings",)


register_linear_method("tq", TQConfig, TQLinear)


class TQAdapter(VQCAdapter):
    name = "tq"
    config_cls = TQConfig

"""`vqc`: a variational quantum circuit adapter on a frozen linear layer.

    y = W x + scale * B z(A x),   z = <Z> of the circuit in quantum_ft.quantum.circuit, angle-encoded by A x

A: Linear(d_in -> n_qubits), B: Linear(n_qubits -> d_out) (no biases unless `map_bias`), circuit angles
theta[L, 4, n]: n d_in + 4 n L + n d_out parameters per adapted layer. The circuit runs in
its own precision (float32 by default, also under bf16 training) on the configured backend.

Initialisation (`init`):
  - "zero_up" (default): B = 0, so the update is exactly zero at the start and training begins at the base
    model's loss, as with LoRA. Gradients still reach every parameter after the first step (dL/dB != 0).
  - "reference": A and B with PyTorch's default Linear init, as pyvqnet's `peft_vqc` does; the update is not
    zero at the start, which is why the reference loss curves start far above the base loss.
Circuit angles: U[0, 2 pi) (pyvqnet) by default; `tq` uses torchquantum's U(-pi, pi).

`backend=classical` replaces the circuit by its classical twin (quantum/classical_twin.py: same weights, same ring
neighbourhoods, same width), the control that says whether the circuit itself does anything (adapter=vqc_classical).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from quantum_ft.adapters.lora import RegisteredMethodAdapter
from quantum_ft.adapters.peft_registry import init_linear_layer, peft_type, register_linear_method
from quantum_ft.quantum.backends import ENGINES, PENNYLANE_DEVICES, make_circuit
from quantum_ft.quantum.circuit import MAX_QUBITS, VQCSpec
from quantum_ft.quantum.classical_twin import classical_twin
from quantum_ft.quantum.vqc import MODES, light_cones
from quantum_ft.utils.dtypes import resolve_dtype

INITS = ("zero_up", "reference")
CLASSICAL = "classical"  # adapter.backend: the circuit's classical twin (quantum/classical_twin.py), a control
ANGLE_INITS = {"uniform_0_2pi": (0.0, 2 * math.pi), "uniform_pm_pi": (-math.pi, math.pi)}


@dataclass
class VQCConfig(PeftConfig):
    n_qubits: int = field(default=8, metadata={"help": "qubits of the circuit (width of the down-map)"})
    n_layers: int = field(default=2, metadata={"help": "circuit layers (RY, CRZ ring, RY, CRZ ring)"})
    reupload: bool = field(default=False, metadata={"help": "re-apply the RY data encoding in every layer"})
    init: str = field(default="zero_up", metadata={"help": "zero_up (exact zero update at start) | reference"})
    angle_init: str = field(default="uniform_0_2pi", metadata={"help": "uniform_0_2pi | uniform_pm_pi"})
    scale: float = field(default=1.0, metadata={"help": "multiplier of the update"})
    map_bias: bool = field(default=False, metadata={"help": "biases in the down/up maps (off, like LoRA)"})
    backend: str = field(default="torch", metadata={"help": "torch | pennylane | classical (the control)"})
    device: str = field(default="default.qubit", metadata={"help": "PennyLane device when backend=pennylane"})
    mode: str = field(default="auto", metadata={"help": "torch engine: auto | gates | fused | cone"})
    circuit_dtype: str = field(default="float32", metadata={"help": "precision of down-map, circuit, up-map"})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "modules to adapt"})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "extra modules to train"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = peft_type(self.method_name())
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        problems = []
        if not 2 <= self.n_qubits <= MAX_QUBITS:
            problems.append(
                f"n_qubits={self.n_qubits} must be between 2 and {MAX_QUBITS} (the CRZ rings entangle neighbouring "
                "wires: one wire has no neighbour)"
            )
        if self.n_layers < 1:
            problems.append(f"n_layers={self.n_layers} must be >= 1")
        if self.init not in INITS:
            problems.append(f"init={self.init!r} must be one of {INITS}")
        if self.angle_init not in ANGLE_INITS:
            problems.append(f"angle_init={self.angle_init!r} must be one of {sorted(ANGLE_INITS)}")
        if self.backend not in (*ENGINES, CLASSICAL):
            problems.append(f"backend={self.backend!r} must be one of {(*ENGINES, CLASSICAL)}")
        if self.backend == "pennylane" and self.device not in PENNYLANE_DEVICES:
            problems.append(f"device={self.device!r} must be one of {sorted(PENNYLANE_DEVICES)}")
        if self.mode not in MODES:
            problems.append(f"mode={self.mode!r} must be one of {MODES}")
        elif self.mode == "cone" and not problems and light_cones(self.spec) is None:
            problems.append(
                f"mode=cone needs light cones narrower than the register: with n_qubits={self.n_qubits}, "
                f"n_layers={self.n_layers}{', reupload' if self.reupload else ''} a cone is all of it (use mode=auto)"
            )
        if problems:
            raise ValueError(f"Bad {self.method_name()} adapter settings: " + "; ".join(problems) + ".")

    @staticmethod
    def method_name() -> str:
        return "vqc"

    @property
    def spec(self) -> VQCSpec:
        return VQCSpec(self.n_qubits, self.n_layers, self.reupload)


class VQCLinear(nn.Module, BaseTunerLayer):
    adapter_layer_names = ("vqc_down", "vqc_theta", "vqc_up")
    other_param_names = ("vqc_settings",)

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: VQCConfig, **kwargs: Any) -> None:
        super().__init__()
        init_linear_layer(self, base_layer, self.adapter_layer_names[0].split("_")[0], **kwargs)
        for name in self.adapter_layer_names:
            setattr(self, name, nn.ParameterDict() if name.endswith("theta") else nn.ModuleDict())
        setattr(self, self.other_param_names[0], {})
        self._circuits: dict[str, Any] = {}
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def _part(self, name: str) -> Any:
        return getattr(self, self.adapter_layer_names[["down", "theta", "up"].index(name)])

    def update_layer(self, adapter_name: str, config: VQCConfig) -> None:
        if config.n_qubits > self.in_features:
            raise ValueError(
                f"n_qubits={config.n_qubits} does not fit a layer with {self.in_features} inputs: the down-map "
                "compresses the input onto the qubits, so choose n_qubits <= in_features."
            )
        dtype = resolve_dtype(config.circuit_dtype)
        device = self.get_base_layer().weight.device
        down = nn.Linear(self.in_features, config.n_qubits, bias=config.map_bias, dtype=dtype, device=device)
        up = nn.Linear(config.n_qubits, self.out_features, bias=config.map_bias, dtype=dtype, device=device)
        low, high = ANGLE_INITS[config.angle_init]
        theta = nn.Parameter(torch.empty(config.spec.weight_shape, dtype=dtype, device=device).uniform_(low, high))
        if config.init == "zero_up":
            nn.init.zeros_(up.weight)
            if up.bias is not None:
                nn.init.zeros_(up.bias)
        self._part("down")[adapter_name] = down
        self._part("theta")[adapter_name] = theta
        self._part("up")[adapter_name] = up
        getattr(self, self.other_param_names[0])[adapter_name] = config
        if config.backend == CLASSICAL:
            self._circuits[adapter_name] = classical_twin(config.spec)
        else:
            self._circuits[adapter_name] = make_circuit(config.spec, config.backend, config.device, config.mode)
        self.set_adapter(self.active_adapters)

    def delta(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        config: VQCConfig = getattr(self, self.other_param_names[0])[adapter_name]
        down, up = self._part("down")[adapter_name], self._part("up")[adapter_name]
        theta = self._part("theta")[adapter_name]
        rows = x.reshape(-1, self.in_features).to(theta.dtype)
        z = self._circuits[adapter_name](down(rows), theta)
        return (config.scale * up(z)).reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        for name in self.active_adapters:
            if name in self._part("theta"):
                result = result + self.delta(name, x).to(result.dtype)
        return result

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise TypeError(
            f"A {self.adapter_layer_names[0].split('_')[0]} update is a non-linear function of the input (a quantum "
            "circuit), so it cannot be folded into the weights. Use the adapter as is (PeftModel.from_pretrained)."
        )

    def unmerge(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"{self.adapter_layer_names[0].split('_')[0]}." + super().__repr__()


register_linear_method("vqc", VQCConfig, VQCLinear)


class VQCAdapter(RegisteredMethodAdapter):
    """Hydra face of the vqc PEFT method (conf/adapter/vqc.yaml)."""

    name = "vqc"
    config_cls: type[VQCConfig] = VQCConfig

    def merge(self, model: torch.nn.Module):
        raise TypeError(
            f"adapter={self.name} cannot be merged into the base weights: its update is a non-linear function of the "
            "input. Use the run's artifact/ folder with PeftModel.from_pretrained (after `import quantum_ft.adapters`)."
        )

"""`quanta`: quantum-informed tensor adaptation (Chen et al., NeurIPS 2024, arXiv 2406.00132).

The layer width is factored as N = f_1 x ... x f_D (`per_dim_features`); the zero-padded input is reshaped
to a D-axis tensor and every pair of axes (a, b) gets one dense "two-qudit gate" T_ab of shape
(f_a, f_b, f_a, f_b), applied in the official order ((2,3), (1,3), (0,3), (1,2), (0,2), (0,1) for D = 4).
With M(theta) the product of the gates, the update is

    delta(x) = crop(M(theta) pad(x)) - crop(M(theta_0) pad(x))

with a frozen copy theta_0 of the initial gates: exactly zero at the start (an explicit difference, not a
merged W0 - M(theta_0), which would be zero only up to rounding), generically full rank, and mergeable
(W += crop(M(theta) - M(theta_0))) for export.

Two exact ways to evaluate it, chosen per call: for fewer rows than the layer has inputs, both gate chains run
on the rows; otherwise the chain runs once on the identity to give the dense update
D(theta) - D(theta_0) (D(theta_0) cached: it is frozen), applied as one matrix product. Both differences come
from the same code on equal inputs at the start, so the update is exactly zero there either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn

from quantum_ft.adapters.lora import RegisteredMethodAdapter
from quantum_ft.adapters.peft_registry import init_linear_layer, peft_type, register_linear_method


def gate_pairs(num_axes: int) -> list[tuple[int, int]]:
    """Every unordered pair of axes, in the order the official implementation applies them."""
    return [(a, b) for b in range(num_axes - 1, 0, -1) for a in range(b - 1, -1, -1)]


def apply_gates(x: torch.Tensor, gates: list[torch.Tensor], dims: list[int], keep: int | None = None) -> torch.Tensor:
    """M(gates) applied to rows of x [rows, prod(dims)]; each gate is (f_a f_b) x (f_a f_b) (out, in).

    With `keep`, only the first `keep` outputs are wanted: the last gate acts on axes (0, 1), so it computes only
    the output rows whose axis-0 index can reach them (e.g. 9 of 16 for a 576-wide crop of 1024), and the result
    has at least `keep` columns (crop it)."""
    rows = x.shape[0]
    t = x.reshape(rows, *dims)
    pairs = gate_pairs(len(dims))
    for i, ((a, b), gate) in enumerate(zip(pairs, gates)):
        if keep is not None and i == len(pairs) - 1:  # (a, b) == (0, 1)
            needed = -(-keep // (math.prod(dims) // dims[0]))
            gate = gate[: needed * dims[1]]
        moved = t.movedim((a + 1, b + 1), (-2, -1))
        shape = list(moved.shape)
        out = moved.reshape(-1, dims[a] * dims[b]) @ gate.T
        shape[-2] = out.shape[-1] // dims[b]
        t = out.reshape(shape).movedim((-2, -1), (a + 1, b + 1))
    return t.reshape(rows, -1)


def num_parameters(dims: list[int]) -> int:
    return sum((dims[a] * dims[b]) ** 2 for a, b in gate_pairs(len(dims)))


@dataclass
class QuanTAConfig(PeftConfig):
    per_dim_features: list[int] = field(default_factory=lambda: [16, 8, 4, 2], metadata={"help": "axis sizes"})
    q_d: int | None = field(
        default=None, metadata={"help": "number of axes (the pyvqnet demo's q_d); = len(per_dim_features)"}
    )
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "modules to adapt"})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "extra modules to train"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = peft_type("quanta")
        self.per_dim_features = [int(f) for f in self.per_dim_features]
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if len(self.per_dim_features) < 2 or min(self.per_dim_features) < 1:
            raise ValueError(f"quanta per_dim_features={self.per_dim_features}: need at least two factors >= 1.")
        if self.q_d is not None and self.q_d != len(self.per_dim_features):
            raise ValueError(
                f"quanta q_d={self.q_d} disagrees with per_dim_features={self.per_dim_features} "
                f"({len(self.per_dim_features)} factors); set q_d to the number of factors or leave it null."
            )


class QuanTALinear(nn.Module, BaseTunerLayer):
    adapter_layer_names = ("quanta_gates",)
    other_param_names = ("quanta_frozen", "quanta_dims")

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: QuanTAConfig, **kwargs: Any) -> None:
        super().__init__()
        init_linear_layer(self, base_layer, "quanta", **kwargs)
        self.quanta_gates = nn.ModuleDict()
        self.quanta_frozen = nn.ModuleDict()  # theta_0, saved with the adapter: the update depends on it
        self.quanta_dims: dict[str, list[int]] = {}
        self._frozen_dense_cache: dict[str, tuple[Any, torch.Tensor]] = {}
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: QuanTAConfig) -> None:
        dims = config.per_dim_features
        width = math.prod(dims)
        if width < max(self.in_features, self.out_features):
            raise ValueError(
                f"quanta per_dim_features={dims} multiply to {width}, smaller than this layer "
                f"({self.in_features} -> {self.out_features}); choose factors whose product is >= "
                f"{max(self.in_features, self.out_features)}."
            )
        weight = self.get_base_layer().weight
        gates, frozen = nn.ParameterList(), nn.Module()
        for i, (a, b) in enumerate(gate_pairs(len(dims))):
            size = dims[a] * dims[b]
            gate = torch.empty(size, size, dtype=torch.float32, device=weight.device)
            nn.init.kaiming_uniform_(gate, a=math.sqrt(5))
            gates.append(nn.Parameter(gate))
            frozen.register_buffer(f"g{i}", gate.clone())
        self.quanta_gates[adapter_name] = gates
        self.quanta_frozen[adapter_name] = frozen
        self.quanta_dims[adapter_name] = dims
        self.set_adapter(self.active_adapters)

    def _frozen(self, adapter_name: str) -> list[torch.Tensor]:
        module = self.quanta_frozen[adapter_name]
        return [getattr(module, f"g{i}") for i in range(len(self.quanta_gates[adapter_name]))]

    def _map(self, adapter_name: str, rows: torch.Tensor, gates: list[torch.Tensor]) -> torch.Tensor:
        """crop(M(gates) pad(rows)): [rows, out]."""
        dims = self.quanta_dims[adapter_name]
        padded = nn.functional.pad(rows, (0, math.prod(dims) - self.in_features))
        return apply_gates(padded, gates, dims, keep=self.out_features)[:, : self.out_features]

    def _dense(self, adapter_name: str, gates: list[torch.Tensor]) -> torch.Tensor:
        """crop(M(gates)) as a matrix [out, in]."""
        eye = torch.eye(self.in_features, device=gates[0].device, dtype=gates[0].dtype)
        return self._map(adapter_name, eye, gates).T

    def _frozen_dense(self, adapter_name: str) -> torch.Tensor:
        frozen = self._frozen(adapter_name)
        key = tuple((g.data_ptr(), g._version, g.dtype, g.device) for g in frozen)  # changes when theta_0 is loaded
        cached = self._frozen_dense_cache.get(adapter_name)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, self._dense(adapter_name, frozen))
            self._frozen_dense_cache[adapter_name] = cached
        return cached[1]

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The dense update D(theta) - D(theta_0), [out, in]."""
        return self._dense(adapter_name, list(self.quanta_gates[adapter_name])) - self._frozen_dense(adapter_name)

    def delta(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        gates = list(self.quanta_gates[adapter_name])
        rows = x.reshape(-1, self.in_features).to(gates[0].dtype)
        if rows.shape[0] >= self.in_features:  # cheaper: one chain on the identity, one matrix product
            out = rows @ self.get_delta_weight(adapter_name).T
        else:
            out = self._map(adapter_name, rows, gates) - self._map(adapter_name, rows, self._frozen(adapter_name))
        return out.reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters or self.merged:
            return result
        for name in self.active_adapters:
            if name in self.quanta_gates:
                result = result + self.delta(name, x).to(result.dtype)
        return result

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        for name in check_adapters_to_merge(self, adapter_names):
            if name not in self.quanta_gates:
                continue
            weight = self.get_base_layer().weight
            merged = weight.data + self.get_delta_weight(name).to(weight.dtype)
            if safe_merge and not torch.isfinite(merged).all():
                raise ValueError(f"NaNs in the merged weights of adapter {name}.")
            weight.data = merged
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            weight = self.get_base_layer().weight
            weight.data = weight.data - self.get_delta_weight(name).to(weight.dtype)

    def __repr__(self) -> str:
        return "quanta." + super().__repr__()


register_linear_method("quanta", QuanTAConfig, QuanTALinear)


class QuanTAAdapter(RegisteredMethodAdapter):
    """Hydra face of the quanta PEFT method (conf/adapter/quanta.yaml)."""

    name = "quanta"
    config_cls = QuanTAConfig


__all__ = ["QuanTAAdapter", "QuanTAConfig", "QuanTALinear", "apply_gates", "gate_pairs"]

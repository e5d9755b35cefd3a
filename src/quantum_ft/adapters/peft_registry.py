"""Make our adapters first-class PEFT methods (get_peft_model, save_pretrained, PeftModel.from_pretrained).

peft 0.21's `register_peft_method` only accepts names that are members of its closed enum `PeftType`, so we
add members at import time. This touches PEFT internals: it lives here alone, the peft range is pinned in
pyproject.toml, and the save / from_pretrained round trips are tested so that an upgrade that breaks it fails
loudly. Plain PEFT users must `import quantum_ft.adapters` before `PeftModel.from_pretrained`.
"""

from __future__ import annotations

from typing import Any

from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import PeftType, register_peft_method
from torch import nn


def peft_type(name: str) -> PeftType:
    """The PeftType member for `name`, created if PEFT does not know it."""
    key = name.upper()
    if key in PeftType.__members__:
        return PeftType[key]
    member = str.__new__(PeftType, key)
    member._name_ = key
    member._value_ = key
    type.__setattr__(PeftType, key, member)  # before the member map, which forbids re-assignment
    PeftType._member_map_[key] = member
    PeftType._value2member_map_[key] = member
    PeftType._member_names_.append(key)
    return member


def register_linear_method(name: str, config_cls: type, layer_cls: type) -> type:
    """Register (once) the PEFT method `name` whose tuner wraps each targeted nn.Linear in `layer_cls`; its
    parameters carry the prefix `name_`. Returns the tuner class."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    member = peft_type(name)
    existing = PEFT_TYPE_TO_TUNER_MAPPING.get(member)
    if existing is not None and existing.tuner_layer_cls is layer_cls:
        return existing
    tuner = type(f"{layer_cls.__name__}Tuner", (LinearTuner,), {"prefix": f"{name}_", "tuner_layer_cls": layer_cls})
    register_peft_method(name=name, config_cls=config_cls, model_cls=tuner)
    return tuner


class LinearTuner(BaseTuner):
    """A PEFT tuner that wraps each targeted nn.Linear in `tuner_layer_cls` (shared by vqc, tq and quanta)."""

    target_module_mapping: dict[str, list[str]] = {}

    def _create_and_replace(self, config, adapter_name, target, target_name, parent, current_key, **kwargs) -> None:
        if isinstance(target, self.tuner_layer_cls):
            target.update_layer(adapter_name, config)
            return
        new_module = self.tuner_layer_cls(target, adapter_name, config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)


def init_linear_layer(layer: BaseTunerLayer, base_layer: nn.Module, method: str, **kwargs: Any) -> None:
    """The bookkeeping every BaseTunerLayer needs, and the check that it wraps a Linear."""
    layer.base_layer = base_layer
    layer._disable_adapters = False
    layer.merged_adapters = []
    layer.kwargs = kwargs
    base = layer.get_base_layer()
    if not isinstance(base, nn.Linear):
        raise TypeError(f"{method} adapts nn.Linear layers, got {type(base).__name__}.")
    layer.in_features, layer.out_features = base.in_features, base.out_features

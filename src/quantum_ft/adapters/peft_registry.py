"""Make our adapters first-class PEFT methods (get_peft_model, save_pretrained, PeftModel.from_pretrained).

peft 0.21's `register_peft_method` only accepts names that are members of its closed enum `PeftType`, so we
add members at import time. This touches PEFT internals: it lives here alone, the peft range is pinned in
pyproject.toml, and the save / from_pretrained round trips are tested so that an upgrade that breaks it fails
loudly. Plain PEFT users must `import quantum_ft.adapters` before `PeftModel.from_pretrained`.
"""

from __future__ import annotations

from peft.utils import PeftType, register_peft_method


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


def register(name: str, config_cls: type, model_cls: type) -> None:
    """Idempotent registration of a PEFT method under lower-case `name` with parameter prefix `name_`."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    member = peft_type(name)
    if PEFT_TYPE_TO_TUNER_MAPPING.get(member) is model_cls:
        return
    register_peft_method(name=name, config_cls=config_cls, model_cls=model_cls)

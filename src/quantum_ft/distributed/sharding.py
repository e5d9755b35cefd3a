"""Sharded data parallel: which modules FSDP wraps, chosen without knowing the model in advance.

The trainer (and its strategy) is built from the config before the model is loaded, so the wrap policy cannot be a
fixed set of classes. Hugging Face models name their transformer block classes in `_no_split_modules`; FSDP asks the
policy about a module before its children, so the policy learns those names at the model and then wraps every block
(Agent-Q's TRANSFORMER_BASED_WRAP, for any model we load).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

FSDP_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


class TransformerBlockPolicy:
    """FSDP auto-wrap policy: one FSDP unit per transformer block (plus the root)."""

    def __init__(self, block_names: Iterable[str] = ()) -> None:
        self.block_names = set(block_names)

    def __call__(self, module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
        self.block_names.update(getattr(module, "_no_split_modules", None) or ())
        if recurse:
            return True  # look inside every module
        return type(module).__name__ in self.block_names


def clean_parameter_name(name: str) -> str:
    """A parameter's name as in an unwrapped model (FSDP with use_orig_params inserts wrapper prefixes)."""
    for prefix in FSDP_PREFIXES:
        name = name.replace(prefix, "")
    return name

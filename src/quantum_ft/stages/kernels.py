"""Liger's Triton kernels (RoPE, RMSNorm, SwiGLU; the fused linear cross-entropy when the stage's own fused loss is
off) patched into the model for CUDA training, the way TRL's `use_liger_kernel` does.

`stage.use_liger_kernel`: `auto` (the default) patches when the run trains on CUDA and `liger-kernel` is installed,
`true` demands both (a clear error otherwise), `false` never patches. Not exact to the bit (fused kernels round
differently), which is why `auto` leaves CPU runs and machines without the package alone. Left out: a check that the
patched model matches the unpatched one, which needs a GPU (none in CI).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import torch

from quantum_ft.utils.config import ConfigError

log = logging.getLogger(__name__)


def liger_decision(setting: Any, device: torch.device) -> tuple[bool, str]:
    """(patch?, why) for `stage.use_liger_kernel` on `device`; raises ConfigError where `true` cannot be met."""
    mode = str(setting).lower()
    if mode not in {"auto", "true", "false"}:
        raise ConfigError(f"stage.use_liger_kernel={setting}: choose auto, true or false.")
    if mode == "false":
        return False, "stage.use_liger_kernel=false"
    installed = importlib.util.find_spec("liger_kernel") is not None
    problems = []
    if device.type != "cuda":
        problems.append(f"it trains on {device.type}, and Liger's kernels are Triton kernels for CUDA")
    if not installed:
        problems.append("liger-kernel is not installed (pip install liger-kernel)")
    if not problems:
        return True, f"CUDA and liger-kernel present (stage.use_liger_kernel={mode})"
    if mode == "true":
        raise ConfigError(
            "stage.use_liger_kernel=true cannot be met: " + "; ".join(problems) + ". Set stage.use_liger_kernel=auto"
            " (patch where it can) or false."
        )
    return False, "; ".join(problems)


def apply_liger(model: torch.nn.Module, fused_loss: bool) -> None:
    """Patch the base model of `model` (a PEFT model or a plain one) in place."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    # our fused loss calls the decoder and the head itself; without it, Liger's fused head replaces the model's
    _apply_liger_kernel_to_instance(
        model=base,
        rope=True,
        rms_norm=True,
        swiglu=True,
        cross_entropy=False,
        fused_linear_cross_entropy=not fused_loss,
    )

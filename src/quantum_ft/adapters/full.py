"""Full fine-tuning: every weight is trained; the artifact is a complete model."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from quantum_ft.adapters.base import Adapter


class FullFineTune(Adapter):
    name = "none"

    def apply(self, model: PreTrainedModel) -> torch.nn.Module:
        model.requires_grad_(True)
        return model

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        model.save_pretrained(directory)

    def load(self, base: PreTrainedModel, directory: Path, trainable: bool = False) -> torch.nn.Module:
        return AutoModelForCausalLM.from_pretrained(directory, dtype=base.dtype).requires_grad_(trainable)

"""The contract between an adapter config (quantum_ft/conf/adapter/) and everything that builds, trains, saves and
reloads a model: models.build_model, the stages, artifacts, export and chat."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel


class Adapter(ABC):
    """Turns a base model into the model that is trained, and saves what was trained.

    A new adapter type (vqc, quanTA, ...) is a subclass in its own module plus one YAML file in
    quantum_ft/conf/adapter/; nothing else needs to know it exists.
    """

    name: str = "adapter"
    requires_cuda: bool = False

    def quantization_config(self) -> Any | None:
        """A transformers quantisation config the base model must be loaded with (QLoRA), or None."""
        return None

    @abstractmethod
    def apply(self, model: PreTrainedModel) -> torch.nn.Module:
        """Wrap/modify `model`; afterwards exactly the parameters to train have requires_grad=True."""

    @abstractmethod
    def save(self, model: torch.nn.Module, directory: Path) -> None:
        """Write what was trained in a format Hugging Face tools load (PEFT adapter or full model)."""

    @abstractmethod
    def load(self, base: PreTrainedModel, directory: Path, trainable: bool = False) -> torch.nn.Module:
        """Rebuild the trained model from a base model and `save`'s output; `trainable` to train it further
        (init_from: SFT then GRPO), with exactly the parameters `apply` would train."""

    def merge(self, model: torch.nn.Module) -> PreTrainedModel:
        """A plain transformers model with the update folded into the weights (for export)."""
        return model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total), counting each shared tensor once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1)  # bnb packs two 4-bit values a byte
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total

"""LoRA (peft) and QLoRA: LoRA on a base model quantised to 4-bit NF4 by bitsandbytes on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import PreTrainedModel

from quantum_ft.adapters.base import Adapter
from quantum_ft.utils.dtypes import resolve_dtype


class PeftAdapter(Adapter):
    """Shared by every adapter that is a registered PEFT method: save/load/merge are PEFT's own."""

    def peft_config(self) -> Any:
        raise TypeError(f"{type(self).__name__} must define peft_config()")

    def prepare(self, model: PreTrainedModel) -> PreTrainedModel:
        """What the base needs before an adapter is trained on it (QLoRA: k-bit preparation)."""
        return model

    def apply(self, model: PreTrainedModel) -> torch.nn.Module:
        return get_peft_model(self.prepare(model), self.peft_config())

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        model.save_pretrained(directory)

    def load(self, base: PreTrainedModel, directory: Path, trainable: bool = False) -> torch.nn.Module:
        return PeftModel.from_pretrained(self.prepare(base) if trainable else base, directory, is_trainable=trainable)

    def merge(self, model: torch.nn.Module) -> PreTrainedModel:
        return model.merge_and_unload()


class RegisteredMethodAdapter(PeftAdapter):
    """Hydra face of a PEFT method registered by this package (vqc, tq, quanta): the yaml's settings are its
    PeftConfig's fields, checked when the adapter is built, before the model loads."""

    config_cls: type

    def __init__(self, target_modules: list[str] | str = ("q_proj", "v_proj"), **settings: Any) -> None:
        self.target_modules = target_modules if isinstance(target_modules, str) else list(target_modules)
        self.settings = settings
        self.peft_config()

    def peft_config(self) -> Any:
        return self.config_cls(task_type="CAUSAL_LM", target_modules=self.target_modules, **self.settings)


class LoraAdapter(PeftAdapter):
    name = "lora"

    def __init__(
        self,
        r: int = 8,
        alpha: int = 16,
        dropout: float = 0.05,
        target_modules: list[str] | str = ("q_proj", "v_proj"),
        bias: str = "none",
        modules_to_save: list[str] | None = None,
    ) -> None:
        self.r, self.alpha, self.dropout = r, alpha, dropout
        self.target_modules = target_modules if isinstance(target_modules, str) else list(target_modules)
        self.bias = bias
        self.modules_to_save = list(modules_to_save) if modules_to_save else None

    def peft_config(self) -> LoraConfig:
        return LoraConfig(
            task_type="CAUSAL_LM",
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            bias=self.bias,
            modules_to_save=self.modules_to_save,
        )


class QLoraAdapter(LoraAdapter):
    """LoRA on a 4-bit base. bitsandbytes' CPU backend quantises and runs it on CPU too (slowly)."""

    name = "qlora"

    def __init__(
        self,
        quant_type: str = "nf4",
        double_quant: bool = True,
        compute_dtype: str = "bfloat16",
        **lora: Any,
    ) -> None:
        super().__init__(**lora)
        if quant_type not in {"nf4", "fp4"}:
            raise ValueError(f"adapter.quant_type must be nf4 or fp4, got {quant_type!r}.")
        self.quant_type, self.double_quant = quant_type, double_quant
        self.compute_dtype = resolve_dtype(compute_dtype)

    def quantization_config(self) -> Any:
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.quant_type,
            bnb_4bit_use_double_quant=self.double_quant,
            bnb_4bit_compute_dtype=self.compute_dtype,
        )

    def prepare(self, model: PreTrainedModel) -> PreTrainedModel:
        # Casts norms to fp32 and freezes the base; gradient checkpointing stays the stage's decision.
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)

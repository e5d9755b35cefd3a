"""The interface every model source implements, and the loading options they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from quantum_ft.utils.dtypes import resolve_dtype


class ModelUnavailableError(RuntimeError):
    """A configured model cannot be loaded here (not cached offline, missing package, bad path)."""


class ModelSource(ABC):
    """Knows where a model's weights and tokenizer come from; `describe()` is what artifacts record."""

    name: str
    dtype: str = "float32"

    @abstractmethod
    def load_tokenizer(self) -> PreTrainedTokenizerBase: ...

    @abstractmethod
    def load_model(self, quantization_config: Any | None = None) -> PreTrainedModel:
        """The base model, optionally quantised on load (QLoRA)."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able reference to the base model, written into every final artifact."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
        }


class PretrainedSource(ModelSource):
    """A model that `from_pretrained` reads from a directory or hub id."""

    @abstractmethod
    def pretrained_dir(self) -> str:
        """A directory (or hub id) that `from_pretrained` reads; converted/cached first if needed."""

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        return {}

    def load_model(self, quantization_config: Any | None = None) -> PreTrainedModel:
        from transformers import AutoModelForCausalLM

        kwargs = dict(self.from_pretrained_kwargs())
        kwargs["dtype"] = resolve_dtype(self.dtype)
        if quantization_config is not None:
            kwargs["quantization_config"] = quantization_config
        return AutoModelForCausalLM.from_pretrained(self.pretrained_dir(), **kwargs)


def build_seeded(factory: Any, seed: int) -> Any:
    """`factory()` under a fixed seed, leaving the global RNG untouched: same seed, same initial weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory()


def finish_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Training pads on the right, generation pads on the left; both need a pad token."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer

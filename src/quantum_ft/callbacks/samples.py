"""Print a few greedy generations after each validation: a loss number says less than an answer."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


@torch.no_grad()
def generate_replies(model: torch.nn.Module, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy replies to single-turn user prompts, batched with left padding."""
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    device = next(p.device for p in model.parameters())
    enc = {k: v.to(device) for k, v in enc.items()}
    was_training = model.training
    model.eval()
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    model.train(was_training)
    return [tokenizer.decode(row[enc["input_ids"].shape[1] :], skip_special_tokens=True).strip() for row in out]


class SampleGenerations(L.Callback):
    def __init__(self, prompts: list[str], max_new_tokens: int = 48, output_file: str | None = None) -> None:
        self.prompts = list(prompts)
        self.max_new_tokens = max_new_tokens
        self.output_file = Path(output_file) if output_file else None

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.prompts:
            return
        replies = generate_replies(pl_module.model, pl_module.tokenizer, self.prompts, self.max_new_tokens)
        lines = [f"--- sample generations at step {trainer.global_step} ---"]
        lines += [f"  Q: {p}\n  A: {r}" for p, r in zip(self.prompts, replies)]
        text = "\n".join(lines)
        print(text, flush=True)
        if self.output_file:
            self.output_file.parent.mkdir(parents=True, exist_ok=True)
            with self.output_file.open("a", encoding="utf-8") as f:
                f.write(text + "\n")

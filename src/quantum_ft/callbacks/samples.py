"""Print a few greedy generations after each validation: a loss number says less than an answer."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from quantum_ft.utils.text import reply_texts

log = logging.getLogger(__name__)


class SampleGenerations(L.Callback):
    """Chat models get the prompts in their chat template, plain ones the prompt text; a model whose tokenizer is
    not a Hugging Face one (NanoGPT's character or byte vocabulary) is skipped with one warning."""

    def __init__(self, prompts: list[str], max_new_tokens: int = 48, output_file: str | None = None) -> None:
        self.prompts = list(prompts)
        self.max_new_tokens = max_new_tokens
        self.output_file = Path(output_file) if output_file else None
        self._unsupported = False

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.prompts or self._unsupported:
            return
        tokenizer = pl_module.tokenizer
        if not callable(tokenizer) or not hasattr(pl_module.model, "generate"):
            self._unsupported = True
            log.warning("Sample generations skipped: %s is not a Hugging Face tokenizer.", type(tokenizer).__name__)
            return
        replies = reply_texts(pl_module.model, tokenizer, self.prompts, self.max_new_tokens)
        lines = [f"--- sample generations at step {trainer.global_step} ---"]
        lines += [f"  Q: {p}\n  A: {r}" for p, r in zip(self.prompts, replies)]
        text = "\n".join(lines)
        print(text, flush=True)
        if self.output_file:
            self.output_file.parent.mkdir(parents=True, exist_ok=True)
            with self.output_file.open("a", encoding="utf-8") as f:
                f.write(text + "\n")

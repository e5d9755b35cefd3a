"""Prompts for reinforcement learning: chat-rendered prompt ids plus every other field of the record, which the
reward functions receive as keyword columns (a reference answer, a graph, a Hamiltonian, ...)."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from quantum_ft.data.formats import DataFormatError, to_messages
from quantum_ft.data.records import DatasetSpec, RecordsDataModule, weighted
from quantum_ft.utils.config import ConfigError
from quantum_ft.utils.text import pad_with_mask, render_prompt

log = logging.getLogger(__name__)


@dataclass
class Prompt:
    input_ids: list[int]
    text: str  # the user's last message, what reward functions and logs show
    columns: dict[str, Any] = field(default_factory=dict)


def prompt_messages(record: dict[str, Any], fmt: str = "auto") -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(messages up to the last user turn, columns). A record is {"prompt": text or messages, ...} or any SFT
    format; a trailing assistant reply is not part of the prompt but becomes the column `reference`."""
    columns = {k: v for k, v in record.items() if k not in {"prompt", "messages", "conversations"}}
    if "prompt" in record:
        prompt = record["prompt"]
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt):
            messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
        else:
            raise DataFormatError(f"'prompt' must be a string or a list of chat messages, got {prompt!r}.")
    else:
        record = {"output": "", **record} if "instruction" in record else record
        messages = to_messages(record, fmt)
        if messages[-1]["role"] == "assistant":
            if messages[-1]["content"]:
                columns["reference"] = messages[-1]["content"]
            messages = messages[:-1]
    if not messages or messages[-1]["role"] != "user":
        raise DataFormatError("a prompt must end with a user message (the turn the policy answers).")
    return messages, columns


class PromptDataModule(RecordsDataModule):
    """Batches of `batch_size` prompts; the stage samples `group_size` completions of each. A GRPO stage that
    reuses rollouts (reuse_batches) gets generation batches of `batch_size * steps_per_generation` prompts, each
    handed out once per optimiser step it feeds."""

    steps_per_generation: int = 1
    num_iterations: int = 1

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        datasets: list[dict[str, Any]],
        system: str | None = None,
        prompt_len: int = 512,
        **records: Any,
    ) -> None:
        records.setdefault("batch_size", 2)
        super().__init__(tokenizer, datasets, **records)
        self.system = system
        self.prompt_len = prompt_len
        self.stats = PromptStats()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set:
            return
        rng = random.Random(self.seed)
        prompts: list[Prompt] = []
        for spec in self.specs:
            kept = self._prompts(spec)
            prompts += weighted(kept, spec.weight, rng)  # datasets mix by weight, as for SFT
        held_out = [p for spec in self.val_specs for p in self._prompts(spec)] if self.val_specs else None
        if self.stats.too_long:
            log.warning("%d prompts longer than prompt_len=%d were left out.", self.stats.too_long, self.prompt_len)
        rng.shuffle(prompts)
        self.train_set, self.val_set = self.split(prompts, held_out)
        self.stats.train_prompts, self.stats.val_prompts = len(self.train_set), len(self.val_set)

    def reuse_batches(self, steps_per_generation: int, num_iterations: int) -> None:
        """Generation batches for `steps_per_generation` optimiser steps, each gone over `num_iterations`
        times; the last, smaller generation batch of an epoch is dropped when it would split unevenly."""
        self.steps_per_generation, self.num_iterations = steps_per_generation, num_iterations
        needed = self.batch_size * steps_per_generation
        if self.train_set and len(self.train_set) < needed:
            raise ConfigError(
                f"a generation batch is data.batch_size * stage.steps_per_generation = {needed} prompts, but the "
                f"training set has {len(self.train_set)}: lower one of them or add prompts."
            )

    def train_dataloader(self) -> DataLoader:
        size, steps = self.batch_size * self.steps_per_generation, self.steps_per_generation
        sampler = self.train_sampler(
            len(self.train_set), size, drop_last=self.drop_last or steps > 1, repeats=steps * self.num_iterations
        )
        return self._loader(self.train_set, sampler)

    def _prompts(self, spec: DatasetSpec) -> list[Prompt]:
        raw = self.records(spec)
        kept: list[Prompt] = []
        for origin, record in raw:
            try:
                messages, columns = prompt_messages(record, spec.format)
            except (DataFormatError, KeyError, TypeError) as e:
                raise DataFormatError(f"{origin}: {e}") from e
            if self.system and messages[0]["role"] != "system":
                messages = [{"role": "system", "content": self.system}, *messages]
            ids = self.tokenizer(render_prompt(self.tokenizer, messages), add_special_tokens=False)["input_ids"]
            if len(ids) > self.prompt_len:
                self.stats.too_long += 1  # a cut prompt asks another question: leave it out
                continue
            kept.append(Prompt(ids, messages[-1]["content"], columns))
        self.stats.records[spec.label] = len(raw)
        return kept

    def collate(self, prompts: list[Prompt]) -> dict[str, Any]:
        """Left padding, so that every prompt ends where generation starts; the records' other fields ride along
        as columns for the reward functions."""
        ids, mask = pad_with_mask([p.input_ids for p in prompts], self.tokenizer.pad_token_id, side="left")
        names = sorted({k for p in prompts for k in p.columns})
        columns = {k: [p.columns.get(k) for p in prompts] for k in names}
        return {"input_ids": ids, "attention_mask": mask, "prompts": [p.text for p in prompts], "columns": columns}


@dataclass
class PromptStats:
    records: dict[str, int] = field(default_factory=dict)
    too_long: int = 0
    train_prompts: int = 0
    val_prompts: int = 0

    def table(self) -> str:
        rows = [f"  {name}: {n} records" for name, n in self.records.items()]
        rows.append(f"  prompts: {self.train_prompts} train / {self.val_prompts} val, {self.too_long} too long")
        return "\n".join(rows)

"""A GRPO rollout engine whose completions depend only on the prompt and the policy's weights: each prompt is sampled
on its own, unpadded, from a seed made of its text. The stage's own sampling seeds every slice from the step's
stream, which differs between one process and the ranks of a data-parallel run; with this engine both see the same
rollouts for the same global batch, so their updates can be compared exactly. Used as
`+stage.rollout._target_=tests.helpers.rollouts.PromptSeededRollouts`."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import torch

from quantum_ft.rollout import sample_completions


class PromptSeededRollouts:
    weight_bytes = 0  # nothing travels: the policy is the trainer's own

    def generate(
        self, model: torch.nn.Module, slices: list[dict[str, Any]], seeds: list[int], settings: dict[str, Any]
    ) -> Iterator[tuple[int, torch.Tensor]]:
        width, pad = settings["max_new_tokens"], settings["pad_token_id"]
        for j, part in enumerate(slices):
            rows = []
            for i, text in enumerate(part["prompts"]):
                keep = part["attention_mask"][i].bool()
                prompt = {
                    "input_ids": part["input_ids"][i][keep][None],
                    "attention_mask": part["attention_mask"][i][keep][None],
                }
                completion = sample_completions(model, prompt, seed=zlib.crc32(text.encode()), **settings)
                rows.append(torch.nn.functional.pad(completion, (0, width - completion.shape[1]), value=pad))
            yield j, torch.cat(rows)

    def close(self) -> None:
        pass

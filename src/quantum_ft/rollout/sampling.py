"""One slice of GRPO rollouts: `samples` completions per prompt from a seed of its own, so that the trainer's
process and a rollout actor holding the same weights draw the same tokens."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from quantum_ft.utils.modes import evaluating


@torch.no_grad()
def sample_completions(
    model: torch.nn.Module,
    prompts: dict[str, torch.Tensor],
    samples: int,
    max_new_tokens: int,
    pad_token_id: int,
    sampling: dict[str, Any],
    seed: int | None = None,
) -> torch.Tensor:
    """(prompts x samples, new tokens) completion ids, prompt-major, left-padded prompts cut off. `seed` gives the
    sampling a stream of its own and leaves the caller's untouched (None: draw from the caller's stream)."""
    device = prompts["input_ids"].device
    own_stream = (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        if seed is not None
        else contextlib.nullcontext()
    )
    with own_stream, evaluating(model):
        if seed is not None:
            torch.manual_seed(seed)
        sequences = model.generate(
            input_ids=prompts["input_ids"],
            attention_mask=prompts["attention_mask"],
            max_new_tokens=max_new_tokens,
            num_return_sequences=samples,
            pad_token_id=pad_token_id,
            use_cache=True,  # gradient checkpointing turns the config's cache off; generation wants it
            **sampling,
        )
    return sequences[:, prompts["input_ids"].shape[1] :]

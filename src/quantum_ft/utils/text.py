"""Prompts as the model sees them, padding to a batch, and greedy replies: shared by sampling callbacks, chat,
evaluation, GRPO and the data modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from quantum_ft.utils.modes import evaluating

Messages = list[dict[str, str]]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, messages: Messages | str, generation_prompt: bool = True) -> str:
    """The text of `messages` in the tokenizer's chat template, ending where the assistant starts when
    `generation_prompt`. A tokenizer without a template gets the plain text of the messages."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return "\n".join(m["content"] for m in messages)


def pad(sequences: Sequence[Sequence[int]], value: int, side: str = "right", width: int | None = None) -> torch.Tensor:
    """A [rows, width] long tensor of the sequences padded with `value` on the `side` ("right" or "left")."""
    width = width or max(map(len, sequences))
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            if side == "left":
                out[row, width - len(seq) :] = torch.as_tensor(seq)
            else:
                out[row, : len(seq)] = torch.as_tensor(seq)
    return out


def pad_with_mask(
    sequences: Sequence[Sequence[int]], value: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of the padded sequences: the mask is 1 on real tokens."""
    return pad(sequences, value, side), pad([[1] * len(s) for s in sequences], 0, side)


@torch.no_grad()
def greedy_generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    streamer: Any = None,
) -> list[list[int]]:
    """Greedy continuations (new token ids only) of token-id prompts, batched with left padding, in eval mode;
    a transformers streamer (one prompt) prints the reply as it is generated."""
    device = next(model.parameters()).device
    ids, mask = pad_with_mask(prompts, tokenizer.pad_token_id, side="left")
    with evaluating(model):
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            streamer=streamer,
        )
    return [row.tolist() for row in out[:, ids.shape[1] :]]


def reply_texts(
    model: torch.nn.Module, tokenizer: Any, prompts: list[Messages | str], max_new_tokens: int
) -> list[str]:
    """Greedy replies to chat prompts, decoded without special tokens."""
    encoded = [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False).input_ids for p in prompts]
    return [
        tokenizer.decode(ids, skip_special_tokens=True).strip()
        for ids in greedy_generate(model, tokenizer, encoded, max_new_tokens)
    ]

"""Render chat messages with the tokenizer's own chat template and mark which tokens carry loss.

Each assistant turn is located by rendering the conversation up to that turn twice, with and without it: the
tokens in between (the reply and its end-of-turn marker) are trained, everything else gets label -100 unless
`train_on_inputs` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from quantum_ft.data.formats import DataFormatError, Messages
from quantum_ft.utils.text import render_prompt

IGNORE_INDEX = -100
# A packed batch's real tokens per row (it carries no attention mask to count them by); bookkeeping for throughput,
# taken off the batch by the stage before the batch reaches the model.
TOKEN_COUNTS = "token_counts"


@dataclass
class Encoded:
    """One training sequence. `position_ids` is set on packed sequences only: positions restart at 0 for every
    sample packed into it, which is what keeps attention inside each sample (see data/sft.py: pack)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool
    position_ids: list[int] | None = None


def _render(tokenizer: PreTrainedTokenizerBase, messages: Messages, generation_prompt: bool) -> list[int]:
    return tokenizer(render_prompt(tokenizer, messages, generation_prompt), add_special_tokens=False)["input_ids"]


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, cutoff_len: int, train_on_inputs: bool = False
) -> Encoded:
    input_ids: list[int] = []
    labels: list[int] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        full = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if prompt[: len(input_ids)] != input_ids or full[: len(prompt)] != prompt:
            raise DataFormatError(
                "The chat template does not render conversations incrementally (a prefix changed when a turn "
                "was added), so assistant tokens cannot be located. Use a template that does."
            )
        new_prompt = prompt[len(input_ids) :]
        reply = full[len(prompt) :]
        input_ids += new_prompt + reply
        labels += (new_prompt if train_on_inputs else [IGNORE_INDEX] * len(new_prompt)) + reply
    truncated = len(input_ids) > cutoff_len
    return Encoded(input_ids[:cutoff_len], labels[:cutoff_len], truncated)

"""Held-out perplexity and ROUGE of generated answers (the Llama-3.2 QLoRA trainer's evaluation), on a configured
dataset's validation split."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

import torch
from tqdm.auto import tqdm

from quantum_ft.data.encode import IGNORE_INDEX, Encoded
from quantum_ft.utils.modes import evaluating
from quantum_ft.utils.text import greedy_generate


@torch.no_grad()
def perplexity(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], progress: bool = True) -> dict:
    """exp(mean next-token NLL over every labelled token): the tokens the model was trained to produce."""
    device = next(model.parameters()).device
    nll, tokens = 0.0, 0
    with evaluating(model):
        for batch in tqdm(batches, desc="perplexity", disable=not progress, unit="batch"):
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits.float()
            labels = batch["labels"][:, 1:]
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            nll += float(losses)
            tokens += int((labels != IGNORE_INDEX).sum())
    mean = nll / tokens if tokens else float("nan")
    return {"perplexity": math.exp(mean) if tokens else float("nan"), "nll": mean, "tokens": tokens}


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenisation: lower case, anything but letters and digits separates."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _f1(overlap: int, predicted: int, reference: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / reference
    return 2 * precision * recall / (precision + recall)


def rouge_n(prediction: list[str], reference: list[str], n: int) -> float:
    grams = [Counter(tuple(t[i : i + n]) for i in range(len(t) - n + 1)) for t in (prediction, reference)]
    overlap = sum((grams[0] & grams[1]).values())
    return _f1(overlap, sum(grams[0].values()), sum(grams[1].values()))


def rouge_l(prediction: list[str], reference: list[str]) -> float:
    """F1 of the longest common subsequence."""
    previous = [0] * (len(reference) + 1)
    for p in prediction:
        current = [0]
        for j, r in enumerate(reference):
            current.append(previous[j] + 1 if p == r else max(previous[j + 1], current[j]))
        previous = current
    return _f1(previous[-1], len(prediction), len(reference))


def split_prompt_and_reference(example: Encoded) -> tuple[list[int], list[int]]:
    """The tokens before the first trained token (the prompt) and the first trained span (the reference)."""
    first = next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)
    end = next((i for i in range(first, len(example.labels)) if example.labels[i] == IGNORE_INDEX), len(example.labels))
    return example.input_ids[:first], example.input_ids[first:end]


@torch.no_grad()
def rouge(
    model: torch.nn.Module,
    tokenizer,
    examples: list[Encoded],
    max_new_tokens: int = 64,
    progress: bool = True,
) -> dict:
    """Greedy answers to the held-out prompts against their reference answers: mean ROUGE-1/2/L F1."""
    scores = {"rouge1": [], "rouge2": [], "rougeL": []}
    for example in tqdm(examples, desc="rouge", disable=not progress, unit="answer"):
        prompt, reference = split_prompt_and_reference(example)
        answer = greedy_generate(model, tokenizer, [prompt], max_new_tokens)[0]
        predicted = rouge_tokens(tokenizer.decode(answer, skip_special_tokens=True))
        expected = rouge_tokens(tokenizer.decode(reference, skip_special_tokens=True))
        scores["rouge1"].append(rouge_n(predicted, expected, 1))
        scores["rouge2"].append(rouge_n(predicted, expected, 2))
        scores["rougeL"].append(rouge_l(predicted, expected))
    return {k: sum(v) / len(v) if v else float("nan") for k, v in scores.items()} | {"answers": len(examples)}

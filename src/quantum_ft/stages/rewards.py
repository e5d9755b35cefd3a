"""Reward functions for GRPO.

A reward function is any callable `f(prompts, completions, **columns) -> list[float | None]`, TRL's convention:
`prompts` and `completions` are texts, and the keywords are the prompt records' other fields plus
`completion_ids` (token ids) and `finished` (the completion ended with EOS rather than at the length limit).
None means "does not apply to this sample" and counts 0. Each returns values on a 0..1 scale, so that weights,
not accidents of scale, decide what matters (Agent-Q's length reward of ~1000 swamped its 0/1 rewards).
"""

from __future__ import annotations

import re
from typing import Any

THINK_ANSWER = r"(?s)^<think>.*?</think>\s*<answer>(.*?)</answer>$"


class TargetLength:
    """1 at `target` characters, falling linearly to 0 at 0 and at 2 x target."""

    def __init__(self, target: int = 200) -> None:
        if target <= 0:
            raise ValueError(f"TargetLength.target must be > 0, got {target}.")
        self.target = target

    def __call__(self, prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return [max(0.0, 1 - abs(len(c) - self.target) / self.target) for c in completions]


class EndsWithEOS:
    """1 when the completion ended by itself (EOS) before the length limit."""

    def __call__(self, prompts: list[str], completions: list[str], finished: list[bool], **_: Any) -> list[float]:
        return [float(f) for f in finished]


class Diversity:
    """Distinct words / words: 1 for no repetition, near 0 for a completion looping on one word."""

    def __call__(self, prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        out = []
        for c in completions:
            words = c.split()
            out.append(len(set(words)) / len(words) if words else 0.0)
        return out


class TagFormat:
    """1 when the whole completion is `<think>...</think> <answer>...</answer>` (DeepSeek-R1 / Agent-Q format)."""

    def __init__(self, pattern: str = THINK_ANSWER) -> None:
        self.pattern = re.compile(pattern)

    def __call__(self, prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return [float(self.pattern.match(c.strip()) is not None) for c in completions]


class ContainsReference:
    """1 when the completion contains the record's `reference` answer (case and spacing ignored); None without one."""

    def __call__(
        self, prompts: list[str], completions: list[str], reference: list[str | None] | None = None, **_: Any
    ) -> list[float | None]:
        refs = reference or [None] * len(completions)
        return [None if r is None else float(_norm(str(r)) in _norm(c)) for c, r in zip(completions, refs)]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())

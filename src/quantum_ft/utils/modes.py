"""Switching a model to eval mode for a while, and back to whatever it was, even when the work raises."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`with evaluating(model):` runs in eval mode (no dropout) and restores the previous mode in `finally`."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)

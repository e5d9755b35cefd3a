"""Shared test helpers: composing configs as the command line does, test-only callbacks (importable from configs as
tests.helpers.X), and the resume check every resume test uses."""

from tests.helpers.callbacks import Interrupt, InterruptAfterStep, MemoryCap, NaNLossAt, OutOfMemoryAbove
from tests.helpers.compose import TINY, compose_train, tiny_model, tiny_source
from tests.helpers.resume import assert_resume_matches, until_crash

__all__ = [
    "TINY",
    "Interrupt",
    "InterruptAfterStep",
    "MemoryCap",
    "NaNLossAt",
    "OutOfMemoryAbove",
    "assert_resume_matches",
    "compose_train",
    "tiny_model",
    "tiny_source",
    "until_crash",
]

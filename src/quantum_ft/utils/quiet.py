"""The few messages libraries print on our main path that say nothing to our users, each silenced by its exact text
(never by category or module), with the reason. Everything else still reaches the user."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

KNOWN_WARNINGS = (
    # peft 0.21's PeftModel.__init__ reads transformers 5's deprecated `is_gradient_checkpointing`; our code uses
    # the current `activation_checkpointing_enable`. Gone when peft reads the new name.
    r"`is_gradient_checkpointing` is deprecated",
    # Lightning 2.6's CombinedLoader flattens loaders with torch's deprecated LeafSpec (torch 2.13).
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # Mid-epoch resume is exact here: the DataModule stores the position and its sampler skips what was trained,
    # which Lightning's check for a stateful *dataloader* does not see.
    r"You're resuming from a checkpoint that ended before the epoch ended",
    # Lightning 2.6's model summary sizes bf16-mixed weights as float32, which they are (autocast computes in bf16,
    # the weights stay float32): its estimate is right and the warning says nothing to act on.
    r"Precision bf16-mixed is not supported by the model summary",
    # Lightning 2.6 warns on every Trainer wherever an `srun` binary exists and the process was not started by it
    # (any machine with SLURM's client, a login node, this project's test controller). Our runs reach SLURM through
    # `cluster=slurm` (submitit starts them under srun) or launchers/sbatch; its hint to prepend srun is not how.
    r"The `srun` command is available on your system but is not used",
)
# Resuming (ckpt_path) continues in the run's own directory, whose checkpoints are what it resumes from; a fresh
# run in a used directory still gets the warning.
RESUME_WARNINGS = (r"Checkpoint directory .* exists and is not empty",)


class _DropText(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


KNOWN_LOG_LINES = {
    # Lightning 2.6 advertises its cloud logger (litlogger) at every Trainer start.
    "lightning.pytorch.utilities.rank_zero": "try installing [litlogger]",
    "lightning.pytorch": "try installing [litlogger]",
    # bitsandbytes 0.49 (the qlora extra), imported through peft, offers an optional CPU kernel package on every
    # import; QLoRA runs on CUDA, where it is not used.
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
}


def quiet_known_noise() -> None:
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


@contextmanager
def quiet_resume_noise(resuming: bool) -> Iterator[None]:
    """RESUME_WARNINGS silenced inside the block when it resumes a run (filters restored after it); nothing touched
    otherwise."""
    if not resuming:
        yield
        return
    with warnings.catch_warnings():
        for message in RESUME_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield


def quiet_log_lines() -> None:
    """Installed once, when quantum_ft is imported (quantum_ft/__init__.py): bitsandbytes logs at its own import,
    before train() starts."""
    for name, text in KNOWN_LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropText) and f.text == text for f in logger.filters):
            logger.addFilter(_DropText(text))

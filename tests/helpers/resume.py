"""The check behind every resume test: a run interrupted after `crash_step` and resumed from its last checkpoint
logs the same per-step values as a run that went straight through."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import torch

from quantum_ft.utils.plots import read_metric_series
from tests.helpers.callbacks import Interrupt

CRASH = "+callbacks.crash._target_=tests.helpers.InterruptAfterStep"


def until_crash(train_once: Callable[[Path, list[str]], object]) -> Callable[[Path, list[str]], None]:
    """`train_once(output_dir, extra_overrides)` in-process, letting the simulated crash end it quietly."""

    def run(out: Path, extra: list[str]) -> None:
        with contextlib.suppress(Interrupt):
            train_once(out, extra)

    return run


def assert_resume_matches(
    run: Callable[[Path, list[str]], object],
    tmp_path: Path,
    crash_step: int,
    steps: int,
    metrics: tuple[str, ...] = ("train/loss",),
    checkpoint_step: int | None = None,
) -> None:
    """`run(output_dir, extra_overrides)` trains one run and returns when it ends or crashes (it must let the
    simulated crash pass: catch tests.helpers.Interrupt, or run a subprocess). The interrupted run's last
    checkpoint is at `checkpoint_step` (default crash_step - 1); every metric in `metrics` matches."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(straight, [])
    run(resumed, [CRASH, f"+callbacks.crash.step={crash_step}"])
    last = torch.load(resumed / "checkpoints/last.ckpt", weights_only=True)
    assert last["global_step"] == (crash_step - 1 if checkpoint_step is None else checkpoint_step)
    run(resumed, [])  # ckpt_path=auto finds last.ckpt
    for name in metrics:
        expected = read_metric_series(straight / "csv", name)
        got = read_metric_series(resumed / "csv", name)
        assert len(expected) == steps, name
        assert [s for s, _ in got] == [s for s, _ in expected], name
        torch.testing.assert_close(torch.tensor([v for _, v in got]), torch.tensor([v for _, v in expected]))
    assert len(list((resumed / "csv").glob("version_*"))) == 2

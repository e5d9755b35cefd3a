"""Self-healing by fault injection: an out-of-memory step is redone in pieces (same samples, same gradients as
an undisturbed run), a NaN step is skipped, NaN steps in a row roll back with a lower learning rate, and a run
that keeps diverging stops with what to change. The piece-wise gradient is checked against a plain backward."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from quantum_ft.callbacks import LossGuard, TrainingDiverged
from quantum_ft.callbacks.loss_guard import spike
from quantum_ft.stages.lm_loss import causal_lm_loss
from quantum_ft.stages.oom_retry import PieceWiseStep, split_rows
from quantum_ft.train import build, finalize, fit
from quantum_ft.utils.plots import read_metric_series
from tests.helpers import OutOfMemoryAbove, tiny_model

STEADY = ["data.batch_size=4", "trainer.max_steps=8", "adapter.dropout=0.0", "validate_before=false", "eval.tasks=[]"]


def run_with(tiny_cfg, out: Path, *overrides: str):
    run = build(tiny_cfg(*STEADY, *overrides, output_dir=out))
    fit(run)
    finalize(run)
    return run


def callback(run, kind):
    return next(c for c in run.trainer.callbacks if isinstance(c, kind))


def losses(out: Path) -> list[float]:
    return [v for _, v in read_metric_series(out / "csv", "train/loss")]


def test_piecewise_gradient_equals_the_plain_backward() -> None:
    model = tiny_model().train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 1000, (5, 12), generator=g)
    labels = ids.clone()
    labels[:, :4] = -100  # a prompt without loss
    labels[3] = -100  # a row without any target: its share is zero
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}
    params = [p for p in model.parameters() if p.requires_grad]
    loss_fn = lambda b: causal_lm_loss(model, b)  # noqa: E731
    plain = loss_fn(batch)
    expected = torch.autograd.grad(plain, params)
    step = PieceWiseStep()
    step.pieces = 4
    mean, objective = step(loss_fn, batch, params, step=0)
    got = torch.autograd.grad(objective, params)
    assert mean.item() == pytest.approx(plain.item(), rel=1e-6)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert [len(p["input_ids"]) for p in split_rows(batch, 4)] == [1, 1, 2, 1]  # rows 0-4, as even as can be


def test_oom_at_step_5_is_retried_in_halves_with_the_same_samples(tiny_cfg, tmp_path: Path, caplog) -> None:
    straight = run_with(tiny_cfg, tmp_path / "straight")
    inject = [
        "+callbacks.oom._target_=tests.helpers.OutOfMemoryAbove",
        "+callbacks.oom.step=5",
        "+callbacks.oom.rows=2",
    ]
    with caplog.at_level(logging.WARNING, logger="quantum_ft.stages.oom_retry"):
        healed = run_with(tiny_cfg, tmp_path / "healed", *inject)
    assert healed.trainer.global_step == straight.trainer.global_step == 8
    assert callback(healed, OutOfMemoryAbove).rows_trained == 8 * 4  # every sample of every step, once
    (line,) = [r.getMessage() for r in caplog.records if r.name == "quantum_ft.stages.oom_retry"]
    assert "Out of memory at step 5" in line and "2 pieces" in line
    torch.testing.assert_close(torch.tensor(losses(tmp_path / "healed")), torch.tensor(losses(tmp_path / "straight")))
    assert healed.metrics["val/loss_after"] == pytest.approx(straight.metrics["val/loss_after"], rel=1e-5)


def test_oom_below_the_floor_stops_with_what_to_change(tiny_cfg, tmp_path: Path) -> None:
    inject = [
        "+callbacks.oom._target_=tests.helpers.OutOfMemoryAbove",
        "+callbacks.oom.step=2",
        "+callbacks.oom.rows=1",
    ]
    with pytest.raises(torch.OutOfMemoryError, match=r"oom_min_rows=2.*cutoff_len"):
        run_with(tiny_cfg, tmp_path / "run", *inject, "stage.oom_min_rows=2")


NAN = "+callbacks.nan._target_=tests.helpers.NaNLossAt"


def test_a_nan_step_is_skipped_and_the_run_goes_on(tiny_cfg, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="quantum_ft.callbacks.loss_guard"):
        run = run_with(tiny_cfg, tmp_path / "run", NAN, "+callbacks.nan.steps=[5]")
    guard = callback(run, LossGuard)
    assert guard.skipped == 1 and guard.rollbacks == 0 and run.trainer.global_step == 8
    (line,) = [r.getMessage() for r in caplog.records if r.name == "quantum_ft.callbacks.loss_guard"]
    assert line.startswith("Step 5: non-finite loss") and "update skipped" in line
    assert all(torch.isfinite(p).all() for p in run.module.parameters())
    series = losses(tmp_path / "run")
    assert len(series) == 8 and torch.tensor(series).isnan().sum() == 1
    assert torch.isfinite(torch.tensor(run.metrics["val/loss_after"]))


def test_nan_steps_in_a_row_roll_back_with_a_lower_rate(tiny_cfg, tmp_path: Path, caplog) -> None:
    plain = run_with(tiny_cfg, tmp_path / "plain")
    with caplog.at_level(logging.WARNING, logger="quantum_ft.callbacks.loss_guard"):
        run = run_with(tiny_cfg, tmp_path / "run", NAN, "+callbacks.nan.steps=[3,4,5]")
    guard = callback(run, LossGuard)
    assert guard.skipped == 3 and guard.rollbacks == 1 and run.trainer.global_step == 8
    assert any("Rolled back to the state after step 0" in r.getMessage() for r in caplog.records)
    (scheduler,) = [c.scheduler for c in run.trainer.lr_scheduler_configs]
    (plain_scheduler,) = [c.scheduler for c in plain.trainer.lr_scheduler_configs]
    assert scheduler.base_lrs == pytest.approx([lr * 0.5 for lr in plain_scheduler.base_lrs])
    assert torch.isfinite(torch.tensor(run.metrics["val/loss_after"]))


def test_a_run_that_keeps_diverging_stops_with_what_to_change(tiny_cfg, tmp_path: Path) -> None:
    overrides = [
        NAN,
        "+callbacks.nan.from_step=2",
        "callbacks.loss_guard.patience=2",
        "callbacks.loss_guard.max_rollbacks=1",
    ]
    with pytest.raises(TrainingDiverged, match=r"diverged at step 5.*Lower optimizer.lr"):
        run_with(tiny_cfg, tmp_path / "run", *overrides)


def test_spike_rule() -> None:
    history = [2.0, 2.1, 1.9, 2.0]
    assert spike(8.5, history, factor=4.0, min_history=3) == pytest.approx(2.0)
    assert spike(7.9, history, factor=4.0, min_history=3) is None
    assert spike(100.0, history[:2], factor=4.0, min_history=3) is None  # too little history to call it

"""Self-tuning through Lightning's Tuner: under a memory cap, batch-size tuning picks a smaller micro-batch and keeps
the effective batch (and the run then trains exactly as one given those settings by hand); the LR finder sets the
rate and saves its plot; a resumed run re-applies what was tuned; GRPO is refused with what to change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from quantum_ft.train import build, finalize, fit
from quantum_ft.tuning import split_effective_batch
from quantum_ft.utils.config import ConfigError
from quantum_ft.utils.plots import read_metric_series
from tests.helpers import MemoryCap, assert_resume_matches, compose_train, until_crash

STEADY = ["adapter.dropout=0.0", "validate_before=false", "eval.tasks=[]", "trainer.max_steps=3"]
CAP = ["+callbacks.cap._target_=tests.helpers.MemoryCap", "+callbacks.cap.rows=3"]


def run_with(tiny_cfg, out: Path, *overrides: str):
    run = build(tiny_cfg(*STEADY, *overrides, output_dir=out))
    fit(run)
    finalize(run)
    return run


def cap_of(run) -> MemoryCap:
    return next(c for c in run.trainer.callbacks if isinstance(c, MemoryCap))


@pytest.mark.parametrize(
    ("effective", "fits", "expected"),
    [(8, 3, (2, 4)), (8, 8, (8, 1)), (8, 100, (8, 1)), (6, 4, (3, 2)), (7, 6, (1, 7)), (12, 5, (4, 3)), (1, 1, (1, 1))],
)
def test_split_effective_batch(effective: int, fits: int, expected: tuple[int, int]) -> None:
    assert split_effective_batch(effective, fits) == expected


def test_batch_size_tuning_under_a_memory_cap_keeps_the_effective_batch(tiny_cfg, tmp_path: Path) -> None:
    tuned = run_with(tiny_cfg, tmp_path / "tuned", "data.batch_size=8", "tune.batch_size=true", *CAP)
    cap = cap_of(tuned)
    assert cap.failures > 0  # the search did try batches that do not fit
    assert (tuned.datamodule.batch_size, tuned.trainer.accumulate_grad_batches) == (2, 4)  # 3 fit; 2 divides 8
    assert tuned.trainer.global_step == 3
    saved = OmegaConf.load(tmp_path / "tuned/config.yaml")
    assert (saved.data.batch_size, saved.trainer.accumulate_grad_batches) == (2, 4)
    summary = json.loads((tmp_path / "tuned/metrics.json").read_text())
    assert summary["tuned_micro_batch"] == 2 and summary["tuned_accumulate"] == 4
    assert summary["tuned_largest_fitting"] == 3
    # The trials leave no trace: the tuned run trains exactly as a run given micro-batch 2 x 4 by hand.
    by_hand = run_with(tiny_cfg, tmp_path / "by_hand", "data.batch_size=2", "trainer.accumulate_grad_batches=4", *CAP)
    assert cap_of(by_hand).failures == 0 and cap_of(by_hand).rows_trained == 3 * 8
    expected = read_metric_series(tmp_path / "by_hand/csv", "train/loss")
    got = read_metric_series(tmp_path / "tuned/csv", "train/loss")
    assert [s for s, _ in got] == [s for s, _ in expected]
    torch.testing.assert_close(torch.tensor([v for _, v in got]), torch.tensor([v for _, v in expected]))
    assert tuned.metrics["val/loss_after"] == pytest.approx(by_hand.metrics["val/loss_after"], rel=1e-6)


def test_batch_size_tuning_keeps_a_batch_that_fits(tiny_cfg, tmp_path: Path) -> None:
    run = run_with(
        tiny_cfg, tmp_path / "run", "data.batch_size=4", "tune.batch_size=true", *CAP[:1], "+callbacks.cap.rows=64"
    )
    assert (run.datamodule.batch_size, run.trainer.accumulate_grad_batches) == (4, 1)
    assert cap_of(run).failures == 0


def test_lr_finder_sets_the_rate_and_saves_its_plot(tiny_cfg, tmp_path: Path) -> None:
    lr_tune = ["tune.lr=true", "tune.lr_steps=30", "tune.lr_min=1e-5", "tune.lr_max=1.0", "tune.lr_early_stop=null"]
    run = run_with(tiny_cfg, tmp_path / "run", *lr_tune)
    lr = run.choices["tuned_lr"]
    assert 1e-5 <= lr <= 1.0
    assert run.cfg.optimizer.lr == lr and OmegaConf.load(tmp_path / "run/config.yaml").optimizer.lr == lr
    assert run.trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(lr)  # the rate it trained at
    assert (tmp_path / "run/lr_find.png").stat().st_size > 0
    assert run.trainer.global_step == 3  # the range test's 30 steps were undone
    assert json.loads((tmp_path / "run/metrics.json").read_text())["tuned_lr"] == pytest.approx(lr)


def test_a_resumed_run_reapplies_what_was_tuned(tiny_cfg, tmp_path: Path) -> None:
    overrides = [*STEADY, "data.batch_size=8", "tune.batch_size=true", *CAP, "trainer.max_steps=4"]
    overrides += ["callbacks.model_checkpoint.every_n_train_steps=1"]
    caps: list[MemoryCap] = []

    def once(out: Path, extra: list[str]) -> None:
        run = build(tiny_cfg(*overrides, *extra, output_dir=out))
        caps.append(cap_of(run))
        fit(run)
        finalize(run)

    assert_resume_matches(until_crash(once), tmp_path, crash_step=2, steps=4)
    straight, crashed, resumed = caps
    assert straight.failures > 0 and crashed.failures > 0
    assert resumed.failures == 0  # no search again: tuned.json gave micro-batch 2 x 4
    assert resumed.rows_trained == (4 - 1) * 8  # steps 2-4 after the checkpoint at step 1, 8 rows each


def test_grpo_is_not_tuned(tmp_path: Path) -> None:
    grpo = ["model=tiny", "stage=grpo", "data=rl_prompts", "logger=csv", "trainer.precision=32-true", "tune.lr=true"]
    with pytest.raises(ConfigError, match="SFT and causal-LM"):
        fit(build(compose_train(grpo, tmp_path / "run")))

"""Self-tuning before training, through Lightning's Tuner: `tune.batch_size` (the largest micro-batch that fits,
the effective batch kept by gradient accumulation) and `tune.lr` (Lightning's learning-rate range test, its
suggestion applied, its curve saved as <run>/lr_find.png).

Both trials train on the real model and data, then Lightning restores the weights it saved before them, so the run
that follows starts where it would have started untuned (tested: a tuned run trains exactly as a run given the
tuned settings by hand). The choices are written to <run>/tuned.json, the run's config.yaml and metrics.json; a
resumed run reads tuned.json instead of tuning again, so it continues with the settings its checkpoint was made
with.

Left out: GRPO (its batch is prompts x group size x generated length, and its loss is no figure an LR range test
can read) and distributed strategies (Lightning's batch-size finder runs in one process only).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig, OmegaConf, open_dict

from quantum_ft.utils.config import ConfigError
from quantum_ft.utils.io import atomic_text
from quantum_ft.utils.plots import plot_lr_find

if TYPE_CHECKING:
    from quantum_ft.train import Run

log = logging.getLogger(__name__)
TUNED_FILE = "tuned.json"


@dataclass
class Tuned:
    """What the tuner decided; None where it was not asked to decide."""

    micro_batch: int | None = None
    accumulate: int | None = None
    largest_fitting: int | None = None  # what the search found, before fitting it to the effective batch
    lr: float | None = None
    lr_plot: str | None = None

    def summary(self) -> dict[str, Any]:
        return {f"tuned_{k}": v for k, v in asdict(self).items() if v is not None}


def split_effective_batch(effective: int, fits: int) -> tuple[int, int]:
    """(micro-batch, accumulation) with micro x accumulation == effective and the largest micro-batch <= fits."""
    if effective < 1 or fits < 1:
        raise ValueError(f"batch sizes must be positive, got effective={effective}, fits={fits}")
    micro = max(d for d in range(1, min(effective, fits) + 1) if effective % d == 0)
    return micro, effective // micro


def check_tunable(cfg: DictConfig, run: Run) -> None:
    """Refuse, with what to change, what the tuner cannot do here."""
    asked = [k for k in ("batch_size", "lr") if (cfg.get("tune") or {}).get(k)]
    if not asked:
        return
    if not getattr(run.module, "tunable", False):
        raise ConfigError(
            f"tune.{'/'.join(asked)}=true works for the SFT and causal-LM stages, not {type(run.module).__name__}: "
            "set tune.batch_size=false tune.lr=false (GRPO's memory is set by data.batch_size x stage.group_size x "
            "stage.max_new_tokens)."
        )
    if "batch_size" in asked and run.trainer.world_size > 1:
        raise ConfigError(
            "tune.batch_size=true runs in one process (Lightning's batch-size finder does not support distributed "
            "strategies): tune on one device, then pass the micro-batch it found as data.batch_size and "
            "trainer.accumulate_grad_batches to the distributed run."
        )


def tune(run: Run) -> Tuned:
    """Tune what cfg.tune asks for, apply it to the run, and record it; on a resumed run, re-apply the record."""
    cfg = run.cfg
    check_tunable(cfg, run)
    settings = cfg.get("tune") or {}
    if not (settings.get("batch_size") or settings.get("lr")):
        return Tuned()
    record = run.out / TUNED_FILE
    if run.ckpt_path is not None and record.is_file():
        tuned = Tuned(**json.loads(record.read_text()))
        log.info("Resuming with the settings tuned before (%s): %s", record, tuned.summary())
    elif run.ckpt_path is not None:  # its checkpoint was made untuned: tuning now would change what it resumes
        log.warning("Resuming %s, which was not tuned (no %s): tune.* is ignored for it.", run.ckpt_path, record)
        return Tuned()
    else:
        tuned = Tuned()
        if cfg.tune.get("batch_size"):
            tune_batch_size(run, tuned)
        if cfg.tune.get("lr"):
            tune_lr(run, tuned)
        atomic_text(record, json.dumps(asdict(tuned), indent=2))
    apply(run, tuned)
    return tuned


def tune_batch_size(run: Run, tuned: Tuned) -> None:
    """Lightning's batch-size finder in binsearch mode, from the effective batch down: the first trial is the
    effective batch itself (max_val one above it, so nothing larger is tried), an out-of-memory trial halves the
    range, and the result is the largest micro-batch that divides the effective batch and fits."""
    data, trainer, module = run.datamodule, run.trainer, run.module
    effective = data.batch_size * trainer.accumulate_grad_batches
    retry, module.piecewise = getattr(module, "piecewise", None), None  # the finder must see the OOM, not heal it
    try:
        found = Tuner(trainer).scale_batch_size(
            module,
            datamodule=data,
            mode="binsearch",
            init_val=effective,
            max_val=effective + 1,
            steps_per_trial=int(run.cfg.tune.steps_per_trial),
            max_trials=int(run.cfg.tune.max_trials),
            margin=0.0,
        )
    finally:
        module.piecewise = retry
        # Lightning restores the pre-trial checkpoint and leaves the loops marked as restarting (its LR finder
        # clears that, its batch-size finder does not): the run's first fit would then count steps as a resumed one.
        trainer.fit_loop.restarting = trainer.fit_loop.epoch_loop.restarting = False
        data._resume_at = None
    fits = min(int(found or 1), effective)
    tuned.largest_fitting = fits
    tuned.micro_batch, tuned.accumulate = split_effective_batch(effective, fits)
    log.info(
        "Batch-size tuning: %d rows fit; micro-batch %d x accumulation %d (effective batch %d, as configured)",
        fits,
        tuned.micro_batch,
        tuned.accumulate,
        effective,
    )


def tune_lr(run: Run, tuned: Tuned) -> None:
    """Lightning's LR range test (the rate grows from lr_min to lr_max over lr_steps optimiser steps); its
    suggestion (steepest descent of the smoothed loss) replaces optimizer.lr."""
    t = run.cfg.tune
    if tuned.micro_batch is not None:  # the range test runs at the batch the run will train with
        apply(run, Tuned(micro_batch=tuned.micro_batch, accumulate=tuned.accumulate))
    finder = Tuner(run.trainer).lr_find(
        run.module,
        datamodule=run.datamodule,
        min_lr=float(t.lr_min),
        max_lr=float(t.lr_max),
        num_training=int(t.lr_steps),
        mode=str(t.lr_mode),
        early_stop_threshold=t.lr_early_stop,
        update_attr=False,
    )
    run.datamodule._resume_at = None  # the restored pre-trial checkpoint's position: the start
    suggestion = finder.suggestion() if finder is not None else None
    if suggestion is None:
        log.warning(
            "The LR finder made no suggestion (too few points before the loss diverged): keeping optimizer.lr=%s. "
            "Raise tune.lr_steps or lower tune.lr_max.",
            run.cfg.optimizer.lr,
        )
        return
    tuned.lr = float(suggestion)
    plot = plot_lr_find(finder.results["lr"], finder.results["loss"], tuned.lr, run.out / "lr_find.png")
    tuned.lr_plot = str(plot)
    log.info("LR finder: suggested learning rate %.3g (was %s); curve in %s", tuned.lr, run.cfg.optimizer.lr, plot)


def apply(run: Run, tuned: Tuned) -> None:
    """Put the tuned values into the data module, trainer, optimiser factory and config (config.yaml rewritten)."""
    cfg = run.cfg
    with open_dict(cfg):
        if tuned.micro_batch is not None:
            run.datamodule.batch_size = tuned.micro_batch
            run.trainer.accumulate_grad_batches = tuned.accumulate
            cfg.data.batch_size, cfg.trainer.accumulate_grad_batches = tuned.micro_batch, tuned.accumulate
        if tuned.lr is not None:
            factory = run.module.optimizer_factory
            run.module.optimizer_factory = partial(factory.func, *factory.args, **{**factory.keywords, "lr": tuned.lr})
            cfg.optimizer.lr = tuned.lr
    OmegaConf.save(cfg, Path(run.out) / "config.yaml", resolve=True)
    run.choices.update(tuned.summary())

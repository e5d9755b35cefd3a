"""`python -m quantum_ft.train`: compose a config, build everything from it, fine-tune, write the artifact.

Three named phases, each a plain function the tests call with a composed config:
  build(cfg) -> Run      model source, adapter, model, data, stage module, callbacks, loggers, trainer
  fit(run)               tuning (tune.*), validation before, training (resumed from a checkpoint when there is one)
  finalize(run)          validation after, evaluation, artifact, plot, metrics.json, report
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf, open_dict

import quantum_ft
from quantum_ft.adapters.base import count_parameters
from quantum_ft.artifacts import AtomicCheckpointIO, save_artifact
from quantum_ft.cluster import check_launch, job_plugins_and_callbacks, match_threads_to_allocation
from quantum_ft.data.base import DataModule
from quantum_ft.evaluation import flat_metrics, run_evaluation
from quantum_ft.models.build import BuiltModel, build_model
from quantum_ft.stages.base import StageModule
from quantum_ft.tuning import tune
from quantum_ft.utils.config import ConfigError, check_requirements, config_path, resolve_ckpt_path
from quantum_ft.utils.host import describe_host
from quantum_ft.utils.io import atomic_text
from quantum_ft.utils.plots import plot_losses
from quantum_ft.utils.precision import choose_precision
from quantum_ft.utils.quiet import quiet_known_noise, quiet_resume_noise

log = logging.getLogger("quantum_ft")


@dataclass
class Run:
    """Everything one training run is made of, as build() assembled it."""

    cfg: DictConfig
    out: Path
    built: BuiltModel
    datamodule: DataModule
    module: StageModule
    trainer: L.Trainer
    ckpt_path: str | None
    started: float
    metrics: dict[str, float] = field(default_factory=dict)
    choices: dict[str, Any] = field(default_factory=dict)  # what the engine decided by itself, and why


def instantiate_dict(section: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` entry of a config section (callbacks, loggers), skipping nulls."""
    if not section:
        return []
    return [instantiate(c) for c in section.values() if c is not None and "_target_" in c]


def build(cfg: DictConfig) -> Run:
    """Check the config, then make the model, data, stage and trainer it describes."""
    quiet_known_noise()
    check_requirements(cfg)
    match_threads_to_allocation()
    log.info("quantum_ft %s from %s", cfg.get("task_name"), Path(quantum_ft.__file__).parent)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out)
    L.seed_everything(cfg.seed, workers=True)
    started = time.perf_counter()

    built = build_model(cfg)
    precision, why = choose_precision(str(cfg.trainer.precision), str(cfg.trainer.get("accelerator", "auto")))
    with open_dict(cfg):
        cfg.trainer.precision = precision
    log.info("Precision %s (%s)", precision, why)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)  # after init_from took the artifact's adapter settings
    datamodule: DataModule = instantiate(cfg.data, tokenizer=built.tokenizer)
    datamodule.setup("fit")
    built.tokenizer = datamodule.tokenizer  # text data brings its own (char / byte level)
    log.info("Data:\n%s", datamodule.stats.table())
    trainable, total = count_parameters(built.model)
    log.info(
        "Model %s: %s trainable of %s parameters (%.4f%%), loaded in %.1f s",
        built.description,
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
        time.perf_counter() - started,
    )
    module = instantiate(cfg.stage, model=built.model, tokenizer=built.tokenizer, optimizer=instantiate(cfg.optimizer))

    job_plugins, job_callbacks = job_plugins_and_callbacks()
    callbacks = [*instantiate_dict(cfg.get("callbacks")), *instantiate_dict(cfg.distributed.get("callbacks"))]
    if cfg.trainer.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(TQDMProgressBar())  # not Lightning's rich bar: its stdout proxy recurses in Jupyter
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks + job_callbacks,
        logger=instantiate_dict(cfg.get("logger")),
        plugins=[AtomicCheckpointIO(), *job_plugins],
    )
    run = Run(cfg, out, built, datamodule, module, trainer, ckpt_path, started)
    run.metrics.update(trainable_params=trainable, total_params=total)
    run.choices.update(precision=precision, precision_reason=why)
    return run


def fit(run: Run) -> None:
    """Tune (tune.batch_size / tune.lr), validate before (a fresh run), then train; resumes from `run.ckpt_path`."""
    monitor = run.module.monitor
    tune(run)
    if run.cfg.get("validate_before") and run.ckpt_path is None:
        run.metrics[f"{monitor}_before"] = validate(run)
    if run.ckpt_path:
        log.info("Resuming from %s", run.ckpt_path)
    with quiet_resume_noise(run.ckpt_path is not None):
        run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=run.ckpt_path)
    run.metrics.update({k: float(v) for k, v in run.trainer.callback_metrics.items()})
    run.metrics["global_step"] = run.trainer.global_step
    if torch.cuda.is_available():
        run.metrics["gpu_peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9


def validate(run: Run) -> float:
    return run.trainer.validate(run.module, datamodule=run.datamodule, verbose=False)[0][run.module.monitor]


def finalize(run: Run) -> dict[str, float]:
    """Validate after, evaluate, and (on rank 0) write the artifact, the curve, metrics.json and the report."""
    cfg, out, metrics, monitor = run.cfg, run.out, run.metrics, run.module.monitor
    if cfg.get("validate_after"):
        metrics[f"{monitor}_after"] = validate(run)
    if not run.trainer.is_global_zero:
        return metrics
    if cfg.get("eval") and cfg.eval.tasks:  # evaluation as a stage after fit
        tokenizer = run.built.tokenizer
        evaluation = flat_metrics(run_evaluation(run.module.model, tokenizer, cfg.eval, out / "eval", run.datamodule))
        for logger in run.trainer.loggers:
            logger.log_metrics(evaluation, step=run.trainer.global_step)
            logger.save()
        metrics.update(evaluation)
    built = run.built
    artifact = save_artifact(
        out / "artifact",
        cfg,
        built.source.describe(),
        lambda d: built.adapter.save(run.module.model, d),
        built.tokenizer,
    )
    quantity = monitor.split("/", 1)[1]  # loss, or reward for GRPO
    plot = plot_losses(out / "csv", out / f"{quantity}_curve.png", title=built.description, quantity=quantity)
    metrics["wall_time_s"] = time.perf_counter() - run.started
    summary = {
        "model": built.source.name,
        "adapter": built.adapter.name,
        "host": describe_host(),
        **run.choices,
        **metrics,
    }
    atomic_text(out / "metrics.json", json.dumps(summary, indent=2))  # a study reads its presence as "finished"
    print(report(out, artifact, plot, metrics, monitor), flush=True)
    return metrics


def train(cfg: DictConfig) -> dict[str, float]:
    """Fine-tune as configured; returns the final metrics (the stage's monitor before and after, the trainer's)."""
    run = build(cfg)
    fit(run)
    return finalize(run)


def report(out: Path, artifact: Path, plot: Path | None, metrics: dict[str, float], monitor: str) -> str:
    before, after = metrics.get(f"{monitor}_before"), metrics.get(f"{monitor}_after")
    lines = ["", "=" * 72]
    if before is not None and after is not None:
        lines.append(f"{monitor} before training: {before:.4f}   after: {after:.4f}   ({after - before:+.4f})")
    lines += [
        f"outputs:     {out}",
        f"  artifact:  {artifact}   (PeftModel.from_pretrained / python -m quantum_ft.chat {out})",
        f"  ckpts:     {out / 'checkpoints'}",
    ]
    logs = [
        f"{out / name} ({kind})"
        for name, kind in [("csv", "CSV"), ("tensorboard", "TensorBoard"), ("wandb", "W&B")]
        if (out / name).exists()
    ]
    if logs:
        lines.append(f"  logs:      {', '.join(logs)}")
    if plot:
        lines.append(f"  plot:      {plot}")
    lines.append("=" * 72)
    return "\n".join(lines)


def optimized_value(cfg: DictConfig, metrics: dict[str, float], required: bool) -> float | None:
    """The figure a sweeper optimises: `optimized_metric` (by default the stage's monitor after training:
    val/loss_after, val/reward_after). A sweep (`required`) cannot go on without it: missing, it raises."""
    name = cfg.get("optimized_metric")
    if name in metrics:
        return metrics[name]
    if required:
        raise ConfigError(
            f"optimized_metric={name} was not measured by this run; it measured: {', '.join(sorted(metrics))}. "
            "Choose one of those, or keep validate_after=true for the stage's default."
        )
    return None


def close_loggers() -> None:
    """Finish a W&B run even when training failed, so the next job of a multirun starts clean."""
    import sys

    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()


def run(cfg: DictConfig) -> float | None:
    """The Hydra task: train, always close the loggers, return the metric a sweeper optimises.

    A module-level function (wrapped below, not decorated) so submitit pickles it by reference and a job imports it
    from the code snapshot of its sweep.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    check_launch(cfg)
    try:
        metrics = train(cfg)
    finally:
        close_loggers()
    return optimized_value(cfg, metrics, required=HydraConfig.get().mode == RunMode.MULTIRUN)


main = hydra.main(version_base="1.3", config_path=config_path(), config_name="train")(run)

if __name__ == "__main__":
    main()

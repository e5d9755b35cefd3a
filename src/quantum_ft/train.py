"""`python -m quantum_ft.train`: compose a config, build everything from it, fine-tune, write the artifact.

The Hydra entry point is thin; `train(cfg)` is a plain function the tests call with a composed config.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf

import quantum_ft
from quantum_ft.adapters.base import Adapter, count_parameters
from quantum_ft.cluster import CheckpointAndRequeue, SubmititEnvironment
from quantum_ft.evaluation import flat_metrics, run_evaluation
from quantum_ft.models.base import ModelSource
from quantum_ft.utils.artifact import save_artifact
from quantum_ft.utils.checkpoint_io import AtomicCheckpointIO
from quantum_ft.utils.config import ConfigError, check_cuda_requirements, config_path, resolve_ckpt_path
from quantum_ft.utils.plots import plot_losses

log = logging.getLogger("quantum_ft")
# Mid-epoch resume is exact here: SFTDataModule stores the position and its sampler skips what was trained,
# which Lightning's check for a stateful *dataloader* does not see.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


def instantiate_dict(section: DictConfig | None, **kwargs: Any) -> list[Any]:
    """Instantiate every `_target_` entry of a config section (callbacks, loggers), skipping nulls."""
    if not section:
        return []
    return [instantiate(c, **kwargs) for c in section.values() if c is not None and "_target_" in c]


def match_threads_to_allocation() -> None:
    """In a SLURM job, use the CPUs allocated to the task, not every core of the node (torch's default), which
    oversubscribes a node shared by several tasks. OMP_NUM_THREADS, when set, wins."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(int(cpus))


def train(cfg: DictConfig) -> dict[str, float]:
    """Fine-tune as configured; returns the final metrics (the stage's val/loss or val/reward before and after,
    and the trainer's)."""
    check_cuda_requirements(cfg)
    match_threads_to_allocation()
    log.info("quantum_ft %s from %s", cfg.get("task_name"), Path(quantum_ft.__file__).parent)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out)
    L.seed_everything(cfg.seed, workers=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)

    started = time.perf_counter()
    source: ModelSource = instantiate(cfg.model)
    adapter: Adapter = instantiate(cfg.adapter)
    tokenizer = source.load_tokenizer()
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    datamodule.setup("fit")
    tokenizer = datamodule.tokenizer  # text data brings its own (char / byte level)
    log.info("Data:\n%s", datamodule.stats.table())
    model = adapter.apply(source.load_model(quantization_config=adapter.quantization_config()))
    trainable, total = count_parameters(model)
    log.info(
        "Model %s + adapter %s: %s trainable of %s parameters (%.4f%%), loaded in %.1f s",
        source.name,
        adapter.name,
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
        time.perf_counter() - started,
    )
    module = instantiate(cfg.stage, model=model, tokenizer=tokenizer, optimizer=instantiate(cfg.optimizer))

    callbacks, plugins = instantiate_dict(cfg.get("callbacks")), [AtomicCheckpointIO()]
    if cfg.trainer.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(TQDMProgressBar())  # not Lightning's rich bar: its stdout proxy recurses in Jupyter
    if SubmititEnvironment.detect():  # a submitit job: its tasks are the ranks, and submitit owns requeueing
        plugins.append(SubmititEnvironment())
        callbacks.append(CheckpointAndRequeue())
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=instantiate_dict(cfg.get("logger")), plugins=plugins
    )
    metrics: dict[str, float] = {"trainable_params": trainable, "total_params": total}
    monitor = module.monitor  # the stage's validation figure: val/loss, val/reward
    if cfg.get("validate_before") and ckpt_path is None:
        metrics[f"{monitor}_before"] = trainer.validate(module, datamodule=datamodule, verbose=False)[0][monitor]
    if ckpt_path:
        log.info("Resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    metrics["global_step"] = trainer.global_step
    if torch.cuda.is_available():
        metrics["gpu_peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    if cfg.get("validate_after"):
        metrics[f"{monitor}_after"] = trainer.validate(module, datamodule=datamodule, verbose=False)[0][monitor]

    if trainer.is_global_zero and cfg.get("eval") and cfg.eval.tasks:  # evaluation as a stage after fit
        evaluation = flat_metrics(run_evaluation(module.model, tokenizer, cfg.eval, out / "eval", datamodule))
        for logger in trainer.loggers:
            logger.log_metrics(evaluation, step=trainer.global_step)
            logger.save()
        metrics.update(evaluation)

    if trainer.is_global_zero:
        artifact = save_artifact(out / "artifact", cfg, source, adapter, module.model, tokenizer)
        quantity = monitor.split("/", 1)[1]  # loss, or reward for GRPO
        title = f"{source.name} + {adapter.name}"
        plot = plot_losses(out / "csv", out / f"{quantity}_curve.png", title=title, quantity=quantity)
        metrics["wall_time_s"] = time.perf_counter() - started
        (out / "metrics.json").write_text(
            json.dumps({"model": source.name, "adapter": adapter.name, **metrics}, indent=2)
        )
        _report(out, artifact, plot, metrics, monitor)
    return metrics


def _report(out: Path, artifact: Path, plot: Path | None, metrics: dict[str, float], monitor: str) -> None:
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
    print("\n".join(lines), flush=True)


def close_loggers() -> None:
    """Finish a W&B run even when training failed, so the next job of a multirun starts clean."""
    import sys

    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()


def check_launch(cfg: DictConfig) -> None:
    """What the launcher and the job's process layout cannot do together, said before anything loads.

    cluster=slurm / submitit_local act through Hydra's launcher, which only runs in multirun mode; and in a
    multirun on this machine, Lightning would start extra device processes by re-running the whole `-m` command
    line, i.e. the whole sweep (Hydra #2231): submitit starts one process per device instead.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if SubmititEnvironment.detect():
        return
    name = cfg.get("cluster", {}).get("name", "local")
    mode = HydraConfig.get().mode
    if name != "local" and mode == RunMode.RUN:
        log.warning("cluster=%s submits jobs only in multirun mode: add -m. Running here, in this process.", name)
    devices, nodes = cfg.trainer.get("devices"), cfg.trainer.get("num_nodes", 1)
    if mode == RunMode.MULTIRUN and ((isinstance(devices, int) and devices > 1) or nodes > 1):
        raise ConfigError(
            f"trainer.devices={devices} (num_nodes={nodes}) in a multirun on this machine: Lightning would start "
            "each extra process by re-running the whole sweep. Use cluster=submitit_local (or cluster=slurm), "
            "which starts one process per device, or run the job without -m."
        )


def run(cfg: DictConfig) -> float | None:
    """The Hydra task: train, always close the loggers, return the metric a sweeper optimises.

    A module-level function (wrapped below, not decorated) so submitit pickles it by reference and a job imports it
    from the code snapshot of its sweep.
    """
    check_launch(cfg)
    try:
        metrics = train(cfg)
    finally:
        close_loggers()
    return metrics.get(cfg.get("optimized_metric") or "val/loss_after")


main = hydra.main(version_base="1.3", config_path=config_path(), config_name="train")(run)

if __name__ == "__main__":
    main()

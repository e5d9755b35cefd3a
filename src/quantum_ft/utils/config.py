"""Where the configs live, the project's OmegaConf resolvers, and checks that run before anything loads."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

CONF_PACKAGE = "pkg://quantum_ft.conf"
CONF_ENV = "QUANTUM_FT_CONF_DIR"


def conf_dir() -> Path:
    """The directory of the configs: quantum_ft/conf inside the installed package (package data), or
    $QUANTUM_FT_CONF_DIR when set (a sweep's frozen snapshot, or a test's edited copy)."""
    if os.environ.get(CONF_ENV):
        return Path(os.environ[CONF_ENV]).resolve()
    return Path(__file__).resolve().parents[1] / "conf"


def config_path() -> str:
    """What the entry points give `hydra.main`: the package's configs by `pkg://` (they work from a plain
    `pip install .`, whatever the working directory), or the directory $QUANTUM_FT_CONF_DIR names."""
    return f"file://{conf_dir()}" if os.environ.get(CONF_ENV) else CONF_PACKAGE


def resource(name: str) -> str:
    """Path of a file vendored in quantum_ft/resources (datasets; see SOURCES.md there)."""
    return str(files("quantum_ft") / "resources" / name)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("qft.resource"):
        OmegaConf.register_new_resolver("qft.resource", resource)


register_resolvers()


class ConfigError(ValueError):
    """A configuration that cannot run here, with what to change."""


def check_cuda_requirements(cfg: DictConfig) -> None:
    """Refuse CUDA-only options on a machine without CUDA before minutes go into loading a model."""
    if torch.cuda.is_available():
        return
    problems = []
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in {"gpu", "cuda"}:
        problems.append(f"trainer.accelerator={accelerator} (use trainer.accelerator=cpu)")
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision in {"16-mixed", "16", "16-true"}:
        problems.append(f"trainer.precision={precision} (fp16 autocast needs CUDA; use bf16-mixed or 32-true)")
    strategy = cfg.trainer.get("strategy")
    strategy_target = str(strategy.get("_target_", "")) if hasattr(strategy, "get") else str(strategy)
    for name, option in [("FSDP", "trainer=fsdp"), ("DeepSpeed", "trainer=deepspeed")]:
        if name.lower() in strategy_target.lower():
            problems.append(f"{option} (Lightning runs {name} on CUDA GPUs only; use trainer=ddp on CPU)")
    target = str(cfg.optimizer.get("_target_", ""))
    if "bitsandbytes" in target:
        problems.append(
            f"optimizer={target.rsplit('.', 1)[-1]} (bitsandbytes optimisers need CUDA; use optimizer=adamw)"
        )
    if problems:
        raise ConfigError(
            "These options need an NVIDIA GPU, and CUDA is not available here:\n  - " + "\n  - ".join(problems)
        )


def resolve_ckpt_path(setting: str | None, output_dir: Path) -> str | None:
    """`auto`: resume from the newest of <output_dir>/checkpoints/last.ckpt and Lightning's SLURM requeue
    checkpoints (<output_dir>/hpc_ckpt_<n>.ckpt) when there is one; `last`: checkpoints/last.ckpt, which must
    exist; a path: that file, which must exist; null: start fresh."""
    last = output_dir / "checkpoints" / "last.ckpt"
    if setting in (None, "null", "none"):
        return None
    if setting == "auto":
        found = [p for p in [last, *output_dir.glob("hpc_ckpt_*.ckpt")] if p.exists()]  # DeepSpeed: a folder
        return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None
    path = last if setting == "last" else Path(setting).expanduser()
    if not path.exists():
        raise ConfigError(
            f"ckpt_path={setting} points at nothing: {path} does not exist. Give the path of a .ckpt file, "
            "or run with the same hydra.run.dir as the run to resume (ckpt_path=last), or drop ckpt_path."
        )
    return str(path)

"""Where the configs live, the project's OmegaConf resolvers, and checks that run before anything loads."""

from __future__ import annotations

import importlib.util
import os
from importlib.resources import files
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

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
    return str(conf_dir()) if os.environ.get(CONF_ENV) else CONF_PACKAGE  # hydra.main takes an absolute path


def compose_config(
    name: str, overrides: list[str] | tuple[str, ...] = (), output_dir: str | None = None, hydra: bool = False
) -> DictConfig:
    """A primary config (train, eval, ...) composed as the command line would, outside a Hydra app: for chat,
    notebooks and tests. `output_dir` fills `paths.output_dir`, which only a running Hydra job knows; `hydra`
    keeps the `hydra` node (launcher, sweeper)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides), return_hydra_config=hydra)
    if hydra:
        return cfg
    if "paths" in cfg:  # train/eval; qasm_generate has its own output.dir
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir) if output_dir else "/nonexistent-output"
    return cfg


def resource(name: str) -> str:
    """Path of a file vendored in quantum_ft/resources (datasets; see SOURCES.md there)."""
    return str(files("quantum_ft") / "resources" / name)


def stage_attribute(target: str, name: str) -> str:
    """An attribute a stage class declares (its `monitor` and `monitor_mode`), read from its `_target_` name, so a
    config can default to it (`optimized_metric`) without building the stage."""
    from hydra.utils import get_class

    return getattr(get_class(target), name)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("qft.resource"):
        OmegaConf.register_new_resolver("qft.resource", resource)
    if not OmegaConf.has_resolver("qft.stage"):
        OmegaConf.register_new_resolver("qft.stage", stage_attribute)


register_resolvers()


class ConfigError(ValueError):
    """A configuration that cannot run here, with what to change."""


def check_requirements(cfg: DictConfig) -> None:
    """Refuse, before minutes go into loading a model, options whose optional package is not installed and
    CUDA-only options on a machine without CUDA."""
    targets = {key: str((cfg.get(key) or {}).get("_target_", "")) for key in ("adapter", "optimizer")}
    needs = [f"{key}={target.rsplit('.', 1)[-1]}" for key, target in targets.items() if "bitsandbytes" in target]
    if targets["adapter"].endswith("QLoraAdapter"):
        needs.append("adapter=qlora")
    if needs and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            f"{', '.join(needs)} needs bitsandbytes, which is not installed: pip install 'quantum_ft[qlora]' "
            "(or pip install bitsandbytes)."
        )
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

"""The one way every entry point gets its model (train, eval, chat, export): the `model` group's base with the
`adapter` group's adapter applied; with `checkpoint`, a trained run rebuilt from its artifact (base + trained
adapter, any adapter type) or a folder holding an exported Hugging Face model; with `init_from`, a trained run's
adapter to train further (SFT then GRPO)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from quantum_ft.adapters.base import Adapter
from quantum_ft.artifacts import find_artifact, read_artifact_config
from quantum_ft.models.base import ModelSource
from quantum_ft.utils.config import ConfigError


@dataclass
class BuiltModel:
    model: torch.nn.Module
    tokenizer: Any
    source: ModelSource | None  # None for an exported folder: it is its own base
    adapter: Adapter | None  # None: the base model as it is
    description: str


def build_model(cfg: DictConfig, quantized: bool = True) -> BuiltModel:
    """The model `cfg` names. `quantized=False` loads a QLoRA run's base in full precision (for merging)."""
    if cfg.get("checkpoint"):
        return from_checkpoint(Path(str(cfg.checkpoint)).expanduser(), quantized)
    if cfg.get("init_from"):
        return continue_from(Path(str(cfg.init_from)).expanduser(), cfg, quantized)
    source: ModelSource = instantiate(cfg.model)
    adapter: Adapter | None = instantiate(cfg.adapter) if cfg.get("adapter") else None
    return _assemble(source, adapter, quantized, source.load_tokenizer(), apply=True)


def from_checkpoint(path: Path, quantized: bool = True) -> BuiltModel:
    """A run's output directory or its artifact/ (base + trained adapter), or an exported model (config.json)."""
    artifact = find_artifact(path)
    if artifact is not None:
        return _from_artifact(artifact, read_artifact_config(artifact), quantized, trainable=False)
    if (path / "config.json").is_file():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return BuiltModel(
            AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), None, None, str(path)
        )
    raise ConfigError(
        f"checkpoint={path}: not a training run (no artifact/ with its config), and not an exported model "
        "(no config.json). Give a run's output directory, its artifact/, or a folder written by quantum_ft.export."
    )


def continue_from(path: Path, cfg: DictConfig, quantized: bool = True) -> BuiltModel:
    """A new run starting from a finished run's trained adapter: that run's base and adapter (its settings, e.g.
    LoRA's rank, come from the artifact), loaded trainable. The configured model and adapter must be of the same
    kind, so that a config cannot silently say one thing and train another."""
    artifact = find_artifact(path)
    if artifact is None:
        raise ConfigError(
            f"init_from={path}: not a finished training run (no artifact/ with its config). Give the output "
            "directory of the run to start from (e.g. the SFT run) or its artifact/."
        )
    run = read_artifact_config(artifact)
    for group, key in (("model", "name"), ("adapter", "_target_")):
        theirs, ours = run[group].get(key), cfg[group].get(key) if cfg.get(group) else None
        if theirs != ours:
            raise ConfigError(
                f"init_from={artifact} was trained with {group} {key}={theirs}; this run configures {ours}. "
                f"Choose the same {group} (its settings are taken from the artifact)."
            )
    with open_dict(cfg):
        cfg.adapter = run.adapter  # what is trained is the artifact's adapter: this run's artifact says so too
    return _from_artifact(artifact, run, quantized, trainable=True)


def _from_artifact(artifact: Path, run: DictConfig, quantized: bool, trainable: bool) -> BuiltModel:
    """The artifact's base with its trained adapter loaded (trainable to train it further)."""
    from transformers import AutoTokenizer

    built = _assemble(
        instantiate(run.model), instantiate(run.adapter), quantized, AutoTokenizer.from_pretrained(artifact)
    )
    built.model = built.adapter.load(built.model, artifact, trainable=trainable)
    built.description += f" ({artifact})"
    return built


def _assemble(
    source: ModelSource, adapter: Adapter | None, quantized: bool, tokenizer: Any, apply: bool = False
) -> BuiltModel:
    """The base loaded as the adapter needs it (4-bit for QLoRA unless `quantized=False`), the adapter applied
    when `apply` (a fresh run) and not when a trained one is about to be loaded onto it."""
    quantization = adapter.quantization_config() if adapter is not None and quantized else None
    model = source.load_model(quantization_config=quantization)
    if apply and adapter is not None:
        model = adapter.apply(model)
    name = f"{source.name} + {adapter.name}" if adapter is not None else source.name
    return BuiltModel(model, tokenizer, source, adapter, name)

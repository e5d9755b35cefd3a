"""The final artifact of a run: adapter (PEFT format) or full model, tokenizer, resolved config and a
reference to the base model, so export/chat/eval can rebuild the trained model from this folder alone."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from quantum_ft.adapters.base import Adapter
from quantum_ft.models.base import ModelSource

CONFIG_FILE = "quantum_ft_config.yaml"
BASE_FILE = "base_model.json"


def save_artifact(
    directory: Path, cfg: DictConfig, source: ModelSource, adapter: Adapter, model: torch.nn.Module, tokenizer
) -> Path:
    """Written next to the target and renamed into place, so an artifact is either whole or absent."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        adapter.save(model, tmp)
        tokenizer.save_pretrained(tmp)
        OmegaConf.save(cfg, tmp / CONFIG_FILE, resolve=True)
        (tmp / BASE_FILE).write_text(json.dumps(source.describe(), indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def find_artifact(path: str | Path) -> Path:
    """Accept a run's output directory or its artifact directory."""
    path = Path(path).expanduser()
    for candidate in (path, path / "artifact"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"{path} is not a quantum_ft run or artifact directory (no {CONFIG_FILE} in it or in its artifact/)."
    )


def load_trained(artifact: str | Path, quantized: bool = True) -> tuple[torch.nn.Module, Any, Adapter, DictConfig]:
    """(trained model, tokenizer, adapter, config) rebuilt from an artifact directory. `quantized=False`
    loads a QLoRA run's base in full precision (for merging)."""
    directory = find_artifact(artifact)
    cfg = OmegaConf.load(directory / CONFIG_FILE)
    source: ModelSource = instantiate(cfg.model)
    adapter: Adapter = instantiate(cfg.adapter)
    base = source.load_model(quantization_config=adapter.quantization_config() if quantized else None)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    return adapter.load(base, directory), tokenizer, adapter, cfg

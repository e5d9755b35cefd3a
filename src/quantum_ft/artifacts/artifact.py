"""The final artifact of a run: adapter (PEFT format) or full model, tokenizer, resolved config and a reference to
the base model, so export, chat and eval rebuild the trained model from this folder alone (models.build_model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from quantum_ft.utils.io import atomic_directory

CONFIG_FILE = "quantum_ft_config.yaml"
BASE_FILE = "base_model.json"


def save_artifact(directory: Path, cfg: DictConfig, base: dict[str, Any], save_model: Any, tokenizer: Any) -> Path:
    """Write the artifact next to its place and rename it in, so it is either whole or absent.

    `save_model(folder)` writes the trained weights (the adapter's `save`), `base` is the model source's
    `describe()`."""
    with atomic_directory(directory) as tmp:
        save_model(tmp)
        tokenizer.save_pretrained(tmp)
        OmegaConf.save(cfg, tmp / CONFIG_FILE, resolve=True)
        (tmp / BASE_FILE).write_text(json.dumps(base, indent=2))
    return Path(directory)


def is_artifact(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


def find_artifact(path: str | Path) -> Path | None:
    """The artifact folder of a run's output directory or the folder itself; None when it is neither."""
    path = Path(path).expanduser()
    return next((c for c in (path, path / "artifact") if is_artifact(c)), None)


def read_artifact_config(directory: Path) -> DictConfig:
    return OmegaConf.load(directory / CONFIG_FILE)

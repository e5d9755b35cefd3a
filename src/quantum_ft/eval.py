"""`python -m quantum_ft.eval`: evaluate a base model, a training run or an exported model (conf/eval.yaml).

Thin on purpose: `evaluate(cfg)` is a plain function the tests call with a composed config; the tasks themselves
are in quantum_ft.evaluation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from quantum_ft.evaluation import flat_metrics, run_evaluation
from quantum_ft.evaluation.tasks import CHOICE_TASKS
from quantum_ft.utils.artifact import find_artifact, load_trained
from quantum_ft.utils.config import ConfigError, config_path

log = logging.getLogger("quantum_ft")


def load_model(cfg: DictConfig) -> tuple[torch.nn.Module, Any, str]:
    """(model, tokenizer, description) for `checkpoint`: null (the model group), a run / artifact, or a folder
    holding an exported Hugging Face model."""
    checkpoint = cfg.get("checkpoint")
    if not checkpoint:
        source = instantiate(cfg.model)
        return source.load_model(), source.load_tokenizer(), source.name
    path = Path(str(checkpoint)).expanduser()
    try:
        model, tokenizer, adapter, run_cfg = load_trained(find_artifact(path))
        return model, tokenizer, f"{run_cfg.model.get('name', 'model')} + {adapter.name} ({path})"
    except FileNotFoundError:
        pass
    if (path / "config.json").is_file():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), str(path)
    raise ConfigError(
        f"checkpoint={checkpoint}: not a training run (no artifact/ with its config), and not an exported model "
        "(no config.json). Give a run's output directory, its artifact/, or a folder written by quantum_ft.export."
    )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    model, tokenizer, description = load_model(cfg)
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    model.to("cpu" if device == "auto" else device)
    log.info("Evaluating %s on %s", description, ", ".join(cfg.eval.tasks))
    needs_data = any(t not in CHOICE_TASKS for t in cfg.eval.tasks)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer) if needs_data else None
    results = run_evaluation(model, tokenizer, cfg.eval, out, datamodule)
    log.info("Results: %s", out / "results.md")
    return results


def run(cfg: DictConfig) -> float | None:
    """The Hydra task; returns the metric a sweeper optimises (eval/mmlu/accuracy by default)."""
    results = evaluate(cfg)
    return flat_metrics(results).get(cfg.get("optimized_metric"))


main = hydra.main(version_base="1.3", config_path=config_path(), config_name="eval")(run)

if __name__ == "__main__":
    main()

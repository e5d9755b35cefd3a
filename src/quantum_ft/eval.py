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
from quantum_ft.evaluation.tasks import DATA_TASKS
from quantum_ft.models.build import build_model
from quantum_ft.utils.config import config_path

log = logging.getLogger("quantum_ft")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    built = build_model(cfg)
    model, tokenizer = built.model, built.tokenizer
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
    model.to("cpu" if device == "auto" else device)
    log.info("Evaluating %s on %s", built.description, ", ".join(cfg.eval.tasks))
    needs_data = any(t in DATA_TASKS for t in cfg.eval.tasks)
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

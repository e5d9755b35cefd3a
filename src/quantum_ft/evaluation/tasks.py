"""Run the configured evaluation tasks on a model and write results.json and results.md.

Tasks: the k-shot exams (mmlu, cmmlu, ceval: harness.py), held-out perplexity and rouge (text_metrics.py), and
lm_eval, any lm-evaluation-harness task on the same model (lm_eval_backend.py, an optional extra).

Used by `python -m quantum_ft.eval` and, after fit, by training (`eval.tasks=[...]`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from quantum_ft.evaluation import lm_eval_backend, qasm_task
from quantum_ft.evaluation.choice_data import Subject, load_hub, load_local, load_mapping
from quantum_ft.evaluation.harness import CHINESE, ENGLISH, evaluate_subjects, summarize
from quantum_ft.evaluation.text_metrics import perplexity, rouge
from quantum_ft.utils.config import ConfigError
from quantum_ft.utils.io import atomic_write

log = logging.getLogger(__name__)
CHOICE_TASKS = ("mmlu", "cmmlu", "ceval")
DATA_TASKS = ("perplexity", "rouge")  # on the data group's held-out split
TASKS = (*CHOICE_TASKS, *DATA_TASKS, "lm_eval", "qasm")


def load_choice_task(task: str, settings: DictConfig) -> list[Subject]:
    options = settings.get(task) or {}
    subjects = list(settings.subjects) if settings.get("subjects") else None
    split = options.get("split")
    if options.get("path"):
        return load_local(
            options.path,
            eval_split=split or "test",
            mapping=load_mapping(options.get("mapping")),
            subjects=subjects,
            max_samples=settings.get("max_samples"),
        )
    if task == "mmlu":
        raise ConfigError("eval.mmlu.path is empty: it names the vendored MMLU (${qft.resource:mmlu.zip}) by default")
    return load_hub(task, split, subjects, settings.get("max_samples"))


def run_evaluation(
    model: torch.nn.Module,
    tokenizer: Any,
    settings: DictConfig,
    out_dir: Path,
    datamodule: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate on every task in `settings.tasks`; returns {task: results} and writes them into out_dir."""
    unknown = [t for t in settings.tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"Unknown evaluation task(s) {unknown}: choose from {', '.join(TASKS)}")
    results: dict[str, Any] = {}
    for task in settings.tasks:
        started = time.perf_counter()
        if task in CHOICE_TASKS:
            subjects = load_choice_task(task, settings)
            template = CHINESE if task in ("cmmlu", "ceval") else ENGLISH
            answers = evaluate_subjects(
                model,
                tokenizer,
                subjects,
                template,
                settings.k_shot,
                settings.batch_size,
                progress,
                desc=task,
                journal=out_dir / "partial" / f"{task}-{_fingerprint(task, settings)}.jsonl",
            )
            results[task] = summarize(answers, subjects) | {"k_shot": settings.k_shot}
        elif task == "lm_eval":
            results[task] = lm_eval_backend.run_lm_eval(model, tokenizer, settings.lm_eval, out_dir)
        elif task == "qasm":
            results[task] = qasm_task.evaluate_qasm(model, tokenizer, settings.qasm, out_dir, progress)
        else:
            if datamodule is None:
                raise ConfigError(f"eval task {task} needs a dataset: configure the data group")
            datamodule.setup("fit")
            if task == "perplexity":
                results[task] = perplexity(model, datamodule.val_dataloader(), progress)
            else:
                examples = datamodule.val_set[: settings.rouge.max_samples or None]
                results[task] = rouge(model, tokenizer, examples, settings.rouge.max_new_tokens, progress)
        results[task]["seconds"] = round(time.perf_counter() - started, 1)
        log.info("%s: %s", task, headline(task, results[task]))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "results.json", lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2)))
    table = results_table(results)
    atomic_write(out_dir / "results.md", lambda tmp: Path(tmp).write_text(table))
    print(table, flush=True)
    return results


# Bumped when the harness's answers change for the same settings, so that journals of an older harness are not
# resumed: 2 scores the whole prompt's tokenization (1 joined the prefix's and the question's ids).
HARNESS_VERSION = 2


def _fingerprint(task: str, settings: DictConfig) -> str:
    """Names the settings a journal of answers is valid for (rerunning with other settings starts afresh)."""
    key = [
        HARNESS_VERSION,
        task,
        settings.k_shot,
        settings.get("max_samples"),
        OmegaConf.to_container(settings.get(task) or {}),
    ]
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def headline(task: str, result: dict[str, Any]) -> str:
    if task in CHOICE_TASKS:
        return f"accuracy {result['accuracy']:.4f} over {result['questions']} questions"
    if task == "lm_eval":
        return lm_eval_backend.headline(result)
    if task == "qasm":
        return qasm_task.headline(result)
    if task == "perplexity":
        return f"perplexity {result['perplexity']:.3f} over {result['tokens']} tokens"
    return f"ROUGE-1 {result['rouge1']:.4f}, ROUGE-2 {result['rouge2']:.4f}, ROUGE-L {result['rougeL']:.4f}"


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Scalars for loggers and metrics.json: eval/<task>/<metric>, categories included; lm-eval's as
    eval/lm_eval/<lm-eval task>/<metric>."""
    flat = {}
    for task, result in results.items():
        if task == "qasm":
            for row in ("model", "reference", "random_parameters"):
                for key, value in result[row].items():
                    if isinstance(value, int | float):
                        flat[f"eval/qasm/{row}/{key}"] = float(value)
            continue
        for key, value in result.items():
            if isinstance(value, int | float) and key != "seconds":
                flat[f"eval/{task}/{key}"] = float(value)
        for category, value in result.get("categories", {}).items():
            flat[f"eval/{task}/{category}"] = value["accuracy"]
        if task == "lm_eval":
            for name, metrics in result["tasks"].items():
                for metric, value in metrics.items():
                    if isinstance(value, int | float) and metric not in ("samples", "n_shot"):
                        flat[f"eval/{task}/{name}/{metric}"] = float(value)
    return flat


def results_table(results: dict[str, Any]) -> str:
    lines = ["# Evaluation", ""]
    for task, result in results.items():
        lines.append(f"## {task}: {headline(task, result)} ({result['seconds']} s)")
        if task in CHOICE_TASKS:
            letters = ", ".join(f"{k} {v}" for k, v in result.get("predicted_letters", {}).items())
            lines += ["", f"{result['k_shot']}-shot. Answers given: {letters}."]
            if "answer_letters" in result:  # the letter-preference floor (harness.answer_key)
                key = ", ".join(f"{k} {v}" for k, v in result["answer_letters"].items())
                always = f"always {result['commonest_letter']} scores {result['commonest_letter_accuracy']:.4f}"
                lines.append(f"Correct answers: {key} ({always}).")
            lines += ["", "| category | accuracy | questions |", "|---|---|---|"]
            for name, value in result["categories"].items():
                lines.append(f"| {name} | {value['accuracy']:.4f} | {value['questions']} |")
            lines += ["", "| subject | category | accuracy | questions |", "|---|---|---|---|"]
            for name, value in result["subjects"].items():
                lines.append(f"| {name} | {value['category']} | {value['accuracy']:.4f} | {value['questions']} |")
        elif task == "lm_eval":
            lines += lm_eval_backend.table(result)
        elif task == "qasm":
            lines += qasm_task.table(result)
        lines.append("")
    return "\n".join(lines)

"""lm-evaluation-harness as an evaluation task: `eval.tasks=[lm_eval]` with `eval.lm_eval.tasks=[...]`.

The model is the one in memory -- base, any adapter (PEFT-wrapped, the quantum ones included), from a run, an
artifact or an exported folder, as `quantum_ft.eval` or training built it -- handed to lm-eval's `HFLM` as a
pre-initialised model with its tokenizer: nothing is loaded again by name. Tasks are lm-eval's own (names,
groups, tags) or task YAMLs in `eval.lm_eval.include_path`; offline, a task reads local files (docs/lm_eval.md
shows a local-CSV task). lm-eval is an optional extra (`pip install -e ".[lmeval]"`).

Results: per task, each metric (`acc`, `acc_norm`, `exact_match/<filter>`, ...) with its stderr, in the run's
results.json / results.md and as `eval/lm_eval/<task>/<metric>` metrics; lm-eval's own results (configs,
versions, sample counts) in `<out>/lm_eval.json`, and every document's prompt and scores in
`<out>/lm_eval_samples.jsonl` with `eval.lm_eval.log_samples=true`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from quantum_ft.utils.config import ConfigError
from quantum_ft.utils.io import atomic_write
from quantum_ft.utils.modes import evaluating

log = logging.getLogger(__name__)
INSTALL = 'pip install -e ".[lmeval]"   (or: pip install "lm-eval>=0.4.13,<0.5")'


def require_lm_eval():
    """The lm_eval package, or a ConfigError that says how to install it."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM  # noqa: F401  (its import errors show here, not mid-run)
    except ImportError as err:
        raise ConfigError(
            f"eval.tasks=[lm_eval] runs lm-evaluation-harness, an optional extra that is not installed ({err}). "
            f"Install it with: {INSTALL}"
        ) from err
    return lm_eval


def wrap_model(model: torch.nn.Module, tokenizer: Any, batch_size: int, max_length: int | None = None):
    """lm-eval's HFLM around the model in memory (no loading by name, no device moves)."""
    require_lm_eval()
    from lm_eval.models.huggingface import HFLM

    if tokenizer is None:
        raise ConfigError("eval.tasks=[lm_eval] needs a model with a Hugging Face tokenizer (this one has none)")
    if not hasattr(model, "config"):
        raise ConfigError(f"eval.tasks=[lm_eval] needs a transformers-style model with a config, not {type(model)}")
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length, backend="causal")


def _metric_name(key: str) -> str:
    """lm-eval's "acc,none" -> "acc"; "exact_match,strict-match" -> "exact_match/strict-match"."""
    metric, _, filter_name = key.partition(",")
    return metric if filter_name in ("", "none") else f"{metric}/{filter_name}"


def _task_metrics(values: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        if key == "alias" or "," not in key or isinstance(value, bool) or not isinstance(value, int | float):
            continue  # "N/A" stderrs, aliases, sample counts
        out[_metric_name(key)] = float(value)
    return out


def run_lm_eval(
    model: torch.nn.Module, tokenizer: Any, options: DictConfig, out_dir: Path, lm: Any = None
) -> dict[str, Any]:
    """Run `options.tasks` through `lm_eval.simple_evaluate` on the model; the summary for results.json.

    `lm`: an lm-eval LM to use instead of wrapping `model` (tests, other backends)."""
    lm_eval = require_lm_eval()
    from lm_eval.tasks import TaskManager

    tasks = list(options.get("tasks") or [])
    if not tasks:
        raise ConfigError(
            "eval.tasks=[lm_eval] but eval.lm_eval.tasks is empty: name lm-eval tasks, e.g. "
            "eval.lm_eval.tasks=[arc_easy], or local ones with eval.lm_eval.include_path=<folder of task YAMLs>"
        )
    include = options.get("include_path")
    include = [str(Path(p).expanduser()) for p in ([include] if isinstance(include, str) else include or [])]
    manager = TaskManager(include_path=include or None, include_defaults=options.get("include_defaults", True))
    unknown = [t for t in tasks if t not in manager.all_tasks and not Path(str(t)).is_file()]
    if unknown:
        where = (
            f"lm-eval's tasks and {include}"
            if include
            else "lm-eval's own tasks; local ones: eval.lm_eval.include_path"
        )
        raise ConfigError(f"Unknown lm-eval task(s) {unknown} (searched {where})")
    with evaluating(model):
        lm = lm or wrap_model(model, tokenizer, int(options.get("batch_size") or 1), options.get("max_length"))
        output = lm_eval.simple_evaluate(
            model=lm,
            tasks=tasks,
            num_fewshot=options.get("num_fewshot"),
            limit=options.get("limit"),
            task_manager=manager,
            log_samples=bool(options.get("log_samples")),
            bootstrap_iters=int(options.get("bootstrap_iters", 100000)),
            apply_chat_template=bool(options.get("apply_chat_template")),
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = output.pop("samples", None)
    raw = {k: output.get(k) for k in ("results", "groups", "group_subtasks", "configs", "versions", "n-shot")}
    raw |= {"n-samples": output.get("n-samples"), "lm_eval_version": output.get("lm_eval_version")}
    text = json.dumps(raw, indent=2, default=str)
    atomic_write(out_dir / "lm_eval.json", lambda tmp: Path(tmp).write_text(text))
    if samples is not None:
        lines = "".join(json.dumps({"task": t, **s}, default=str) + "\n" for t, rows in samples.items() for s in rows)
        atomic_write(out_dir / "lm_eval_samples.jsonl", lambda tmp: Path(tmp).write_text(lines))
    counts = output.get("n-samples") or {}
    summary = {}
    for name, values in {**(output.get("results") or {}), **(output.get("groups") or {})}.items():
        summary[name] = _task_metrics(values)
        summary[name]["samples"] = (counts.get(name) or {}).get("effective")
        summary[name]["n_shot"] = (output.get("n-shot") or {}).get(name)
    settings = OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else dict(options)
    return {"tasks": summary, "settings": settings, "lm_eval_version": output.get("lm_eval_version")}


MMLU_DOC_TO_TEXT = "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\nAnswer:"


class _QuotedNewlines(yaml.SafeDumper):
    """Writes strings holding newlines double-quoted, with \\n escapes, as lm-eval's own task YAMLs do."""


_QuotedNewlines.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style='"' if "\n" in s else None)
)


def write_mmlu_tasks(
    folder: str | Path,
    source: str | Path,
    subjects: list[str],
    mapping: dict[str, dict[str, str]] | None = None,
    split: str = "test",
    prefix: str = "qft_mmlu",
) -> list[str]:
    """lm-eval tasks `<prefix>_<subject>` reading MMLU-layout CSVs (headerless: question, A-D, answer) copied
    byte for byte from `source` (a folder or zip, e.g. the vendored mmlu.zip) into `folder`, with the prompt of
    our harness (harness.ENGLISH): the same header, shots from the dev split in order, " A".." D" scored.
    Returns the task names; run them with include_path=folder."""
    from quantum_ft.evaluation.choice_data import _Source

    folder = Path(folder).expanduser().resolve()
    files = _Source(Path(source).expanduser())
    dev, evaluated = files.split("dev"), files.split(split)
    names = []
    for name in subjects:
        if name not in evaluated or name not in dev:
            raise ConfigError(f"{source}: no dev/ and {split}/ CSVs for the subject {name!r}")
        data = {}
        for part, found in (("dev", dev), (split, evaluated)):
            path = folder / "data" / f"{name}_{part}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files.read(found[name]), encoding="utf-8")
            data[part] = str(path)
        display = (mapping or {}).get(name, {}).get("name", name.replace("_", " "))
        task = {
            "task": f"{prefix}_{name}",
            "dataset_path": "csv",
            "dataset_kwargs": {
                "data_files": data,
                "column_names": ["question", "A", "B", "C", "D", "answer"],
                "na_filter": False,  # "None", "NA" and empty choices stay text
                "cache_dir": str(folder / "hf_cache"),  # datasets' Arrow copy, next to the CSVs
            },
            "test_split": split,
            "fewshot_split": "dev",
            "fewshot_config": {"sampler": "first_n"},
            "output_type": "multiple_choice",
            "description": f"The following are multiple choice questions (with answers) about {display}.\n\n",
            "doc_to_text": MMLU_DOC_TO_TEXT,
            "doc_to_choice": ["A", "B", "C", "D"],
            "doc_to_target": "{{['A', 'B', 'C', 'D'].index(answer.strip().upper())}}",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0},
        }
        text = yaml.dump(task, Dumper=_QuotedNewlines, sort_keys=False, allow_unicode=True, width=1000)
        (folder / f"{prefix}_{name}.yaml").write_text(text, encoding="utf-8")
        names.append(task["task"])
    return names


def headline(result: dict[str, Any]) -> str:
    parts = []
    for name, metrics in result["tasks"].items():
        main = next((m for m in ("acc", "acc_norm", "exact_match") if m in metrics), None)
        main = main or next((m for m in metrics if not m.endswith("_stderr") and m not in ("samples", "n_shot")), None)
        parts.append(f"{name} {main} {metrics[main]:.4f}" if main else name)
    return ", ".join(parts) or "no tasks"


def table(result: dict[str, Any]) -> list[str]:
    lines = ["", f"lm-evaluation-harness {result.get('lm_eval_version') or ''}, the model in memory.", ""]
    lines += ["| task | metric | value | stderr | n-shot | samples |", "|---|---|---|---|---|---|"]
    for name, metrics in result["tasks"].items():
        for metric, value in metrics.items():
            if metric.endswith("_stderr") or metric in ("samples", "n_shot"):
                continue
            stderr = metrics.get(metric.replace("/", "_stderr/", 1) if "/" in metric else f"{metric}_stderr")
            shown = f"{stderr:.4f}" if stderr is not None else ""
            lines.append(
                f"| {name} | {metric} | {value:.4f} | {shown} | {metrics.get('n_shot')} | {metrics.get('samples')} |"
            )
    return lines

"""Our k-shot MMLU harness against lm-evaluation-harness, question by question (issue 19).

Both score the same model in memory (SmolLM2-135M-Instruct, fp32, CPU) on the same vendored MMLU questions with
the same prompt text: lm-eval reads the CSVs copied byte for byte from quantum_ft/resources/mmlu.zip through
local task YAMLs (quantum_ft.evaluation.lm_eval_backend.write_mmlu_tasks) and runs through our lm_eval backend
(`eval.tasks=[lm_eval]`'s code). Per question: the prompts are compared as strings, the letters picked, and the
four letter scores (log-probabilities; ours from harness.subject_scores, lm-eval's from its logged samples).
The harness before the fix (the prefix's and the question's ids tokenized apart, then joined) is run too.

    python experiments/lm_eval_agreement/run.py                 # the four subjects of issue 19 and four others
    python experiments/lm_eval_agreement/run.py --write-tasks /tmp/qft_mmlu_tasks   # only the task YAMLs + CSVs

Writes results.json, results.md and per_question.jsonl here (or in --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from quantum_ft.evaluation.choice_data import LETTERS, load_local, load_mapping
from quantum_ft.evaluation.harness import ENGLISH, letter_scores, letter_token_ids, subject_scores
from quantum_ft.evaluation.lm_eval_backend import run_lm_eval, write_mmlu_tasks
from quantum_ft.utils.config import compose_config, resource

HERE = Path(__file__).parent
ISSUE = ["abstract_algebra", "anatomy", "jurisprudence", "sociology"]  # issue 19's 544 questions
OTHERS = ["college_physics", "international_law", "global_facts", "us_foreign_policy"]  # one per category


def joined_scores(model, tokenizer, subject, k_shot, batch_size, letters):
    """The harness before issue 19: prefix and question tokenized apart, their ids joined."""
    prefix = tokenizer(ENGLISH.prefix(subject, k_shot)).input_ids
    questions = [tokenizer(ENGLISH.question(q), add_special_tokens=False).input_ids for q in subject.eval]
    return letter_scores(model, prefix, questions, letters, batch_size, log_probs=True)


def compare(group, model, tokenizer, subjects, args, work: Path) -> tuple[list[dict], dict]:
    letters = letter_token_ids(tokenizer)
    rows, timing = [], {"ours": 0.0, "ours_before_fix": 0.0}
    ours, before = {}, {}
    for subject in subjects:
        started = time.perf_counter()
        ours[subject.name], plan = subject_scores(
            model, tokenizer, subject, ENGLISH, args.k_shot, args.batch_size, log_probs=True, letters=letters
        )
        timing["ours"] += time.perf_counter() - started
        assert not plan.fallback, f"{subject.name}: {len(plan.fallback)} questions fell back to a full forward"
        started = time.perf_counter()
        before[subject.name] = joined_scores(model, tokenizer, subject, args.k_shot, args.batch_size, letters)
        timing["ours_before_fix"] += time.perf_counter() - started
        print(f"{group} {subject.name}: ours {timing['ours']:.1f} s so far", flush=True)
    tasks_dir, out = work / f"tasks_{group}", work / f"lm_eval_{group}"
    mapping = load_mapping(resource("mmlu_mapping.json"))
    names = write_mmlu_tasks(tasks_dir, resource("mmlu.zip"), [s.name for s in subjects], mapping)
    options = OmegaConf.create(
        {
            "tasks": names,
            "include_path": str(tasks_dir),
            "include_defaults": False,
            "num_fewshot": args.k_shot,
            "batch_size": args.batch_size,
            "log_samples": True,
            "bootstrap_iters": 0,
            "limit": args.max_samples,
        }
    )
    started = time.perf_counter()
    summary = run_lm_eval(model, tokenizer, options, out)
    timing["lm_eval"] = time.perf_counter() - started
    samples = {}
    for line in (out / "lm_eval_samples.jsonl").read_text().splitlines():
        sample = json.loads(line)
        samples[(sample["task"], sample["doc_id"])] = sample
    for subject in subjects:
        task = f"qft_mmlu_{subject.name}"
        for i, question in enumerate(subject.eval):
            sample = samples[(task, i)]
            theirs = torch.tensor([resp[0][0] for resp in sample["resps"]])
            mine, old = ours[subject.name][i], before[subject.name][i]
            rows.append(
                {
                    "group": group,
                    "subject": subject.name,
                    "question": i,
                    "answer": question.answer,
                    "same_prompt": sample["arguments"][0][0]
                    == ENGLISH.prefix(subject, args.k_shot) + ENGLISH.question(question),
                    "ours": LETTERS[int(mine.argmax())],
                    "lm_eval": LETTERS[int(theirs.argmax())],
                    "before_fix": LETTERS[int(old.argmax())],
                    "max_abs_diff": float((mine - theirs).abs().max()),
                    "max_abs_diff_before_fix": float((old - theirs).abs().max()),
                    "lm_eval_acc": sample["acc"],
                }
            )
        summary["tasks"][task]["ours_acc"] = sum(
            r["ours"] == r["answer"] for r in rows if r["subject"] == subject.name
        ) / len(subject.eval)
    return rows, {"seconds": timing, "lm_eval": summary["tasks"], "lm_eval_version": summary["lm_eval_version"]}


def table(rows: list[dict]) -> dict:
    n = len(rows)
    return {
        "questions": n,
        "same_prompt": sum(r["same_prompt"] for r in rows),
        "ours_accuracy": sum(r["ours"] == r["answer"] for r in rows) / n,
        "lm_eval_accuracy": sum(r["lm_eval"] == r["answer"] for r in rows) / n,
        "agree": sum(r["ours"] == r["lm_eval"] for r in rows),
        "agree_before_fix": sum(r["before_fix"] == r["lm_eval"] for r in rows),
        "max_abs_diff": max(r["max_abs_diff"] for r in rows),
        "max_abs_diff_before_fix": max(r["max_abs_diff_before_fix"] for r in rows),
    }


def markdown(result: dict) -> str:
    lines = [
        "# Our MMLU harness vs lm-evaluation-harness, question by question",
        "",
        f"{result['model']}, {result['k_shot']}-shot, {result['dtype']}, batch {result['batch_size']}, "
        f"{result['threads']} CPU threads; lm-eval {result['lm_eval_version']}, torch {result['torch']}.",
        "",
        "| subject | questions | same prompt | acc ours | acc lm-eval | agree | agree before fix "
        "| max abs score diff | before fix |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in result["subjects"].items():
        lines.append(
            f"| {name} | {t['questions']} | {t['same_prompt']} | {t['ours_accuracy']:.4f} | "
            f"{t['lm_eval_accuracy']:.4f} | {t['agree']}/{t['questions']} | {t['agree_before_fix']}/{t['questions']} "
            f"| {t['max_abs_diff']:.2e} | {t['max_abs_diff_before_fix']:.2e} |"
        )
    lines += [
        "",
        "| questions | ours (s) | ours before fix (s) | lm-eval (s) | lm-eval / ours |",
        "|---|---|---|---|---|",
    ]
    for group, g in result["groups"].items():
        s = g["seconds"]
        lines.append(
            f"| {group}: {g['questions']} | {s['ours']:.1f} | {s['ours_before_fix']:.1f} | {s['lm_eval']:.1f} "
            f"| {s['lm_eval'] / s['ours']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", nargs="+", default=ISSUE)
    parser.add_argument("--others", nargs="*", default=OTHERS)
    parser.add_argument("--k-shot", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-samples", type=int, default=None, help="questions per subject (quick checks)")
    parser.add_argument("--model", default="smollm2_135m", help="a model config (conf/model/)")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--write-tasks", type=Path, help="only write the lm-eval task YAMLs and CSVs there")
    args = parser.parse_args()
    mapping = load_mapping(resource("mmlu_mapping.json"))
    if args.write_tasks:
        names = write_mmlu_tasks(args.write_tasks, resource("mmlu.zip"), [*args.subjects, *args.others], mapping)
        print("\n".join(names))
        return
    cfg = compose_config("eval", [f"model={args.model}"])
    source = instantiate(cfg.model)
    model, tokenizer = source.load_model().eval(), source.load_tokenizer()
    result = {
        "model": source.name,
        "k_shot": args.k_shot,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "groups": {},
        "subjects": {},
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for group, names in (("issue", args.subjects), ("others", args.others)):
            if not names:
                continue
            subjects = load_local(resource("mmlu.zip"), "test", mapping, names, args.max_samples)
            got, info = compare(group, model, tokenizer, subjects, args, Path(tmp))
            rows += got
            result["groups"][group] = table(got) | info
            for s in subjects:
                result["subjects"][s.name] = table([r for r in got if r["subject"] == s.name])
            print(json.dumps(result["groups"][group], indent=1), flush=True)
            result["lm_eval_version"] = info["lm_eval_version"]
    result["all"] = table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "per_question.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (args.out / "results.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

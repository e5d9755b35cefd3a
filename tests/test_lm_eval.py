"""lm-evaluation-harness as a backend (`eval.tasks=[lm_eval]`): a local-CSV task on the tiny model through the
eval command, per-document scores against the model in memory (a quantum adapter's included), agreement with our
harness on the vendored MMLU, and the install hint when the optional extra is missing."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from quantum_ft.evaluation.choice_data import load_local, load_mapping
from quantum_ft.evaluation.harness import ENGLISH, subject_scores
from quantum_ft.utils.config import ConfigError, compose_config, resource
from tests.conftest import compose_train

TASK_YAML = """\
task: qft_tiny_qa
dataset_path: csv
dataset_kwargs:
  data_files:
    train: {folder}/tiny_qa_dev.csv
    test: {folder}/tiny_qa_test.csv
  na_filter: false
  cache_dir: {folder}/hf_cache
test_split: test
fewshot_split: train
fewshot_config:
  sampler: first_n
output_type: multiple_choice
description: "Questions about colours.\\n\\n"
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: "{{{{[choice_a, choice_b, choice_c]}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
ROWS = [
    ("What colour is the sky?", "blue", "green", "red", 0),
    ("What colour is grass?", "purple", "green", "None", 1),
    ("What colour is blood?", "white", "black", "red", 2),
    ("What colour is snow?", "white", "NA", "orange", 0),
]

lm_eval = pytest.importorskip("lm_eval", reason='the optional extra: pip install -e ".[lmeval]"')


def write_task(folder: Path) -> Path:
    """The documented local-CSV task (docs/lm_eval.md), with its data, in `folder`."""
    import csv

    for name, rows in (("dev", ROWS[:2]), ("test", ROWS)):
        with (folder / f"tiny_qa_{name}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["question", "choice_a", "choice_b", "choice_c", "answer"])
            writer.writerows(rows)
    (folder / "tiny_qa.yaml").write_text(TASK_YAML.format(folder=folder))
    return folder


def compose_eval(overrides: list[str], out: Path):
    return compose_config("eval", overrides, output_dir=str(out))


def samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "lm_eval_samples.jsonl").read_text().splitlines()]


@torch.no_grad()
def continuation_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context), the whole string tokenized once, as lm-eval splits it."""
    whole = tokenizer(context + continuation).input_ids
    start = len(tokenizer(context).input_ids)
    logits = model(input_ids=torch.tensor([whole])).logits[0].float().log_softmax(-1)
    return sum(float(logits[i - 1, whole[i]]) for i in range(start, len(whole)))


@pytest.fixture(scope="module")
def tiny():
    source = instantiate(compose_train(["model=tiny"]).model)
    return source.load_model().eval(), source.load_tokenizer()


def options(**kwargs):
    base = {"include_defaults": False, "batch_size": 4, "bootstrap_iters": 0, "log_samples": True}
    return OmegaConf.create(base | kwargs)


def test_local_csv_task_through_the_eval_command(tiny, tmp_path: Path) -> None:
    from quantum_ft.eval import evaluate
    from quantum_ft.evaluation.tasks import flat_metrics

    (tmp_path / "tasks").mkdir()
    tasks = write_task(tmp_path / "tasks")
    out = tmp_path / "out"
    cfg = compose_eval(
        [
            "model=tiny",
            "eval.tasks=[lm_eval]",
            "eval.lm_eval.tasks=[qft_tiny_qa]",
            f"eval.lm_eval.include_path={tasks}",
            "eval.lm_eval.include_defaults=false",
            "eval.lm_eval.num_fewshot=1",
            "eval.lm_eval.limit=3",
            "eval.lm_eval.log_samples=true",
        ],
        out,
    )
    results = evaluate(cfg)
    task = results["lm_eval"]["tasks"]["qft_tiny_qa"]
    assert task["samples"] == 3 and task["n_shot"] == 1 and 0.0 <= task["acc"] <= 1.0 and "acc_norm" in task
    assert json.loads((out / "results.json").read_text())["lm_eval"]["tasks"]["qft_tiny_qa"]["acc"] == task["acc"]
    assert "| qft_tiny_qa | acc |" in (out / "results.md").read_text()
    assert "qft_tiny_qa" in json.loads((out / "lm_eval.json").read_text())["results"]
    assert flat_metrics(results)["eval/lm_eval/qft_tiny_qa/acc"] == task["acc"]
    model, tokenizer = tiny  # the same seeded weights the command built
    rows = samples(out)
    assert len(rows) == 3 and rows[1]["doc"]["choice_c"] == "None"  # na_filter: false keeps text as text
    for row in rows:
        context = row["arguments"][0][0]
        assert context.startswith("Questions about colours.\n\nQ: What colour is the sky?\nA: blue\n\nQ: ")
        for (ctx, cont), resp in zip(row["arguments"], row["resps"]):
            assert resp[0][0] == pytest.approx(continuation_logprob(model, tokenizer, ctx, cont), abs=1e-4)


def test_lm_eval_agrees_with_our_harness_on_the_vendored_mmlu(tiny, tmp_path: Path) -> None:
    """The same prompts, byte for byte, and the same letter scores (our harness's log-probabilities)."""
    from quantum_ft.evaluation.lm_eval_backend import run_lm_eval, write_mmlu_tasks

    model, tokenizer = tiny
    mapping = load_mapping(resource("mmlu_mapping.json"))
    names = write_mmlu_tasks(tmp_path / "tasks", resource("mmlu.zip"), ["sociology"], mapping)
    run_lm_eval(model, tokenizer, options(tasks=names, include_path=str(tmp_path / "tasks"), num_fewshot=2, limit=5),
                tmp_path)  # fmt: skip
    rows = sorted(samples(tmp_path), key=lambda r: r["doc_id"])
    (subject,) = load_local(resource("mmlu.zip"), "test", mapping, ["sociology"], max_samples=5)
    ours, plan = subject_scores(model, tokenizer, subject, ENGLISH, k_shot=2, log_probs=True)
    for row, question, mine in zip(rows, subject.eval, ours, strict=True):
        assert row["arguments"][0][0] == ENGLISH.prefix(subject, 2) + ENGLISH.question(question)
        theirs = torch.tensor([resp[0][0] for resp in row["resps"]])
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)


def test_a_quantum_adapter_is_evaluated_in_memory(tiny, tmp_path: Path) -> None:
    """A PEFT-wrapped vqc adapter (non-zero start): lm-eval scores that model, not its base."""
    from quantum_ft.evaluation.lm_eval_backend import run_lm_eval

    base_model, tokenizer = tiny
    cfg = compose_train(["model=tiny", "adapter=vqc", "adapter.init=reference"])
    model = instantiate(cfg.adapter).apply(instantiate(cfg.model).load_model()).eval()
    tasks = write_task(tmp_path)
    result = run_lm_eval(model, tokenizer, options(tasks=["qft_tiny_qa"], include_path=str(tasks), limit=2), tmp_path)
    assert result["tasks"]["qft_tiny_qa"]["samples"] == 2
    row = samples(tmp_path)[0]
    (context, continuation), logprob = row["arguments"][0], row["resps"][0][0][0]
    assert logprob == pytest.approx(continuation_logprob(model, tokenizer, context, continuation), abs=1e-4)
    assert not math.isclose(logprob, continuation_logprob(base_model, tokenizer, context, continuation), abs_tol=1e-4)


def test_without_lm_eval_the_option_says_how_to_install(tiny, tmp_path: Path, monkeypatch) -> None:
    from quantum_ft.evaluation.tasks import run_evaluation

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    settings = compose_eval(["eval.tasks=[lm_eval]", "eval.lm_eval.tasks=[arc_easy]"], tmp_path).eval
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[lmeval\]"'):
        run_evaluation(*tiny, settings, tmp_path, progress=False)


def test_lm_eval_settings_are_checked(tiny, tmp_path: Path) -> None:
    from quantum_ft.evaluation.lm_eval_backend import run_lm_eval

    with pytest.raises(ConfigError, match="eval.lm_eval.tasks is empty"):
        run_lm_eval(*tiny, options(tasks=[]), tmp_path)
    with pytest.raises(ConfigError, match=r"Unknown lm-eval task\(s\) \['no_such_task'\]"):
        run_lm_eval(*tiny, options(tasks=["no_such_task"], include_path=str(tmp_path)), tmp_path)

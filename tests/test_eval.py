"""Evaluation: the k-shot prompt and letter scoring against a hand-written example and a plain forward pass,
the CSV readers, ROUGE and perplexity against hand-computed values, and the eval command on the tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from quantum_ft.data.encode import IGNORE_INDEX, Encoded
from quantum_ft.evaluation.choice_data import EvalDataError, Question, Subject, load_hub, load_local
from quantum_ft.evaluation.harness import (
    ENGLISH,
    SubjectResult,
    evaluate_subjects,
    letter_scores,
    letter_token_ids,
    summarize,
)
from quantum_ft.evaluation.text_metrics import perplexity, rouge_l, rouge_n, rouge_tokens, split_prompt_and_reference
from quantum_ft.models.build import from_checkpoint
from quantum_ft.utils.config import compose_config, resource
from tests import helpers

SUBJECT = Subject(
    name="astronomy",
    display="astronomy",
    category="STEM",
    dev=[Question("What is the Sun?", ("A planet", "A star", "A moon", "A comet"), "B")],
    eval=[
        Question("Which planet is largest?", ("Mars", "Venus", "Jupiter", "Mercury"), "C"),
        Question("How many moons has Mars?", ("0", "1", "2", "3"), "C"),
        Question("What orbits the Earth?", ("The Moon", "The Sun", "Mars", "Venus"), "A"),
    ],
)


def compose_eval(overrides: list[str], out: Path):
    return compose_config("eval", overrides, output_dir=str(out))


def test_prompt_matches_the_hand_written_one() -> None:
    expected = (
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "What is the Sun?\nA. A planet\nB. A star\nC. A moon\nD. A comet\nAnswer: B\n\n"
    )
    assert ENGLISH.prefix(SUBJECT, k_shot=1) == expected
    assert ENGLISH.prefix(SUBJECT, k_shot=0) == expected.split("What")[0]
    assert (
        ENGLISH.question(SUBJECT.eval[0])
        == "Which planet is largest?\nA. Mars\nB. Venus\nC. Jupiter\nD. Mercury\nAnswer:"
    )


def test_letters_are_single_tokens_after_the_cue(smol_tokenizer) -> None:
    ids = letter_token_ids(smol_tokenizer)
    assert [smol_tokenizer.decode([i]) for i in ids] == [" A", " B", " C", " D"]
    cue = smol_tokenizer("Answer:", add_special_tokens=False).input_ids
    assert smol_tokenizer("Answer: C", add_special_tokens=False).input_ids == [*cue, ids[2]]


@pytest.fixture(scope="module")
def tiny_model():
    return helpers.tiny_model(hidden_size=32, intermediate_size=64)


def test_cached_batched_scores_equal_a_plain_forward_of_each_prompt(tiny_model, smol_tokenizer) -> None:
    """The prefix's key/value cache, right padding and batching change nothing: each question's letter logits
    equal those of one forward pass over its whole prompt, and the prediction is their argmax."""
    letters = letter_token_ids(smol_tokenizer)
    prefix = smol_tokenizer(ENGLISH.prefix(SUBJECT, 1)).input_ids
    questions = [smol_tokenizer(ENGLISH.question(q), add_special_tokens=False).input_ids for q in SUBJECT.eval]
    assert len({len(q) for q in questions}) > 1  # padding is exercised
    batched = letter_scores(tiny_model, prefix, questions, letters, batch_size=2)
    with torch.no_grad():
        plain = torch.stack([tiny_model(torch.tensor([prefix + q])).logits[0, -1, letters] for q in questions])
    torch.testing.assert_close(batched, plain, atol=1e-5, rtol=1e-5)
    whole = [smol_tokenizer(ENGLISH.prefix(SUBJECT, 1) + ENGLISH.question(q)).input_ids for q in SUBJECT.eval]
    with torch.no_grad():  # the harness scores the whole prompt's ids (tests/test_eval_tokenization.py)
        plain = torch.stack([tiny_model(torch.tensor([ids])).logits[0, -1, letters] for ids in whole])
    result = evaluate_subjects(tiny_model, smol_tokenizer, [SUBJECT], k_shot=1, batch_size=2, progress=False)[0]
    assert result.predictions == ["ABCD"[i] for i in plain.argmax(1).tolist()]
    assert result.correct == sum(p == q.answer for p, q in zip(result.predictions, SUBJECT.eval))
    counts = summarize([result])["predicted_letters"]
    assert sum(counts.values()) == 3 and all(counts[p] >= 1 for p in result.predictions)


def test_the_answer_key_and_the_score_of_always_answering_its_commonest_letter() -> None:
    """SUBJECT's correct answers are C, C, A: always answering C scores 2 of 3; a model that answered C, C, C
    scores the same with no knowledge, which the summary shows beside its accuracy."""
    result = SubjectResult("astronomy", "STEM", correct=2, total=3, predictions=["C", "C", "C"])
    summary = summarize([result], [SUBJECT])
    assert summary["answer_letters"] == {"A": 1, "B": 0, "C": 2, "D": 0}
    assert summary["commonest_letter"] == "C" and summary["commonest_letter_accuracy"] == pytest.approx(2 / 3)
    assert summary["predicted_letters"] == {"A": 0, "B": 0, "C": 3, "D": 0} and summary["accuracy"] == 2 / 3
    assert "answer_letters" not in summarize([result])  # without the subjects there is no key to count


def test_an_interrupted_exam_resumes_from_its_journal(tiny_model, smol_tokenizer, tmp_path: Path) -> None:
    journal = tmp_path / "mmlu.jsonl"
    first = evaluate_subjects(tiny_model, smol_tokenizer, [SUBJECT], k_shot=1, progress=False, journal=journal)
    record = json.loads(journal.read_text())
    assert record["name"] == "astronomy" and record["predictions"] == first[0].predictions
    journal.write_text(json.dumps({**record, "correct": 99}) + "\n")  # proves the journal is read, not recomputed
    again = evaluate_subjects(tiny_model, smol_tokenizer, [SUBJECT], k_shot=1, progress=False, journal=journal)
    assert again[0].correct == 99


def test_csv_readers_for_mmlu_and_headed_exams(tmp_path: Path) -> None:
    mmlu = load_local(resource("mmlu.zip"), "test", subjects=["anatomy"])
    assert len(mmlu) == 1 and len(mmlu[0].eval) == 135 and len(mmlu[0].dev) == 5
    for split in ("dev", "test"):  # CMMLU's layout: a header, <split>/<subject>.csv
        (tmp_path / split).mkdir()
        (tmp_path / split / "arts.csv").write_text(
            ",Question,A,B,C,D,Answer\n0,问题?,甲,乙,丙,丁,B\n1,又一问?,1,2,3,4,d\n"
        )
    (subject,) = load_local(tmp_path, "test")
    assert subject.eval[1] == Question("又一问?", ("1", "2", "3", "4"), "D") and subject.category == "all"
    (tmp_path / "test/bad.csv").write_text("question,A,B,C,D,answer\nQ,1,2,3,4,E\n")
    with pytest.raises(EvalDataError, match=r"bad.csv:2: the answer 'E'"):
        load_local(tmp_path, "test", subjects=["bad"])
    with pytest.raises(EvalDataError, match="unknown subjects"):
        load_local(tmp_path, "test", subjects=["nope"])


def test_hub_exam_offline_says_how_to_provide_it(monkeypatch, tmp_path: Path) -> None:
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    # the libraries read HF_HUB_OFFLINE when first imported (here, before this test): without these the load went
    # out to the network and took ~24 s of timeouts to fail
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EvalDataError, match=r"point eval\.cmmlu\.path at the folder or zip holding its dev/ and test/"):
        load_hub("cmmlu", None, ["arts"], 2)


def test_rouge_against_hand_computed_values() -> None:
    assert rouge_tokens("The cat, the HAT!") == ["the", "cat", "the", "hat"]
    pred, ref = ["the", "cat", "sat", "on", "the", "mat"], ["the", "cat", "lay", "on", "the", "mat"]
    assert rouge_n(pred, ref, 1) == pytest.approx(5 / 6)  # 5 of 6 unigrams shared
    assert rouge_n(pred, ref, 2) == pytest.approx(3 / 5)  # the-cat, on-the, the-mat
    assert rouge_l(pred, ref) == pytest.approx(5 / 6)  # LCS: the cat on the mat
    assert rouge_l(["a", "b", "c"], ["c", "b", "a"]) == pytest.approx(1 / 3)
    assert rouge_n([], ref, 1) == 0.0


def test_perplexity_is_exp_of_the_models_own_loss(tiny_model) -> None:
    ids = torch.randint(0, 100, (1, 12))
    labels = ids.clone()
    labels[0, :5] = IGNORE_INDEX  # the prompt is not scored
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        expected = math.exp(tiny_model(**batch).loss.item())
    result = perplexity(tiny_model, [batch], progress=False)
    assert result["perplexity"] == pytest.approx(expected, rel=1e-5) and result["tokens"] == 7
    example = Encoded(input_ids=[1, 2, 3, 4, 5, 6], labels=[IGNORE_INDEX] * 3 + [4, 5, IGNORE_INDEX], truncated=False)
    assert split_prompt_and_reference(example) == ([1, 2, 3], [4, 5])


def test_eval_command_on_the_tiny_model(tmp_path: Path) -> None:
    from quantum_ft.eval import evaluate

    cfg = compose_eval(
        [
            "model=tiny",
            "eval.tasks=[mmlu,perplexity,rouge]",
            "eval.max_samples=3",
            "eval.subjects=[anatomy,astronomy,high_school_us_history,sociology]",
            "eval.rouge.max_samples=2",
            "eval.rouge.max_new_tokens=4",
            "data.max_samples=40",
            "data.val_size=4",
            "data.cutoff_len=64",
        ],
        tmp_path,
    )
    results = evaluate(cfg)
    mmlu = results["mmlu"]
    assert mmlu["questions"] == 12 and set(mmlu["subjects"]) == {
        "anatomy",
        "astronomy",
        "high_school_us_history",
        "sociology",
    }
    assert set(mmlu["categories"]) == {"Other", "STEM", "Humanities", "Social Sciences"}
    # the command's figures are the harness's on the same model and questions
    subjects = load_local(resource("mmlu.zip"), "test", subjects=sorted(mmlu["subjects"]), max_samples=3)
    direct = evaluate_subjects(helpers.tiny_model(), helpers.tiny_source().load_tokenizer(), subjects, progress=False)
    assert {r.name: r.accuracy for r in direct} == {k: v["accuracy"] for k, v in mmlu["subjects"].items()}
    assert mmlu["accuracy"] == sum(r.correct for r in direct) / 12
    assert math.isfinite(results["perplexity"]["perplexity"]) and results["rouge"]["answers"] == 2
    assert json.loads((tmp_path / "results.json").read_text())["mmlu"]["k_shot"] == 5
    assert "| high_school_us_history | Humanities |" in (tmp_path / "results.md").read_text()
    key = {letter: sum(q.answer == letter for s in subjects for q in s.eval) for letter in "ABCD"}
    assert mmlu["answer_letters"] == key and mmlu["commonest_letter_accuracy"] == max(key.values()) / 12
    assert f"Correct answers: A {key['A']}, B {key['B']}" in (tmp_path / "results.md").read_text()


def test_evaluation_as_a_stage_after_training(tiny_cfg) -> None:
    from quantum_ft.train import train
    from quantum_ft.utils.plots import read_metric_series

    cfg = tiny_cfg("eval.tasks=[mmlu,perplexity]", "eval.max_samples=2", "eval.subjects=[anatomy]", "eval.k_shot=1")
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    # evaluated on the trained model: the figures are those of the harness on the run's artifact
    built = from_checkpoint(out)
    subjects = load_local(resource("mmlu.zip"), "test", subjects=["anatomy"], max_samples=2)
    direct = evaluate_subjects(built.model, built.tokenizer, subjects, k_shot=1, progress=False)
    assert metrics["eval/mmlu/accuracy"] == direct[0].accuracy
    datamodule = instantiate(cfg.data, tokenizer=built.tokenizer)
    datamodule.setup("fit")
    expected = perplexity(built.model, datamodule.val_dataloader(), progress=False)["perplexity"]
    assert metrics["eval/perplexity/perplexity"] == pytest.approx(expected, rel=1e-5)
    assert json.loads((out / "metrics.json").read_text())["eval/mmlu/questions"] == 2
    assert (out / "eval/results.md").is_file()
    assert read_metric_series(out / "csv", "eval/mmlu/accuracy")  # logged with the run


def test_eval_of_a_run_an_export_and_an_unknown_checkpoint(tiny_cfg, tmp_path: Path) -> None:
    """A run (base + adapter) and its merged export answer the same; a folder that is neither is refused."""
    from quantum_ft.eval import evaluate
    from quantum_ft.export import export
    from quantum_ft.train import train
    from quantum_ft.utils.config import ConfigError

    run = tiny_cfg("adapter=lora", "optimizer.lr=3e-2", "trainer.max_steps=2")
    train(run)
    common = ["eval.max_samples=3", "eval.subjects=[anatomy,sociology]", "eval.k_shot=1"]
    from_run = evaluate(compose_eval([f"checkpoint={run.paths.output_dir}", *common], tmp_path / "e"))
    exported = export(run.paths.output_dir, tmp_path / "merged")
    from_export = evaluate(compose_eval([f"checkpoint={exported}", *common], tmp_path / "e3"))
    assert from_run["mmlu"]["questions"] == from_export["mmlu"]["questions"] == 6
    assert from_run["mmlu"]["subjects"] == from_export["mmlu"]["subjects"]
    with pytest.raises(ConfigError, match="not a training run"):
        evaluate(compose_eval([f"checkpoint={tmp_path}", *common], tmp_path / "e2"))

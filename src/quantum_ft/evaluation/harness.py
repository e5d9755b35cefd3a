"""k-shot multiple-choice evaluation: the prompt, and the answer as the letter with the highest next-token score.

The prompt of a question is the subject's header and its k dev questions with their answers (the prefix, the same
for every question of the subject), then the question with its choices and the answer cue. The model's answer is
the choice letter whose token has the highest logit at the position after the cue, as in MMLU's reference code.
The prefix is run once per subject and its key/value cache reused for every batch of questions: the scores are
those of the whole prompt (tested), and the prefix is computed once per subject instead of once per question.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from quantum_ft.evaluation.choice_data import LETTERS, Question, Subject
from quantum_ft.utils.modes import evaluating


@dataclass(frozen=True)
class PromptTemplate:
    header: str  # "{subject}" is replaced by the subject's display name
    answer_cue: str

    def prefix(self, subject: Subject, k_shot: int) -> str:
        shots = "".join(self.question(q) + f" {q.answer}\n\n" for q in subject.dev[:k_shot])
        return self.header.format(subject=subject.display) + shots

    def question(self, q: Question) -> str:
        choices = "".join(f"\n{letter}. {text}" for letter, text in zip(LETTERS, q.choices))
        return f"{q.question.strip()}{choices}\n{self.answer_cue}"


ENGLISH = PromptTemplate("The following are multiple choice questions (with answers) about {subject}.\n\n", "Answer:")
CHINESE = PromptTemplate("以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n", "答案：")


def letter_token_ids(tokenizer) -> list[int]:
    """The token each answer letter is, as it follows the cue (` A`, ` B`, ...)."""
    ids = []
    for letter in LETTERS:
        tokens = tokenizer(f" {letter}", add_special_tokens=False).input_ids
        ids.append(tokens[-1])
    if len(set(ids)) != len(ids):
        raise ValueError(f"The tokenizer maps the answer letters to the same tokens: {ids}")
    return ids


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@torch.no_grad()
def letter_scores(
    model: torch.nn.Module,
    prefix_ids: list[int],
    question_ids: list[list[int]],
    letter_ids: list[int],
    batch_size: int = 8,
) -> torch.Tensor:
    """Next-token logits of the letters after prefix + each question, shape (questions, letters), float32.

    Questions are right-padded in batches and read at their last real token, so padding never reaches a score.
    """
    device = next(model.parameters()).device
    prefix = torch.tensor([prefix_ids], device=device)
    cache = model(input_ids=prefix, use_cache=True).past_key_values if prefix_ids else None
    scores = []
    for batch in _batches(question_ids, batch_size):
        width = max(map(len, batch))
        ids = torch.zeros(len(batch), width, dtype=torch.long, device=device)
        mask = torch.zeros(len(batch), width, dtype=torch.long, device=device)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        kwargs = {}
        if cache is not None:
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(len(batch))
            full_mask = torch.cat([torch.ones(len(batch), len(prefix_ids), dtype=torch.long, device=device), mask], 1)
            kwargs = {"past_key_values": batch_cache, "attention_mask": full_mask, "use_cache": True}
        else:
            kwargs = {"attention_mask": mask}
        logits = model(input_ids=ids, **kwargs).logits
        last = mask.sum(1) - 1
        scores.append(logits[torch.arange(len(batch), device=device), last][:, letter_ids].float().cpu())
    return torch.cat(scores)


@dataclass
class SubjectResult:
    name: str
    category: str
    correct: int
    total: int
    predictions: list[str]

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


def evaluate_subjects(
    model: torch.nn.Module,
    tokenizer,
    subjects: list[Subject],
    template: PromptTemplate = ENGLISH,
    k_shot: int = 5,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "eval",
    journal: Path | None = None,
) -> list[SubjectResult]:
    """Answer every question of every subject; one progress bar over all questions.

    With a `journal` (a JSON-lines file), each finished subject is appended to it and subjects already in it are
    not evaluated again: an interrupted run of an hour-long exam resumes where it stopped.
    """
    letters = letter_token_ids(tokenizer)
    done = {}
    if journal is not None and journal.is_file():
        done = {r["name"]: SubjectResult(**r) for r in map(json.loads, journal.read_text().splitlines()) if r}
    results = []
    with (
        evaluating(model),
        tqdm(total=sum(len(s.eval) for s in subjects), desc=desc, disable=not progress, unit="q") as bar,
    ):
        for subject in subjects:
            if subject.name in done and done[subject.name].total == len(subject.eval):
                results.append(done[subject.name])
                bar.update(len(subject.eval))
                continue
            prefix_ids = tokenizer(template.prefix(subject, k_shot)).input_ids  # with BOS, if the model has one
            questions = [tokenizer(template.question(q), add_special_tokens=False).input_ids for q in subject.eval]
            scores = letter_scores(model, prefix_ids, questions, letters, batch_size) if questions else None
            predictions = [LETTERS[i] for i in scores.argmax(1).tolist()] if scores is not None else []
            correct = sum(p == q.answer for p, q in zip(predictions, subject.eval))
            results.append(SubjectResult(subject.name, subject.category, correct, len(subject.eval), predictions))
            if journal is not None:
                journal.parent.mkdir(parents=True, exist_ok=True)
                with journal.open("a") as f:
                    f.write(json.dumps(asdict(results[-1])) + "\n")
            bar.update(len(subject.eval))
            bar.set_postfix(subject=subject.name[:20])
    return results


def summarize(results: list[SubjectResult]) -> dict:
    """Accuracy per subject, per category and overall (each over questions, not averaged over subjects)."""
    categories: dict[str, list[int]] = {}
    for r in results:
        totals = categories.setdefault(r.category, [0, 0])
        totals[0] += r.correct
        totals[1] += r.total
    correct, total = sum(r.correct for r in results), sum(r.total for r in results)
    predicted = {letter: sum(r.predictions.count(letter) for r in results) for letter in LETTERS}
    return {
        "accuracy": correct / total if total else float("nan"),
        "questions": total,
        "predicted_letters": predicted,  # a model that always says "A" shows here, not in the accuracy
        "categories": {
            c: {"accuracy": k / n if n else float("nan"), "questions": n} for c, (k, n) in sorted(categories.items())
        },
        "subjects": {r.name: {"accuracy": r.accuracy, "questions": r.total, "category": r.category} for r in results},
    }

"""k-shot multiple-choice evaluation: the prompt, and the answer as the letter with the highest next-token score.

The prompt of a question is the subject's header and its k dev questions with their answers (the prefix, the same
for every question of the subject), then the question with its choices and the answer cue. The model's answer is
the choice letter whose token has the highest logit at the position after the cue, as in MMLU's reference code.
The token ids scored are those of the whole prompt, tokenized as one string (`tokenizer(prefix + question)`),
exactly what lm-evaluation-harness and any user's text would give. Yet the prefix is computed once per subject:
tokenizers may merge across the prefix/question seam (SmolLM2's makes the prefix's final "\n\n" one token alone,
but "\n" "\n" before a question), so the cache holds the prefix's ids up to the seam only -- the longest run of
leading ids every question's whole-prompt ids share with it -- and each question's remaining ids (seam included)
are computed on top of it. Each question is checked; one whose ids part from the prefix's earlier than the seam
gets a full forward pass of its own. Scores equal a plain forward of each whole prompt's ids (tested).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from quantum_ft.evaluation.choice_data import LETTERS, Question, Subject
from quantum_ft.utils.io import append_journal, read_journal
from quantum_ft.utils.modes import evaluating
from quantum_ft.utils.text import pad_with_mask


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


# How far before its end the prefix's ids may part from a question's whole-prompt ids and still be shared: the
# seam recomputed per question. A question parting earlier gets a full forward pass (counted as a fallback).
MAX_SEAM = 8


@dataclass(frozen=True)
class PromptPlan:
    """How a subject's prompts are scored: `cached` ids computed once, then each prompt's `tails[i]` on top of
    them, except the prompts in `fallback`, whose whole ids are in `tails[i]` and run without the cache.
    For every prompt, `ids(i)` is exactly the whole prompt's tokenization."""

    cached: list[int]
    tails: list[list[int]]
    fallback: frozenset[int]

    def ids(self, i: int) -> list[int]:
        return self.tails[i] if i in self.fallback else self.cached + self.tails[i]


def _common_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def plan_prompts(tokenizer, prefix: str, questions: list[str], max_seam: int | None = None) -> PromptPlan:
    """Tokenize each whole prompt (prefix + question, special tokens as the tokenizer adds them) and split off
    the ids shared by all of them, up to at most the prefix's own ids: the part computed once. `max_seam`
    (default MAX_SEAM) bounds how many of the prefix's last ids may be recomputed per question."""
    max_seam = MAX_SEAM if max_seam is None else max_seam
    prefix_ids = tokenizer(prefix).input_ids
    wholes = [tokenizer(prefix + q).input_ids for q in questions]
    if not wholes:
        return PromptPlan([], [], frozenset())
    shared = [_common_length(prefix_ids, w) for w in wholes]
    floor = max(0, len(prefix_ids) - max_seam)
    # at least one id of every prompt is computed after the cache: its logits are the scores
    cut = min([n for n in shared if n >= floor] + [len(w) - 1 for w in wholes])
    fallback = frozenset(i for i, n in enumerate(shared) if n < cut)
    cached = prefix_ids[:cut] if len(fallback) < len(wholes) else []
    tails = [w if i in fallback else w[cut:] for i, w in enumerate(wholes)]
    return PromptPlan(cached, tails, fallback)


def plan_scores(
    model: torch.nn.Module, plan: PromptPlan, letter_ids: list[int], batch_size: int = 8, log_probs: bool = False
) -> torch.Tensor:
    """The letter scores of every prompt of a plan, in order: shape (prompts, letters)."""
    order = [i for i in range(len(plan.tails)) if i not in plan.fallback]
    alone = sorted(plan.fallback)
    scores = torch.empty(len(plan.tails), len(letter_ids))
    if order:
        tails = [plan.tails[i] for i in order]
        scores[order] = letter_scores(model, plan.cached, tails, letter_ids, batch_size, log_probs)
    if alone:
        scores[alone] = letter_scores(model, [], [plan.tails[i] for i in alone], letter_ids, batch_size, log_probs)
    return scores


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _cache_name(model: torch.nn.Module) -> str:
    """The keyword (and output field) of the key/value cache: transformers 5 renamed `past_key_values` to `cache`
    (the old name still works but warns until 5.40), so use the one this model's forward declares."""
    from transformers import PreTrainedModel

    for module in model.modules():  # a peft or adapter wrapper comes first; the transformers model inside decides
        if isinstance(module, PreTrainedModel):
            return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"
    return "past_key_values"


def _prefix_cache(model: torch.nn.Module, prefix: torch.Tensor, name: str):
    """The key/value cache of the prefix; its logits are not needed (only the last position's are computed,
    where the model's forward takes `logits_to_keep`, as transformers' causal LMs do)."""
    try:
        out = model(input_ids=prefix, use_cache=True, logits_to_keep=1)
    except TypeError:
        out = model(input_ids=prefix, use_cache=True)
    return getattr(out, name)


@torch.no_grad()
def letter_scores(
    model: torch.nn.Module,
    prefix_ids: list[int],
    question_ids: list[list[int]],
    letter_ids: list[int],
    batch_size: int = 8,
    log_probs: bool = False,
) -> torch.Tensor:
    """Next-token logits of the letters after prefix_ids + each question's ids, shape (questions, letters),
    float32; with `log_probs`, their log-probabilities (log-softmax over the vocabulary), as lm-eval scores.

    The ids are taken as given: `plan_prompts` makes them those of the whole prompt. Questions are right-padded
    in batches and read at their last real token, so padding never reaches a score.
    """
    device = next(model.parameters()).device
    prefix = torch.tensor([prefix_ids], device=device)
    cache_name = _cache_name(model)
    cache = _prefix_cache(model, prefix, cache_name) if prefix_ids else None
    scores = []
    for batch in _batches(question_ids, batch_size):
        ids, mask = (t.to(device) for t in pad_with_mask(batch, 0))
        kwargs = {}
        if cache is not None:
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(len(batch))
            full_mask = torch.cat([torch.ones(len(batch), len(prefix_ids), dtype=torch.long, device=device), mask], 1)
            kwargs = {cache_name: batch_cache, "attention_mask": full_mask, "use_cache": True}
        else:
            kwargs = {"attention_mask": mask}
        logits = model(input_ids=ids, **kwargs).logits
        last = logits[torch.arange(len(batch), device=device), mask.sum(1) - 1].float()
        if log_probs:
            last = torch.log_softmax(last, dim=-1)
        scores.append(last[:, letter_ids].cpu())
    return torch.cat(scores)


@dataclass
class SubjectResult:
    name: str
    category: str
    correct: int
    total: int
    predictions: list[str]
    fallbacks: int = 0  # questions scored by a full forward pass (their ids part from the cached prefix's)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


def subject_scores(
    model: torch.nn.Module,
    tokenizer,
    subject: Subject,
    template: PromptTemplate = ENGLISH,
    k_shot: int = 5,
    batch_size: int = 8,
    log_probs: bool = False,
    letters: list[int] | None = None,
) -> tuple[torch.Tensor, PromptPlan]:
    """The letter scores of every evaluated question of a subject, shape (questions, letters), and the plan
    (the whole-prompt ids) they were computed from. The model is used as it is (call it in eval mode)."""
    letters = letters if letters is not None else letter_token_ids(tokenizer)
    plan = plan_prompts(tokenizer, template.prefix(subject, k_shot), [template.question(q) for q in subject.eval])
    return plan_scores(model, plan, letters, batch_size, log_probs), plan


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
    done = {r["name"]: SubjectResult(**r) for r in read_journal(journal)} if journal is not None else {}
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
            scores, plan = subject_scores(model, tokenizer, subject, template, k_shot, batch_size, letters=letters)
            predictions = [LETTERS[i] for i in scores.argmax(1).tolist()]
            correct = sum(p == q.answer for p, q in zip(predictions, subject.eval))
            results.append(
                SubjectResult(
                    subject.name, subject.category, correct, len(subject.eval), predictions, len(plan.fallback)
                )
            )
            if journal is not None:
                append_journal(journal, asdict(results[-1]))
            bar.update(len(subject.eval))
            bar.set_postfix(subject=subject.name[:20])
    return results


def answer_key(subjects: list[Subject]) -> dict:
    """The evaluated questions' correct letters, and the accuracy of always answering the commonest one: the score
    of a letter preference with no knowledge behind it, next to which a small model's accuracy must be read (a
    135M model answers almost only one or two letters)."""
    key = {letter: sum(q.answer == letter for s in subjects for q in s.eval) for letter in LETTERS}
    commonest, accuracy = commonest_letter(key)
    return {"answer_letters": key, "commonest_letter": commonest, "commonest_letter_accuracy": accuracy}


def commonest_letter(key: dict[str, int]) -> tuple[str, float]:
    """The commonest correct letter of an answer key {letter: count} (the first in order on a tie), and the accuracy
    of always answering it."""
    total = sum(key.values())
    commonest = max(key, key=key.__getitem__)
    return commonest, key[commonest] / total if total else float("nan")


def summarize(results: list[SubjectResult], subjects: list[Subject] | None = None) -> dict:
    """Accuracy per subject, per category and overall (each over questions, not averaged over subjects), the letters
    answered, and with the subjects evaluated their answer key (answer_key)."""
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
    } | (answer_key(subjects) if subjects is not None else {})

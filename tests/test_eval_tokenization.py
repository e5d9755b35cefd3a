"""The k-shot harness scores exactly the whole prompt's tokenization, with the prefix's cache still shared.

Issue 19: joining the prefix's ids and the question's ids (each tokenized alone) gave SmolLM2 one "\\n\\n" token
where the whole prompt has "\\n" "\\n": a prompt no user's text produces, and answers that differ from
lm-evaluation-harness's. Here the ids the model actually receives are recorded and compared with
`tokenizer(prefix + question)` for random MMLU questions, random shot counts and several tokenizers, and the
letter scores with a plain forward pass of those ids.
"""

from __future__ import annotations

import random

import pytest
import torch
from hydra.utils import instantiate

from quantum_ft.evaluation import harness
from quantum_ft.evaluation.choice_data import Question, Subject, load_local
from quantum_ft.evaluation.harness import (
    CHINESE,
    ENGLISH,
    MAX_SEAM,
    letter_token_ids,
    plan_prompts,
    subject_scores,
)
from quantum_ft.utils.config import resource
from tests.conftest import compose_train


class Recorder(torch.nn.Module):
    """Delegates to a model and rebuilds, from the calls it sees, the token ids of every prompt scored."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.scored: list[tuple[int, ...]] = []
        self.cached: list[int] = []
        self.prefix_calls = 0

    def forward(self, input_ids, attention_mask=None, **kwargs):
        past_key_values = kwargs.get("cache", kwargs.get("past_key_values"))  # transformers 5 renamed it `cache`
        if attention_mask is None:  # the prefix, computed once for its cache
            self.cached = input_ids[0].tolist()
            self.prefix_calls += 1
        else:
            start = len(self.cached) if past_key_values is not None else 0
            for row, mask in zip(input_ids, attention_mask[:, start:]):
                prefix = self.cached if past_key_values is not None else []
                self.scored.append((*prefix, *row[mask.bool()].tolist()))
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def _fast(tokenizer_object, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, **special)


def byte_tokenizer():
    """One token per UTF-8 byte (GPT-2's byte alphabet, no merges), and a BOS: stable under concatenation."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<s>": 0, "<pad>": 1} | {c: i + 2 for i, c in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return _fast(tok, bos_token="<s>", pad_token="<pad>")


def merging_tokenizer(texts: list[str]):
    """A byte-level BPE trained on the prompts with no pre-tokenizer split: its merges span whitespace, so
    the prefix/question seam (and more) tokenizes differently in the whole prompt. The hard case."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=900, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<pad>"]
    )
    tok.train_from_iterator(texts, trainer)
    return _fast(tok, pad_token="<pad>")


@pytest.fixture(scope="module")
def tiny():
    """The `tiny` model config's model and tokenizer (a random Llama with SmolLM2's tokenizer)."""
    source = instantiate(compose_train(["model=tiny"]).model)
    return source.load_model().eval(), source.load_tokenizer()


@pytest.fixture(scope="module")
def subjects() -> list[Subject]:
    """Random MMLU questions (5 from each of 3 random subjects) and a few with awkward text."""
    rng = random.Random(19)
    every = load_local(resource("mmlu.zip"), "test")
    picked = rng.sample(every, 3)
    for s in picked:
        s.eval = rng.sample(s.eval, 5)
    odd = [
        Question("  Leading spaces, trailing newline\n", ("  two spaces", "tab\tinside", "", "ünïcödé ✓"), "A"),
        Question("1234567?", ("12", " 34", "56 ", "\n78"), "B"),
        Question("\n\nStarts with blank lines", ("a\n\nb", "...", "'s", "Answer: A"), "C"),
    ]
    picked.append(Subject("odd", "odd things", "all", dev=picked[0].dev, eval=odd))
    return picked


def _check(model, tokenizer, subjects, template=ENGLISH, shots=(0, 1, 5), batch_size=3, max_seam=MAX_SEAM):
    """Every prompt's scored ids are its whole tokenization; its scores those of a plain forward pass."""
    recorder = Recorder(model)
    letters = letter_token_ids(tokenizer)
    fallbacks = 0
    for subject in subjects:
        for k in shots:
            recorder.reset()
            scores, plan = subject_scores(recorder, tokenizer, subject, template, k, batch_size, letters=letters)
            whole = [tokenizer(template.prefix(subject, k) + template.question(q)).input_ids for q in subject.eval]
            assert sorted(recorder.scored) == sorted(map(tuple, whole)), (subject.name, k)
            assert [plan.ids(i) for i in range(len(whole))] == whole
            assert recorder.prefix_calls == (1 if plan.cached else 0)
            assert bool(plan.cached) == (len(plan.fallback) < len(whole))
            if max_seam == MAX_SEAM:
                prefix = tokenizer(template.prefix(subject, k)).input_ids
                assert len(plan.cached) >= len(prefix) - MAX_SEAM or len(plan.fallback) == len(whole)
            with torch.no_grad():
                plain = torch.stack(
                    [model(input_ids=torch.tensor([ids]), logits_to_keep=1).logits[0, -1, letters] for ids in whole]
                )
            torch.testing.assert_close(scores, plain, atol=1e-5, rtol=1e-5)
            fallbacks += len(plan.fallback)
    return fallbacks


def test_smollm2_prompts_are_scored_as_whole_strings(tiny, subjects) -> None:
    model, tokenizer = tiny
    prefix = ENGLISH.prefix(subjects[0], 5)
    question = ENGLISH.question(subjects[0].eval[0])
    joined = tokenizer(prefix).input_ids + tokenizer(question, add_special_tokens=False).input_ids
    assert joined != tokenizer(prefix + question).input_ids  # the bug this file is about: "\n\n" vs "\n" "\n"
    assert _check(model, tokenizer, subjects) == 0  # SmolLM2: one seam token recomputed, no fallback


def test_chinese_prompts_are_scored_as_whole_strings(tiny) -> None:
    model, tokenizer = tiny
    shots = [Question(f"问题{i}是什么？", ("甲", "乙", "丙", "丁"), "ABCD"[i % 4]) for i in range(3)]
    asked = [
        Question("中国的首都是哪里？", ("上海", "北京", "广州", "深圳"), "B"),
        Question("1+1=?", ("1", "2", "3", "4"), "B"),
    ]
    _check(model, tokenizer, [Subject("arts", "艺术", "all", dev=shots, eval=asked)], CHINESE, shots=(0, 3))


def test_byte_and_merging_tokenizers(tiny, subjects) -> None:
    model, _ = tiny
    assert _check(model, byte_tokenizer(), subjects, shots=(0, 1)) == 0
    texts = [ENGLISH.prefix(s, 5) + ENGLISH.question(q) for s in subjects for q in s.eval]
    merging = merging_tokenizer(texts)
    prefix, question = ENGLISH.prefix(subjects[0], 5), ENGLISH.question(subjects[0].eval[0])
    assert merging(prefix).input_ids != merging(prefix + question).input_ids[: len(merging(prefix).input_ids)]
    _check(model, merging, subjects, shots=(1, 3))


def test_questions_parting_before_the_seam_get_a_full_forward(tiny, subjects, monkeypatch) -> None:
    """With no seam allowed, SmolLM2's prompts all part from the prefix's ids at its last token: every one is
    scored by a full forward pass, still on the whole prompt's ids, with the same scores."""
    model, tokenizer = tiny
    questions = [ENGLISH.question(q) for q in subjects[0].eval]
    plan = plan_prompts(tokenizer, ENGLISH.prefix(subjects[0], 2), questions)
    assert not plan.fallback and len(plan.cached) == len(tokenizer(ENGLISH.prefix(subjects[0], 2)).input_ids) - 1
    monkeypatch.setattr(harness, "MAX_SEAM", 0)
    plan = plan_prompts(tokenizer, ENGLISH.prefix(subjects[0], 2), questions)
    assert plan.fallback == frozenset(range(len(questions))) and plan.cached == []
    assert _check(model, tokenizer, subjects[:2], shots=(2,), max_seam=0) == 10

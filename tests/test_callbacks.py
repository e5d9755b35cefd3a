"""The project's callbacks outside a full run: sample generations with and without a chat template, and on a model
whose tokenizer is not a Hugging Face one."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from types import SimpleNamespace

from quantum_ft.callbacks import SampleGenerations
from quantum_ft.data.text import CharTokenizer
from quantum_ft.utils.text import greedy_generate
from tests.helpers import tiny_model

TRAINER = SimpleNamespace(sanity_checking=False, global_step=3)  # the two fields the callback reads


def test_samples_use_the_chat_template_or_the_plain_prompt(smol_tokenizer, tmp_path: Path) -> None:
    model = tiny_model()
    plain = copy.deepcopy(smol_tokenizer)
    plain.chat_template = None
    for tokenizer, text in [
        (
            smol_tokenizer,
            smol_tokenizer.apply_chat_template(
                [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
            ),
        ),
        (plain, "Hi"),
    ]:
        out = tmp_path / f"samples-{tokenizer.chat_template is None}.txt"
        SampleGenerations(["Hi"], max_new_tokens=3, output_file=str(out)).on_validation_end(
            TRAINER, SimpleNamespace(model=model, tokenizer=tokenizer)
        )
        ids = tokenizer(text, add_special_tokens=False).input_ids
        expected = tokenizer.decode(greedy_generate(model, tokenizer, [ids], 3)[0], skip_special_tokens=True).strip()
        assert out.read_text() == f"--- sample generations at step 3 ---\n  Q: Hi\n  A: {expected}\n"


def test_samples_are_skipped_once_with_a_warning_without_a_hugging_face_tokenizer(caplog) -> None:
    callback = SampleGenerations(["Hi"], max_new_tokens=3)
    module = SimpleNamespace(model=object(), tokenizer=CharTokenizer("abc"))
    with caplog.at_level(logging.WARNING):
        callback.on_validation_end(TRAINER, module)
        callback.on_validation_end(TRAINER, module)
    assert [r.getMessage() for r in caplog.records] == [
        "Sample generations skipped: CharTokenizer is not a Hugging Face tokenizer."
    ]

"""Records -> messages -> label masks (golden, with the real SmolLM2 tokenizer), bad input, mixing, caching,
and the resumable sampler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantum_ft.data import DataFormatError, SFTDataModule
from quantum_ft.data.encode import IGNORE_INDEX, encode_conversation
from quantum_ft.data.formats import to_messages
from quantum_ft.data.sampler import ResumableBatchSampler
from quantum_ft.data.sft import pack

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def trained_spans(tokenizer, enc) -> list[str]:
    """Decode each contiguous run of tokens that carries loss."""
    spans, current = [], []
    for tok, lab in zip(enc.input_ids, enc.labels):
        if lab != IGNORE_INDEX:
            assert lab == tok, "a trained label must be the token itself"
            current.append(tok)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    return spans


def test_alpaca_golden(smol_tokenizer) -> None:
    record = {"instruction": "Name the capital of France.", "input": "Answer briefly.", "output": "Paris."}
    enc = encode_conversation(smol_tokenizer, to_messages(record, "alpaca"), cutoff_len=512)
    assert smol_tokenizer.decode(enc.input_ids) == (
        SYSTEM + "<|im_start|>user\nName the capital of France.\n\nAnswer briefly.<|im_end|>\n"
        "<|im_start|>assistant\nParis.<|im_end|>\n"
    )
    assert trained_spans(smol_tokenizer, enc) == ["Paris.<|im_end|>\n"]
    assert not enc.truncated


def test_sharegpt_multi_turn_golden(smol_tokenizer) -> None:
    record = {
        "conversations": [
            {"from": "system", "value": "Be terse."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "How are you?"},
            {"from": "gpt", "value": "Fine."},
        ]
    }
    enc = encode_conversation(smol_tokenizer, to_messages(record), cutoff_len=512)
    assert smol_tokenizer.decode(enc.input_ids) == (
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        "Hello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\nFine.<|im_end|>\n"
    )
    assert trained_spans(smol_tokenizer, enc) == ["Hello!<|im_end|>\n", "Fine.<|im_end|>\n"]


def test_messages_golden_and_train_on_inputs(smol_tokenizer) -> None:
    record = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
    enc = encode_conversation(smol_tokenizer, to_messages(record), cutoff_len=512)
    assert trained_spans(smol_tokenizer, enc) == ["4<|im_end|>\n"]
    everything = encode_conversation(smol_tokenizer, to_messages(record), cutoff_len=512, train_on_inputs=True)
    assert everything.labels == everything.input_ids == enc.input_ids


def test_truncation_is_flagged(smol_tokenizer) -> None:
    record = {"instruction": "Repeat.", "output": "word " * 50}
    enc = encode_conversation(smol_tokenizer, to_messages(record), cutoff_len=40)
    assert enc.truncated and len(enc.input_ids) == len(enc.labels) == 40


def write_json(path: Path, records) -> Path:
    path.write_text(json.dumps(records))
    return path


def make_dm(tokenizer, datasets, **kw) -> SFTDataModule:
    kw = {"cutoff_len": 128, "val_size": 2, "batch_size": 2, **kw}
    dm = SFTDataModule(tokenizer, datasets, **kw)
    dm.setup("fit")
    return dm


def alpaca(n: int, tag: str = "q") -> list[dict]:
    return [{"instruction": f"{tag} {i}?", "input": "", "output": f"answer {i}"} for i in range(n)]


def test_malformed_json_names_file_and_line(smol_tokenizer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}\n]')
    with pytest.raises(DataFormatError, match=r"bad\.json:3"):
        make_dm(smol_tokenizer, [{"path": str(bad)}])


def test_malformed_jsonl_names_file_and_line(smol_tokenizer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2"):
        make_dm(smol_tokenizer, [{"path": str(bad)}])


def test_record_missing_fields_names_record(smol_tokenizer, tmp_path: Path) -> None:
    path = write_json(tmp_path / "d.json", [*alpaca(3), {"instruction": "no output"}])
    with pytest.raises(DataFormatError, match=r"d\.json\[3\].*format"):
        make_dm(smol_tokenizer, [{"path": str(path)}])


def test_dataset_without_usable_record(smol_tokenizer, tmp_path: Path) -> None:
    path = write_json(tmp_path / "empty.json", [])
    with pytest.raises(DataFormatError, match="No usable record"):
        make_dm(smol_tokenizer, [{"path": str(path)}])


def test_all_answers_truncated_away(smol_tokenizer, tmp_path: Path) -> None:
    path = write_json(tmp_path / "d.json", alpaca(4))
    with pytest.raises(DataFormatError, match="cutoff_len"):
        make_dm(smol_tokenizer, [{"path": str(path)}], cutoff_len=8)


def test_truncated_samples_are_counted(smol_tokenizer, tmp_path: Path) -> None:
    records = alpaca(6) + [{"instruction": "long", "output": "word " * 200}] * 2
    dm = make_dm(smol_tokenizer, [{"path": str(write_json(tmp_path / "d.json", records))}], cutoff_len=64)
    assert dm.stats.truncated == 2 and dm.stats.max_len == 64


def test_weighted_mixing_and_max_samples(smol_tokenizer, tmp_path: Path) -> None:
    a = write_json(tmp_path / "a.json", alpaca(10, "a"))
    b = write_json(tmp_path / "b.json", alpaca(10, "b"))
    dm = make_dm(smol_tokenizer, [{"path": str(a), "weight": 2.0}, {"path": str(b), "weight": 0.5}])
    assert dm.stats.train_samples + dm.stats.val_samples == 25
    texts = [smol_tokenizer.decode(e.input_ids) for e in dm.train_set + dm.val_set]
    assert sum("user\na " in t for t in texts) == 20 and sum("user\nb " in t for t in texts) == 5
    capped = make_dm(smol_tokenizer, [{"path": str(a)}, {"path": str(b)}], max_samples=4)
    assert capped.stats.records == {str(a): 4, str(b): 4}


def test_tokenised_data_is_cached(smol_tokenizer, tmp_path: Path, monkeypatch) -> None:
    path = write_json(tmp_path / "d.json", alpaca(8))
    first = make_dm(smol_tokenizer, [{"path": str(path)}], cache_dir=str(tmp_path / "cache"))
    monkeypatch.setattr(SFTDataModule, "_build", lambda self: pytest.fail("cache was not used"))
    second = make_dm(smol_tokenizer, [{"path": str(path)}], cache_dir=str(tmp_path / "cache"))
    for a, b in [(first.train_set, second.train_set), (first.val_set, second.val_set)]:
        assert a == b  # Encoded dataclasses: ids, labels and the truncation flag
    assert second.stats == first.stats


def test_a_tokenised_cache_that_carries_code_is_never_unpickled(smol_tokenizer, tmp_path: Path) -> None:
    """A cache folder shared on a cluster is data, not code: a crafted file holding a pickle is refused (and
    rebuilt from the records), and nothing in it runs."""
    import numpy as np

    path = write_json(tmp_path / "d.json", alpaca(8))
    first = make_dm(smol_tokenizer, [{"path": str(path)}], cache_dir=str(tmp_path / "cache"))
    (cache,) = (tmp_path / "cache").glob("sft-*.npz")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(cache, "wb") as f:  # an object array: np.save pickles it
        np.savez(f, meta=np.array([Payload()], dtype=object))
    second = make_dm(smol_tokenizer, [{"path": str(path)}], cache_dir=str(tmp_path / "cache"))
    assert not marker.exists() and second.train_set == first.train_set
    with np.load(cache, allow_pickle=False) as rebuilt:  # and the good cache is back
        assert "train_ids" in rebuilt


def test_packing_keeps_every_token(smol_tokenizer, tmp_path: Path) -> None:
    dm = make_dm(smol_tokenizer, [{"path": str(write_json(tmp_path / "d.json", alpaca(20)))}])
    packed = pack(dm.train_set, 128)
    assert sum(len(p.input_ids) for p in packed) == sum(len(e.input_ids) for e in dm.train_set)
    assert len(packed) < len(dm.train_set) and all(len(p.input_ids) <= 128 for p in packed)


def test_collator_pads_right_without_loss(smol_tokenizer, tmp_path: Path) -> None:
    dm = make_dm(smol_tokenizer, [{"path": str(write_json(tmp_path / "d.json", alpaca(6)))}])
    short, long = sorted(dm.train_set[:2], key=lambda e: len(e.input_ids))
    batch = dm.collate([short, long])
    n = len(short.input_ids)
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][0, n:] == smol_tokenizer.pad_token_id).all()
    assert batch["labels"][1].tolist() == long.labels and batch["input_ids"][1].tolist() == long.input_ids


def test_sampler_shuffles_per_epoch_shards_and_skips() -> None:
    s = ResumableBatchSampler(20, 3, shuffle=True, seed=1)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(sum(e0, [])) == sorted(sum(e1, [])) == list(range(20)) and e0 != e1
    s.set_epoch(0)
    assert list(s) == e0  # deterministic
    s.skip_once(epoch=0, batches=4)
    assert list(s) == e0[4:] and list(s) == e0  # skipping happens once
    ranks = [sum(list(ResumableBatchSampler(20, 3, True, 1, rank=r, world_size=3)), []) for r in range(3)]
    assert all(len(r) == 6 for r in ranks) and len(set(sum(ranks, []))) == 18


def test_ranks_batches_together_are_one_process_global_batch() -> None:
    """W ranks with batches of b take, step by step, the same samples as one process with batches of W x b:
    what makes a data-parallel step the same update as a single process's (test_grpo's DDP equivalence)."""
    single = list(ResumableBatchSampler(21, 4, True, 3, drop_last=True))
    ranks = [list(ResumableBatchSampler(21, 2, True, 3, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 5
    for k, batch in enumerate(single):
        assert sorted(ranks[0][k] + ranks[1][k]) == sorted(batch)


def test_sampler_repeats_each_batch_and_skips_counting_repeats() -> None:
    """GRPO's generation batches: each handed out `repeats` times in a row; a resume skips repeated batches."""
    plain = list(ResumableBatchSampler(10, 4, shuffle=True, seed=2, drop_last=True))
    s = ResumableBatchSampler(10, 4, shuffle=True, seed=2, drop_last=True, repeats=3)
    assert list(s) == [b for b in plain for _ in range(3)] and len(s) == 6 and len(plain) == 2
    s.skip_once(epoch=0, batches=4)
    assert list(s) == [plain[1], plain[1]]


def test_lightning_reaches_the_sampler_epoch() -> None:
    """Lightning sets the epoch on `dataloader.batch_sampler.sampler`; before that was the batch sampler itself,
    every epoch repeated epoch 0's order (and resume beyond epoch 0 skipped nothing)."""
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    s = ResumableBatchSampler(20, 3, shuffle=True, seed=1)
    loader = DataLoader(list(range(20)), batch_sampler=s)
    _set_sampler_epoch(loader, 3)
    assert s.epoch == 3


def test_text_data_char_and_byte_level(tmp_path: Path) -> None:
    from quantum_ft.data.text import TextDataModule

    (tmp_path / "t.txt").write_text("hello world, hello quantum world\n" * 20)
    chars = TextDataModule(path=str(tmp_path / "t.txt"), level="char", block_size=8, val_fraction=0.25)
    chars.setup()
    assert len(chars.tokenizer) == len(set("hello world, hello quantum world\n"))
    window = chars.train_set[3]
    assert chars.tokenizer.decode(window.tolist()) == ("hello world, hello quantum world\n" * 20)[3:11]
    small = TextDataModule(path=str(tmp_path / "t.txt"), level="char", block_size=8, vocab_size=5)
    with pytest.raises(DataFormatError, match="model.vocab_size="):
        small.setup()
    raw = TextDataModule(path=str(tmp_path / "t.txt"), level="byte", block_size=8)
    raw.setup()
    assert len(raw.tokenizer) == 256 and raw.stats.train_tokens + raw.stats.val_tokens == 660


def test_enwik8_offline_says_how_to_provide_it(tmp_path: Path, monkeypatch) -> None:
    from quantum_ft.data import text

    monkeypatch.setenv("QUANTUM_FT_CACHE", str(tmp_path))
    monkeypatch.setattr(text, "ENWIK8_URL", "http://127.0.0.1:9/enwik8.zip")  # nothing listens there
    module = text.TextDataModule(name="enwik8", level="byte", block_size=8)
    with pytest.raises(DataFormatError, match=r"enwik8 is not in the cache .* copy the file `enwik8` to"):
        module.setup()

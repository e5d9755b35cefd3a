"""Packing without cross-sample attention (each packed sample's loss is its loss alone, against the unpacked
forward as the reference) and length-grouped batches (every sample once, less padding, exact resume, rank
sharding keeps the global batch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from quantum_ft.data import SFTDataModule
from quantum_ft.data.encode import IGNORE_INDEX, TOKEN_COUNTS, Encoded
from quantum_ft.data.sampler import ResumableBatchSampler
from quantum_ft.data.sft import pack
from quantum_ft.stages.lm_loss import causal_lm_loss
from tests.helpers import assert_resume_matches, tiny_model


def records(n: int) -> list[dict]:
    # lengths vary (1 to 12 words of answer), so packs mix long and short samples
    return [
        {
            "instruction": f"Question {i}: count to {i % 12 + 1}.",
            "input": "",
            "output": " ".join(["one"] * (i % 12 + 1)),
        }
        for i in range(n)
    ]


def datamodule(tokenizer, tmp_path: Path, n: int = 24, **kw) -> SFTDataModule:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(records(n)))
    dm = SFTDataModule(tokenizer, [{"path": str(path)}], **{"cutoff_len": 128, "val_size": 2, "batch_size": 2, **kw})
    dm.setup("fit")
    return dm


def token_losses(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of every position's next-token prediction, 0 where the next token carries no loss."""
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k not in ("labels", TOKEN_COUNTS)}
        logits = model(**inputs, use_cache=False).logits.double()
    targets = batch["labels"][:, 1:]
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets.clamp(min=0), reduction="none")
    return ce * (targets != IGNORE_INDEX)


def test_each_packed_sample_has_its_unpacked_loss(smol_tokenizer, tmp_path: Path) -> None:
    dm = datamodule(smol_tokenizer, tmp_path, train_on_inputs=True)  # every token labelled: boundaries matter
    samples = dm.train_set[:6]
    model = tiny_model()
    packed = pack(samples, 128)
    assert len(packed) < len(samples)
    batch = dm.collate(packed)
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape
    packed_ce = token_losses(model, batch)
    crossed = token_losses(model, {**{k: v for k, v in batch.items() if k != "position_ids"}})  # one sequence

    row, offset, worst, worst_crossed = 0, 0, 0.0, 0.0
    for s in samples:
        n = len(s.input_ids)
        if offset + n > len(packed[row].input_ids):
            row, offset = row + 1, 0
        alone = token_losses(model, dm.collate([s]))[0, : n - 1].sum()
        mine = packed_ce[row, offset : offset + n - 1].sum()
        worst = max(worst, abs(float(mine - alone)) / float(alone))
        worst_crossed = max(
            worst_crossed, abs(float(crossed[row, offset : offset + n - 1].sum() - alone)) / float(alone)
        )
        offset += n
    assert worst < 1e-5
    assert worst_crossed > 10 * 1e-5  # the check has teeth: attending across samples changes the loss
    # and the mean the trainer optimises is the mean of those per-token losses, fused or not
    total = sum(int((torch.tensor(s.labels[1:]) != IGNORE_INDEX).sum()) for s in samples)
    assert int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()) == total
    with torch.no_grad():
        for fused in (True, False):
            loss = causal_lm_loss(model, batch, fused=fused).item()
            assert loss == pytest.approx(float(packed_ce.sum()) / total, rel=1e-5)


def test_pack_never_trains_a_sample_start_on_its_predecessor() -> None:
    a = Encoded([1, 2, 3], [1, 2, 3], False)
    b = Encoded([4, 5], [4, 5], False)
    (p,) = pack([a, b], 8)
    assert p.input_ids == [1, 2, 3, 4, 5] and p.position_ids == [0, 1, 2, 0, 1]
    assert p.labels == [1, 2, 3, IGNORE_INDEX, 5]


def test_packed_positions_survive_the_cache(smol_tokenizer, tmp_path: Path) -> None:
    first = datamodule(smol_tokenizer, tmp_path, packing=True, cache_dir=str(tmp_path / "cache"))
    assert all(s.position_ids is not None for s in first.train_set)
    assert all(s.position_ids is None for s in first.val_set)  # validation is never packed
    again = datamodule(smol_tokenizer, tmp_path, packing=True, cache_dir=str(tmp_path / "cache"))
    assert again.train_set == first.train_set and again.val_set == first.val_set


def test_collate_pads_packed_rows_into_a_segment_of_their_own(smol_tokenizer, tmp_path: Path) -> None:
    dm = datamodule(smol_tokenizer, tmp_path, packing=True)
    short, long = sorted(dm.train_set[:2], key=lambda e: len(e.input_ids))
    batch = dm.collate([short, long])
    n = len(short.input_ids)
    assert batch["position_ids"][0].tolist() == short.position_ids + list(range(batch["input_ids"].shape[1] - n))
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all()
    assert batch[TOKEN_COUNTS].tolist() == [n, len(long.input_ids)]  # real tokens per row, padding not counted


def test_throughput_counts_real_tokens_of_packed_rows(tiny_cfg) -> None:
    from quantum_ft.train import build, fit

    # one step over the whole packed training set: the step's tokens are every packed row's real tokens
    run = build(tiny_cfg("data.packing=true", "data.batch_size=64", "trainer.max_steps=1", "validate_before=false"))
    fit(run)
    rows = run.datamodule.train_set
    assert (
        run.module.step_tokens == sum(len(r.input_ids) for r in rows) < len(rows) * max(len(r.input_ids) for r in rows)
    )


def spread(batches: list[list[int]], lengths: list[int]) -> float:
    """Mean padding a batch would carry: longest minus mean length."""
    return sum(max(lengths[i] for i in b) - sum(lengths[i] for i in b) / len(b) for b in batches) / len(batches)


def test_group_by_length_pads_less_and_keeps_every_sample() -> None:
    lengths = [int(x) for x in torch.randint(5, 500, (400,), generator=torch.Generator().manual_seed(0))]
    plain = list(ResumableBatchSampler(400, 8, shuffle=True, seed=3))
    grouped = ResumableBatchSampler(400, 8, shuffle=True, seed=3, lengths=lengths, window=10)
    batches = list(grouped)
    assert sorted(sum(batches, [])) == list(range(400))
    assert spread(batches, lengths) < 0.2 * spread(plain, lengths)
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # the longest batch first: an OOM shows at once
    assert list(grouped) == batches  # same seed and epoch, same batches
    grouped.set_epoch(1)
    assert list(grouped) != batches
    grouped.set_epoch(0)
    grouped.skip_once(0, 5)
    assert list(grouped) == batches[5:]


def test_group_by_length_shards_keep_the_global_batch() -> None:
    lengths = [(i * 37) % 300 for i in range(96)]
    whole = list(ResumableBatchSampler(96, 8, shuffle=True, seed=1, lengths=lengths, world_size=1))
    ranks = [
        list(ResumableBatchSampler(96, 4, shuffle=True, seed=1, lengths=lengths, rank=r, world_size=2)) for r in (0, 1)
    ]
    # the grouping is over global batches of 8 either way, so rank 0 and rank 1's k-th batches make the k-th of 8
    assert all(sorted(a + b) == sorted(w) for a, b, w in zip(ranks[0], ranks[1], whole))


def test_group_by_length_is_a_config_switch(smol_tokenizer, tmp_path: Path) -> None:
    dm = datamodule(smol_tokenizer, tmp_path, n=40, group_by_length=True)
    sampler = dm.train_dataloader().batch_sampler
    assert sampler.lengths == [len(s.input_ids) for s in dm.train_set]


@pytest.mark.integration  # two end-to-end runs compared with each other
def test_packed_length_grouped_run_resumes_exactly(train_until_crash, tmp_path: Path) -> None:
    run = train_until_crash(
        "data.packing=true",
        "data.group_by_length=true",
        "data.max_samples=40",
        "data.batch_size=2",
        "trainer.max_steps=8",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "adapter.dropout=0.2",
        "trainer.val_check_interval=4",
    )
    assert_resume_matches(run, tmp_path, crash_step=5, steps=8)

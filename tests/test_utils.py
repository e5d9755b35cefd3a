"""Atomic checkpoint and folder writes, the generic helpers (model modes, padding), the loss-curve helpers, the W&B
offline switch, the data-stats command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from quantum_ft.artifacts import AtomicCheckpointIO
from quantum_ft.utils.io import append_journal, atomic_directory, atomic_text, read_journal
from quantum_ft.utils.modes import evaluating
from quantum_ft.utils.plots import ema, read_metric_series
from quantum_ft.utils.text import pad, pad_with_mask


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, str(path))

    def crash_midway(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"\x80\x02partial")  # half a file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, str(path))
    monkeypatch.undo()
    assert io.load_checkpoint(str(path))["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "temporary file left behind"


def test_metric_series_merges_resumed_versions(tmp_path: Path) -> None:
    for version, rows in {
        0: "step,train/loss\n0,3.0\n1,2.0\n2,1.5\n",
        1: "step,train/loss\n2,1.4\n3,1.0\n",
    }.items():
        (tmp_path / f"version_{version}").mkdir()
        (tmp_path / f"version_{version}" / "metrics.csv").write_text(rows)
    assert read_metric_series(tmp_path, "train/loss") == [(0, 3.0), (1, 2.0), (2, 1.4), (3, 1.0)]


def test_ema_is_debiased() -> None:
    assert ema([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    assert ema([0.0, 1.0], decay=0.5) == pytest.approx([0.0, 2 / 3])


def test_wandb_is_offline_without_credentials(tmp_path: Path, monkeypatch) -> None:
    from quantum_ft.loggers import wandb_logger

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_logger(save_dir=str(tmp_path), project="t")._offline is True
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_logger(save_dir=str(tmp_path), project="t")._offline is False


def test_data_stats_command(tiny_cfg) -> None:
    from quantum_ft.data_stats import data_stats

    stats = data_stats(tiny_cfg("data.max_samples=40", "data.val_size=4", "data.cutoff_len=64"))
    assert stats.train_samples + stats.val_samples + stats.dropped_no_target == 40
    assert stats.truncated > 0 and stats.max_len == 64 and stats.trained_tokens < stats.tokens


def test_auto_resume_picks_the_newest_checkpoint(tmp_path: Path) -> None:
    """ckpt_path=auto: nothing -> fresh start; last.ckpt; a newer Lightning SLURM requeue checkpoint wins."""
    import os

    from quantum_ft.utils.config import ConfigError, resolve_ckpt_path

    assert resolve_ckpt_path("auto", tmp_path) is None
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_ckpt_path("last", tmp_path)
    last = tmp_path / "checkpoints/last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    os.utime(last, (1_000, 1_000))
    assert resolve_ckpt_path("auto", tmp_path) == str(last)
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"x")
    os.utime(hpc, (2_000, 2_000))
    assert resolve_ckpt_path("auto", tmp_path) == str(hpc)
    assert resolve_ckpt_path("last", tmp_path) == str(last) and resolve_ckpt_path(None, tmp_path) is None


def test_a_failed_folder_write_leaves_the_old_folder_and_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "artifact"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(KeyboardInterrupt), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("second")
        raise KeyboardInterrupt
    assert (target / "a.txt").read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["artifact"]
    with atomic_directory(target, replace=False) as tmp:  # a shared cache: the first complete copy wins
        (tmp / "a.txt").write_text("third")
    assert (target / "a.txt").read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["artifact"]


@pytest.mark.parametrize("was_training", [True, False])
def test_evaluating_restores_the_mode_even_when_the_work_fails(was_training: bool) -> None:
    model = torch.nn.Sequential(torch.nn.Dropout(0.5)).train(was_training)
    with pytest.raises(ValueError), evaluating(model):
        assert not model.training and not model[0].training
        raise ValueError
    assert model.training is was_training and model[0].training is was_training


def test_padding_by_hand() -> None:
    assert pad([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]
    assert pad([[1, 2, 3], [4]], 9, side="left").tolist() == [[1, 2, 3], [9, 9, 4]]
    ids, mask = pad_with_mask([[5], [6, 7], []], -1, side="left")
    assert ids.tolist() == [[-1, 5], [6, 7], [-1, -1]] and mask.tolist() == [[0, 1], [1, 1], [0, 0]]


def test_a_torn_journal_line_is_cut_off_and_appending_continues_cleanly(tmp_path: Path) -> None:
    journal = tmp_path / "partial" / "j.jsonl"
    assert read_journal(journal) == []
    append_journal(journal, {"name": "a", "n": 1})
    append_journal(journal, {"name": "b", "n": 2})
    with journal.open("ab") as f:
        f.write(b'{"name": "c", "n"')  # a run killed in the middle of its write
    assert read_journal(journal) == [{"name": "a", "n": 1}, {"name": "b", "n": 2}]
    append_journal(journal, {"name": "c", "n": 3})
    assert [r["name"] for r in read_journal(journal)] == ["a", "b", "c"]
    assert journal.read_text().count("\n") == 3


def test_atomic_writes_keep_permissions_and_give_new_files_the_umasks(tmp_path: Path) -> None:
    """A replaced file keeps its mode; a new one gets what open() would give it, not the temporary file's 0600."""
    umask = os.umask(0o022)
    try:
        atomic_text(tmp_path / "new.md", "a")
        assert (tmp_path / "new.md").stat().st_mode & 0o777 == 0o644
        (tmp_path / "kept.md").write_text("old")
        (tmp_path / "kept.md").chmod(0o640)
        atomic_text(tmp_path / "kept.md", "new")
        assert (tmp_path / "kept.md").stat().st_mode & 0o777 == 0o640 and (tmp_path / "kept.md").read_text() == "new"
    finally:
        os.umask(umask)

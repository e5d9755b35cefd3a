"""trainer.precision=auto: the choice per hardware (against hand-written CPU flag sets), its record in the run (with
the host it ran on), and bf16-mixed training within a stated tolerance of float32 on the same batches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from quantum_ft.train import train
from quantum_ft.utils.host import describe_host, first_cpu
from quantum_ft.utils.plots import read_metric_series
from quantum_ft.utils.precision import choose_precision, cpu_flags

BF16_LOSS_TOLERANCE = 1e-3  # relative, per step, on the tiny model (measured: ~1e-5)


def test_cpu_with_bf16_instructions_trains_in_bf16_mixed() -> None:
    precision, why = choose_precision("auto", flags={"avx2", "avx512f", "avx512_bf16"}, cuda=False)
    assert precision == "bf16-mixed" and "avx512_bf16" in why
    precision, why = choose_precision("auto", flags={"amx_bf16", "amx_tile", "avx512_bf16"}, cuda=False)
    assert precision == "bf16-mixed" and "amx_bf16" in why


def test_cpu_without_them_stays_in_float32() -> None:
    precision, why = choose_precision("auto", flags={"avx2", "avx512f", "fma"}, cuda=False)
    assert precision == "32-true" and "no bf16" in why


def test_an_explicit_precision_is_kept() -> None:
    assert choose_precision("32-true", flags={"amx_bf16"}, cuda=False) == ("32-true", "set by trainer.precision")


def test_cpu_flags_reads_the_first_flags_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_auto_is_resolved_and_recorded_in_the_run(tiny_cfg) -> None:
    cfg = tiny_cfg("trainer.precision=auto", "trainer.max_steps=1", "validate_before=false", "eval.tasks=[]")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    expected, why = choose_precision("auto")
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["precision"] == expected and summary["precision_reason"] == why
    assert summary["host"] == describe_host()
    assert OmegaConf.load(out / "config.yaml").trainer.precision == expected  # what Lightning was given


def test_bf16_mixed_loss_is_within_tolerance_of_float32(tiny_cfg, tmp_path: Path) -> None:
    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        cfg = tiny_cfg(f"trainer.precision={precision}", "validate_before=false", output_dir=tmp_path / precision)
        train(cfg)
        losses[precision] = [v for _, v in read_metric_series(tmp_path / precision / "csv", "train/loss")]
    assert len(losses["32-true"]) == len(losses["bf16-mixed"]) == 4
    assert losses["bf16-mixed"] == pytest.approx(losses["32-true"], rel=BF16_LOSS_TOLERANCE)
    assert losses["bf16-mixed"] != losses["32-true"]  # autocast did run in bf16


def test_describe_host_names_the_first_cpu(tmp_path: Path) -> None:
    """The host line a run's metrics.json records: model name, family and model, the CPU count."""
    info = tmp_path / "cpuinfo"
    block = "processor\t: {}\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu\n"
    info.write_text(block.format(0) + "\n" + block.format(1).replace("EPYC", "other"))
    assert first_cpu(info)["model name"] == "AMD EPYC" and first_cpu(tmp_path / "missing") == {}
    described = describe_host(info)
    assert described.startswith(f"AMD EPYC (family 25, model 17), {os.cpu_count()} CPUs")
    assert describe_host(tmp_path / "missing").startswith("unknown CPU, ")

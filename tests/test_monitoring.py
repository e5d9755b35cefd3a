"""Monitoring on real tiny runs: the resource monitor's per-step metrics and its warn-once thresholds, and each
Lightning profiler writing what its config promises (a report; for the pytorch one a Chrome trace)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from quantum_ft.callbacks import ResourceMonitor
from quantum_ft.train import train
from quantum_ft.utils.config import ConfigError
from tests.helpers import TINY, compose_train

QUIET = ["validate_before=false", "validate_after=false", "trainer.max_steps=3", "trainer.val_check_interval=3"]


def _metrics(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(next((run / "csv").rglob("metrics.csv")).open()))


def test_resource_monitor_logs_every_step_and_warns_once_per_threshold(tmp_path: Path, caplog) -> None:
    overrides = [*TINY, *QUIET, "+callbacks.resource_monitor.thresholds.rss_gb=0.01"]
    overrides.append("+callbacks.resource_monitor.thresholds.step_s=1e-6")
    overrides.append("+callbacks.resource_monitor.thresholds.cpu_util=1e9")  # never crossed
    with caplog.at_level(logging.WARNING, logger="quantum_ft.callbacks.resources"):
        train(compose_train(overrides, tmp_path / "run"))
    rows = [r for r in _metrics(tmp_path / "run") if r.get("train/resources/rss_gb")]
    assert len(rows) == 3
    for row in rows:
        assert 0.05 < float(row["train/resources/rss_gb"]) < 64  # a Python with torch loaded, in GiB
        assert float(row["train/resources/step_s"]) > 0 and float(row["train/tokens_per_s"]) > 0  # Throughput's
        # CPU seconds over wall x cores; on millisecond steps the two clocks tick apart by a few percent
        assert 0 < float(row["train/resources/cpu_util"]) <= 1.25
    warnings = [r.getMessage() for r in caplog.records if "resource monitor" in r.getMessage()]
    assert len(warnings) == 2, warnings  # rss_gb and step_s, once each though crossed at every step
    assert any("rss_gb" in w and "thresholds.rss_gb" in w for w in warnings)


def test_an_unknown_threshold_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown metrics \\['rss'\\].*rss_gb"):
        ResourceMonitor(thresholds={"rss": 1.0})


@pytest.mark.parametrize("profiler", ["simple", "advanced", "pytorch"])
def test_each_profiler_writes_its_report(profiler: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(compose_train([*TINY, *QUIET, f"profiler={profiler}"], run))
    report = run / "profiler" / f"fit-{profiler}.txt"
    assert report.is_file(), sorted(p.name for p in (run / "profiler").iterdir())
    text = report.read_text()
    assert "training_step" in text or "aten::" in text
    if profiler == "pytorch":
        traces = list((run / "profiler").glob("*.pt.trace.json"))
        assert traces, "no Chrome trace written"
        events = json.loads(traces[0].read_text())["traceEvents"]
        assert any(e.get("name", "").startswith("aten::") for e in events)

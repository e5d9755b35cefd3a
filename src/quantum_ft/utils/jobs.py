"""A resumable list of training runs, each `python -m quantum_ft.train ... hydra.run.dir=<its directory>` in a
subprocess of its own (its peak memory is its own; a crash takes only it). A run whose metrics.json exists is done
and skipped; one that was interrupted starts again in its directory, where `ckpt_path=auto` resumes it from its
last checkpoint. What the experiments' study drivers share (experiments/adapter_study, quantum_opt_study)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def finished(directory: Path) -> dict[str, Any] | None:
    """The run's metrics.json (written last, atomically, by train.finalize) when the run is complete, else None."""
    try:
        return json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def run_one(directory: Path, overrides: list[str]) -> dict[str, Any]:
    """Train (or resume) one run in `directory`; its output goes to directory/driver.log."""
    directory.mkdir(parents=True, exist_ok=True)
    resumed = (directory / "checkpoints" / "last.ckpt").exists()
    print(f"  {directory.name}: {'resuming' if resumed else 'starting'}", flush=True)
    started = time.perf_counter()
    with open(directory / "driver.log", "a") as log:
        code = subprocess.call(
            [sys.executable, "-m", "quantum_ft.train", *overrides, f"hydra.run.dir={directory}", "ckpt_path=auto"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ | {"TOKENIZERS_PARALLELISM": "false"},
        )
    metrics = finished(directory)
    if code != 0 or metrics is None:
        raise SystemExit(f"{directory.name} failed (exit {code}); its log: {directory / 'driver.log'}")
    print(f"  {directory.name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return metrics


def run_all(jobs: list[tuple[Path, list[str]]]) -> dict[str, dict[str, Any]]:
    """Every (directory, overrides) in order, skipping the finished ones; {directory name: metrics}."""
    results = {}
    for i, (directory, overrides) in enumerate(jobs, 1):
        done = finished(directory)
        if done is None:
            print(f"[{i}/{len(jobs)}] {directory.name}", flush=True)
            done = run_one(directory, overrides)
        results[directory.name] = done
    return results

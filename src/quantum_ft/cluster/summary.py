"""The table at the end of a multirun: every job's overrides and final metrics, and the best job.

A Hydra callback (`hydra.callbacks`), so it works with every launcher (basic, submitit_local, submitit_slurm) and
sweeper (basic, Optuna). It reads what each job left in its directory (`.hydra/overrides.yaml`, `metrics.json`),
so a job that failed shows up as failed instead of vanishing from the table.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from quantum_ft.utils.io import atomic_write

log = logging.getLogger(__name__)
SHOWN_METRICS = (
    "val/loss_before",
    "val/loss_after",
    "val/reward_before",
    "val/reward_after",
    "train/loss",
    "global_step",
    "trainable_params",
    "wall_time_s",
)


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory of the sweep, in job order."""
    rows = []
    for overrides_file in sweep_dir.glob("*/.hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append(
            {
                "job": job_dir.name,
                "overrides": list(yaml.safe_load(overrides_file.read_text()) or []),
                "status": "done" if metrics else "failed",
                **metrics,
            }
        )
    return sorted(rows, key=lambda r: (not r["job"].isdigit(), int(r["job"]) if r["job"].isdigit() else r["job"]))


def best_job(rows: list[dict[str, Any]], metric: str, mode: str = "min") -> dict[str, Any] | None:
    scored = [r for r in rows if isinstance(r.get(metric), int | float) and math.isfinite(r[metric])]
    if not scored:
        return None
    return (min if mode == "min" else max)(scored, key=lambda r: r[metric])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def write_summary(sweep_dir: Path, metric: str, mode: str = "min") -> Path | None:
    """Write summary.md (a table to read) and summary.csv (every metric, to load) into the sweep directory."""
    rows = collect_jobs(sweep_dir)
    if not rows:
        return None
    best = best_job(rows, metric, mode)
    metrics = [m for m in (metric, *SHOWN_METRICS) if any(m in r for r in rows)]
    metrics = list(dict.fromkeys(metrics))
    common = [o for o in rows[0]["overrides"] if all(o in r["overrides"] for r in rows)]
    for row in rows:
        row["overrides"] = " ".join(o for o in row["overrides"] if o not in common)
    header = ["job", "overrides", "status", *metrics]
    lines = [
        f"# Multirun summary: {sweep_dir}",
        "",
        f"Every job: `{' '.join(common)}`" if common else "",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        mark = " **best**" if best is row else ""
        cells = [row["job"] + mark, f"`{row['overrides']}`", row["status"], *(_fmt(row.get(m)) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if best is None:
        lines.append(f"No job reported {metric}.")
    else:
        lines.append(f"Best ({mode} {metric}): job {best['job']}, `{best['overrides']}`: {_fmt(best[metric])}")
    text = "\n".join(lines) + "\n"
    atomic_write(sweep_dir / "summary.md", lambda tmp: Path(tmp).write_text(text))

    fields = list(dict.fromkeys(k for r in rows for k in r))

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(sweep_dir / "summary.csv", write_csv)
    print(text, flush=True)
    return sweep_dir / "summary.md"


class MultirunSummary(Callback):
    """At the end of a multirun, write summary.md / summary.csv into the sweep directory."""

    def __init__(self, metric: str = "val/loss_after", mode: str = "min") -> None:
        self.metric = metric
        self.mode = mode

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_summary(Path(str(config.hydra.sweep.dir)), self.metric, self.mode)
        if path:
            log.info("Multirun summary: %s", path)

"""The loss (or reward) curve PNG written at the end of every run."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # not pyplot: saving a plot leaves the user's backend alone

from quantum_ft.utils.io import atomic_write


def read_metric_series(csv_root: Path, name: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one metric across every CSVLogger version under `csv_root` (a resumed run
    writes a new version); where versions overlap, the later one wins."""
    series: dict[int, float] = {}
    versions = sorted(csv_root.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    for path in versions:
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get(name) not in (None, ""):
                    series[int(row["step"])] = float(row[name])
    return sorted(series.items())


def ema(values: list[float] | tuple[float, ...], decay: float = 0.8) -> list[float]:
    """Exponential moving average, debiased at the start (as TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = decay * avg + (1 - decay) * v
        out.append(avg / (1 - decay**i))
    return out


def plot_losses(csv_root: Path, out_png: Path, title: str = "", quantity: str = "loss") -> Path | None:
    """train/<quantity> (raw and smoothed) and val/<quantity> against the optimiser step: loss, or GRPO's reward."""
    train_name, val_name = f"train/{quantity}", f"val/{quantity}"
    train = read_metric_series(csv_root, train_name)
    val = read_metric_series(csv_root, val_name)
    if not train and not val:
        return None
    fig = Figure(figsize=(7, 4.2), dpi=120)
    ax = fig.subplots()
    if train:
        steps, values = zip(*train)
        ax.plot(steps, values, color="tab:blue", alpha=0.3, label=train_name)
        ax.plot(steps, ema(values), color="tab:blue", label=f"{train_name} (EMA 0.8)")
    if val:
        ax.plot(*zip(*val), "o-", label=val_name)
    return finish(fig, ax, "optimiser step", quantity, title, out_png)


def plot_lr_find(lrs: list[float], losses: list[float], suggestion: float | None, out_png: Path) -> Path:
    """The LR range test: smoothed training loss against the learning rate (log axis), the suggestion marked."""
    fig = Figure(figsize=(7, 4.2), dpi=120)
    ax = fig.subplots()
    ax.plot(lrs, losses, color="tab:blue", label="train loss (smoothed)")
    if suggestion is not None:
        ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested lr {suggestion:.3g}")
    ax.set_xscale("log")
    return finish(fig, ax, "learning rate", "loss", "LR finder", out_png)


def finish(
    fig: Figure, ax: Any, xlabel: str, ylabel: str, title: str, out_png: Path, legend_size: float | None = None
) -> Path:
    """Labels, grid, legend, layout, and the PNG written (its folder made; a crash keeps the previous picture)."""
    label_panel(ax, xlabel, ylabel, title, legend_size)
    fig.tight_layout()
    atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png"))
    return out_png


def label_panel(ax: Any, xlabel: str, ylabel: str, title: str, legend_size: float | None = None) -> None:
    """Axis labels, title, a light grid and the legend: one panel's finish (finish() does it for the last panel)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)

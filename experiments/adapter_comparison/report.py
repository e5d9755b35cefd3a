"""Summarise a multirun over adapters: one PNG with every run's loss curves and a markdown table of trainable
parameters, final train/val loss and wall time.

    python experiments/adapter_comparison/report.py MULTIRUN_DIR [--out experiments/adapter_comparison]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from quantum_ft.utils.plots import ema, read_metric_series  # noqa: E402


def load_runs(multirun: Path) -> list[dict]:
    runs = []
    for metrics_file in sorted(multirun.glob("*/metrics.json")):
        run = json.loads(metrics_file.read_text())
        run["dir"] = metrics_file.parent
        run["train"] = read_metric_series(metrics_file.parent / "csv", "train/loss")
        run["val"] = read_metric_series(metrics_file.parent / "csv", "val/loss")
        runs.append(run)
    if not runs:
        raise SystemExit(f"No finished run (metrics.json) under {multirun}.")
    return runs


def plot(runs: list[dict], out_png: Path) -> None:
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    for i, run in enumerate(runs):
        color = f"C{i}"
        steps, values = zip(*run["train"])
        ax_train.plot(steps, values, color=color, alpha=0.2)
        ax_train.plot(steps, ema(values), color=color, label=run["adapter"])
        ax_val.plot(*zip(*run["val"]), "o-", color=color, label=run["adapter"])
    ax_train.set_title("train/loss (faint: raw, solid: EMA 0.8)")
    ax_val.set_title("val/loss")
    for ax in (ax_train, ax_val):
        ax.set_xlabel("optimiser step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{runs[0]['model']}: adapters on the same data, steps and schedule")
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


def table(runs: list[dict]) -> str:
    rows = [
        "| adapter | trainable params | % of model | val/loss start | val/loss end | train/loss (last 5) | wall time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        last = [v for _, v in run["train"][-5:]]
        share = 100 * run["trainable_params"] / run["total_params"]
        rows.append(
            f"| {run['adapter']} | {run['trainable_params']:,} | {share:.3f} |"
            f" {run['val/loss_before']:.4f} | {run['val/loss_after']:.4f} | {sum(last) / len(last):.4f} |"
            f" {run['wall_time_s'] / 60:.1f} min |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("multirun", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    runs = load_runs(args.multirun)
    plot(runs, args.out / "loss_curves.png")
    text = table(runs)
    (args.out / "results.md").write_text(text + "\n")
    print(text)
    print(f"\nplot: {args.out / 'loss_curves.png'}")


if __name__ == "__main__":
    main()

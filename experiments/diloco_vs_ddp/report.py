"""DiLoCo vs DDP: validation-loss curves in one plot, bytes communicated by each, and one JSON line with the
final validation losses, their gap and the communication ratio.

    python experiments/diloco_vs_ddp/report.py logs/diloco_vs_ddp/diloco logs/diloco_vs_ddp/ddp
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from quantum_ft.utils.plots import read_metric_series  # noqa: E402


def summarise(run: Path) -> dict:
    val = read_metric_series(run / "csv", "val/loss")
    comm = read_metric_series(run / "csv", "comm/bytes")
    calls = read_metric_series(run / "csv", "comm/all_reduces")
    return {
        "val": val,
        "final_val": val[-1][1],
        "bytes": comm[-1][1],
        "all_reduces": calls[-1][1],
        "steps": comm[-1][0] + 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("diloco", type=Path)
    parser.add_argument("ddp", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    diloco, ddp = summarise(args.diloco), summarise(args.ddp)

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(*zip(*ddp["val"]), "o-", label=f"DDP ({ddp['bytes'] / 2**20:,.0f} MiB sent per worker)")
    ax.plot(*zip(*diloco["val"]), "s-", label=f"DiLoCo tau=50 ({diloco['bytes'] / 2**20:,.1f} MiB per worker)")
    ax.set_xlabel("inner optimiser step (each of 4 workers)")
    ax.set_ylabel("val/loss (nats per character)")
    ax.set_title("NanoGPT small on tiny_shakespeare, 4 workers, equal tokens")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "val_loss.png")

    summary = {
        "final_val_loss_diloco": round(diloco["final_val"], 4),
        "final_val_loss_ddp": round(ddp["final_val"], 4),
        "val_loss_gap_percent": round(100 * (diloco["final_val"] - ddp["final_val"]) / ddp["final_val"], 2),
        "bytes_diloco": int(diloco["bytes"]),
        "bytes_ddp": int(ddp["bytes"]),
        "communication_reduction": round(ddp["bytes"] / diloco["bytes"], 1),
        "all_reduces_diloco": int(diloco["all_reduces"]),
        "all_reduces_ddp": int(ddp["all_reduces"]),
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

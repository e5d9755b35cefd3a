"""Where our SFT step's time goes: torch.profiler over a few steps of the benchmark's settings (bench.py), the
operators ranked by self CPU time, written to profile_<precision>.md beside this file.

    python experiments/sft_vs_trl/profile_step.py [--precision auto] [--warmup 2] [--steps 3]

The arm is bench.py's `ours-default` (or `--precision 32-true` for ours-fp32). Self time is the operator's own time
without its children: the ranking names the kernels that cost, not the Python layers above them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bench import our_overrides  # noqa: E402

from quantum_ft.train import build, fit  # noqa: E402
from quantum_ft.utils.config import compose_config  # noqa: E402
from quantum_ft.utils.io import atomic_text  # noqa: E402


class Profiled(L.Callback):
    """Profiles optimiser steps warmup .. warmup + steps - 1 (the whole training batch, hooks included)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.prof = warmup, steps, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.prof = profile(activities=[ProfilerActivity.CPU], record_shapes=False)
            self.prof.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.prof is not None and trainer.global_step == self.warmup + self.steps:
            self.prof.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=25, help="operators listed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        overrides = our_overrides(False, args.precision, args.warmup + args.steps)
        run = build(compose_config("train", overrides, output_dir=out))
        probe = Profiled(args.warmup, args.steps)
        run.trainer.callbacks.append(probe)
        fit(run)
    averages = probe.prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages)
    rows = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.rows]
    lines = [
        f"torch.profiler, {args.steps} steps after {args.warmup} warm-up steps, precision {run.trainer.precision},"
        f" {torch.get_num_threads()} threads; self CPU time (without children), share of all operators' self time.",
        "",
        "| operator | calls | self CPU ms per step | share |",
        "|---|---:|---:|---:|",
    ]
    for e in rows:
        share = 100 * e.self_cpu_time_total / total
        per_step = e.self_cpu_time_total / 1e3 / args.steps
        lines.append(f"| `{e.key}` | {e.count // args.steps} | {per_step:.1f} | {share:.1f}% |")
    text = "\n".join(lines) + "\n"
    atomic_text(HERE / f"profile_{str(run.trainer.precision).replace('-', '_')}.md", text)
    print(text)


if __name__ == "__main__":
    main()

"""The GPU-only training paths, each run through the real command line on one GPU, and resumed once.

    python experiments/gpu_strategies/run.py --out experiments/gpu_strategies

For every row: train 6 steps, then run the same command with 10 steps in the same directory, which must resume from
the checkpoint the first run left (ckpt_path=auto) and end at step 10. Reports final loss, peak GPU memory and the
wall time of the first run. The tiny random Llama (LoRA / QLoRA / vqc adapters) and NanoGPT-small (full training).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TINY = [
    "model=tiny",
    "data.max_samples=96",
    "data.val_size=16",
    "data.cutoff_len=128",
    "trainer.val_check_interval=5",
    "trainer.enable_progress_bar=false",
    "callbacks=none",
    "+callbacks.model_checkpoint={_target_: lightning.pytorch.callbacks.ModelCheckpoint, "
    "dirpath: '${paths.output_dir}/checkpoints', save_last: true, every_n_train_steps: 3}",
    "logger=csv",
]
NANO = ["model=nanogpt_small", "data=tiny_shakespeare", "adapter=none", "stage=causal_lm", *TINY[4:]]

ROWS: list[tuple[str, list[str]]] = [
    ("LoRA, fp32", [*TINY, "trainer=gpu", "trainer.precision=32-true"]),
    ("LoRA, bf16-mixed", [*TINY, "trainer=gpu"]),
    ("QLoRA 4-bit + paged AdamW 8-bit, bf16", [*TINY, "adapter=qlora", "optimizer=paged_adamw_8bit", "trainer=gpu"]),
    ("vqc (torch engine), bf16-mixed", [*TINY, "adapter=vqc", "trainer=gpu"]),
    ("LoRA, FSDP full shard", [*TINY, "trainer=fsdp"]),
    ("LoRA, DeepSpeed ZeRO-1", [*TINY, "trainer=deepspeed", "trainer.strategy.stage=1"]),
    ("LoRA, DeepSpeed ZeRO-2", [*TINY, "trainer=deepspeed", "trainer.strategy.stage=2"]),
    ("LoRA, DeepSpeed ZeRO-3", [*TINY, "trainer=deepspeed", "trainer.strategy.stage=3"]),
    ("NanoGPT-small full, FSDP", [*NANO, "trainer=fsdp"]),
    ("NanoGPT-small full, DeepSpeed ZeRO-3", [*NANO, "trainer=deepspeed", "trainer.strategy.stage=3"]),
]


def run(overrides: list[str], out: Path, steps: int, log) -> tuple[int, float]:
    cmd = [sys.executable, "-m", "quantum_ft.train", *overrides, f"trainer.max_steps={steps}", f"hydra.run.dir={out}"]
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return done.returncode, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/gpu_strategies"))
    parser.add_argument("--only", default="", help="run only rows whose name contains this")
    args = parser.parse_args()
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"
    results = []
    with open(args.out / "log.txt", "w") as log:
        for i, (name, overrides) in enumerate(ROWS):
            if args.only not in name:
                continue
            run_dir = args.runs / f"row{i}"
            rc1, seconds = run(overrides, run_dir, 6, log)
            rc2, _ = run(overrides, run_dir, 10, log) if rc1 == 0 else (None, 0.0)
            m = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
            resumed = "Resuming from" in (run_dir / "train.log").read_text() if rc2 == 0 else False
            results.append(
                {
                    "name": name,
                    "ok": rc1 == 0 and rc2 == 0 and m.get("global_step") == 10 and resumed,
                    "first_run_s": round(seconds, 1),
                    "global_step": m.get("global_step"),
                    "val_loss_after": m.get("val/loss_after"),
                    "gpu_peak_memory_gb": m.get("gpu_peak_memory_gb"),
                    "resumed": resumed,
                }
            )
            print(results[-1], flush=True)
            (args.out / "results.json").write_text(json.dumps({"device": device, "rows": results}, indent=2))
    lines = [
        f"Device: {device}; torch {torch.__version__}",
        "",
        "| path | passes (6 steps, then resumed to 10) | first run (s, start-up included) | val/loss | peak GPU GB |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        loss = f"{r['val_loss_after']:.4f}" if r["val_loss_after"] is not None else "-"
        mem = f"{r['gpu_peak_memory_gb']:.3f}" if r["gpu_peak_memory_gb"] is not None else "-"
        lines.append(f"| {r['name']} | {'yes' if r['ok'] else 'NO'} | {r['first_run_s']} | {loss} | {mem} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

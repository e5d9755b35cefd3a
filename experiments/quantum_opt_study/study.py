"""Does choosing the trained adapter units by a QUBO every k steps help? Five arms, same steps and seeds, resumable.

    (a) all     every unit trains (no callback)
    (b) qaoa    the unit-selection QUBO solved by QAOA on our simulator   (+quantum_opt=qaoa)
    (c) exact   the same QUBO solved classically, by exact enumeration    (+quantum_opt=exact)
    (d) random  as many units, chosen at random                           (+quantum_opt=random)
    (e) greedy  as many units, the most important ones                    (+quantum_opt=greedy)

SmolLM2-135M + LoRA r 8 on q/v on the vendored Alpaca demo; units of 3 decoder layers (10 units), 5 kept, a decision
every 10 steps. Each run is `python -m quantum_ft.train` in its own directory (quantum_ft.utils.jobs: a finished run
is skipped, an interrupted one resumes from its checkpoint). Then the report: final validation loss per arm
(mean ± std, 95% interval over seeds), wall time, backward seconds per step (measured every step by the callback),
the trainable fraction, and the QAOA decisions' approximation ratio and solver time against exact enumeration.

    python experiments/quantum_opt_study/study.py                  # the study (hours on 2 CPU cores)
    python experiments/quantum_opt_study/study.py --report-only    # the report from the finished runs
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from scipy import stats

from quantum_ft.utils.io import atomic_text, read_journal
from quantum_ft.utils.jobs import finished, run_all
from quantum_ft.utils.plots import read_metric_series

HERE = Path(__file__).parent
ARMS = {
    "all": [],
    "qaoa": ["+quantum_opt=qaoa"],
    "exact": ["+quantum_opt=exact"],
    "random": ["+quantum_opt=random"],
    "greedy": ["+quantum_opt=greedy"],
}


def settings(args: argparse.Namespace, arm: str, seed: int) -> list[str]:
    return [
        f"model={args.model}",
        "adapter=lora",
        "data=alpaca_demo",
        f"data.val_size={args.val_size}",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={args.val_every}",
        f"optimizer.lr={args.lr}",
        f"seed={seed}",
        "eval.tasks=[]",
        "~callbacks.sample_generations",
        "callbacks.model_checkpoint.every_n_train_steps=10",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        *ARMS[arm],
        *(
            [
                f"callbacks.quantum_opt.every={args.every}",
                f"callbacks.quantum_opt.layers_per_unit={args.layers_per_unit}",
            ]
            if ARMS[arm]
            else []
        ),
        *args.extra,
    ]


def summarise(out: Path) -> str:
    rows = []
    for directory in sorted((out / "runs").iterdir()):
        metrics = finished(directory)
        if metrics is None:
            continue
        arm, seed = directory.name.rsplit("-s", 1)
        backward = [v for _, v in read_metric_series(directory / "csv", "quantum_opt/backward_s")]
        fraction = [v for _, v in read_metric_series(directory / "csv", "quantum_opt/trainable_fraction")]
        step = [v for _, v in read_metric_series(directory / "csv", "train/resources/step_s")]
        decisions = read_journal(directory / "quantum_opt.jsonl") if (directory / "quantum_opt.jsonl").exists() else []
        rows.append(
            {
                "arm": arm,
                "seed": int(seed),
                "val_loss": metrics.get("val/loss_after"),
                "wall_time_s": metrics.get("wall_time_s"),
                "backward_s": statistics.median(backward) if backward else None,
                "step_s": statistics.median(step[1:] or step) if step else None,
                "trainable_fraction": statistics.fmean(fraction) if fraction else 1.0,
                "approximation_ratio": [d["approximation_ratio"] for d in decisions if d.get("approximation_ratio")],
                "solver_s": [d["seconds"] for d in decisions],
                "p_optimum": [d["info"]["p_optimum"] for d in decisions if "p_optimum" in d.get("info", {})],
            }
        )
    atomic_text(out / "runs.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    lines = [
        "| arm | seeds | val loss mean ± std | 95% half-width | wall s | step s | backward s | trainable fraction |"
        " approx. ratio | QAOA P(optimum) | solver s per decision |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in ARMS:
        rs = [r for r in rows if r["arm"] == arm]
        if not rs:
            continue
        losses = [r["val_loss"] for r in rs]
        std = statistics.stdev(losses) if len(losses) > 1 else math.nan
        half = stats.t.ppf(0.975, len(losses) - 1) * std / math.sqrt(len(losses)) if len(losses) > 1 else math.nan
        ratios = [x for r in rs for x in r["approximation_ratio"]]
        solver = [x for r in rs for x in r["solver_s"]]
        backward = [r["backward_s"] for r in rs if r["backward_s"] is not None]
        step = [r["step_s"] for r in rs if r["step_s"] is not None]
        p_opt = [x for r in rs for x in r["p_optimum"]]
        lines.append(
            f"| {arm} | {len(rs)} | {statistics.fmean(losses):.4f} ± {std:.4f} | {half:.4f} |"
            f" {statistics.fmean(r['wall_time_s'] for r in rs):.0f} |"
            f" {statistics.fmean(step) if step else math.nan:.2f} |"
            f" {statistics.fmean(backward) if backward else math.nan:.3f} |"
            f" {statistics.fmean(r['trainable_fraction'] for r in rs):.2f} |"
            f" {statistics.fmean(ratios) if ratios else math.nan:.3f} |"
            f" {statistics.fmean(p_opt) if p_opt else math.nan:.3f} |"
            f" {statistics.fmean(solver) if solver else math.nan:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    atomic_text(out / "report.md", text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "study")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--model", default="smollm2_135m")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--layers-per-unit", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-size", type=int, default=100)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("extra", nargs="*", help="more Hydra overrides for every run")
    args = p.parse_args()
    out = args.out.resolve()
    if not args.report_only:
        jobs = [
            (out / "runs" / f"{arm}-s{seed}", settings(args, arm, seed))
            for seed in range(args.seeds)
            for arm in args.arms
        ]
        run_all(jobs)
    print(summarise(out))


if __name__ == "__main__":
    sys.exit(main())

"""Do quantum adapters help? The adapter study's driver: a grid of `python -m quantum_ft.train` runs, resumable.

Protocol (README.md): per arm a learning-rate sweep (one seed, `--sweep-steps`; where the best rate is at an edge of
the rates tried, the next rate beyond it is tried too, up to `--max-extend` a side), the rate with the lowest final
validation loss chosen, then `--seeds` seeds at that rate for `--steps` optimiser steps; the untrained base model
evaluated once per seed as the floor. Every run of seed s sees the same data split and order whatever the arm
(data.seed = seed), so arms are compared pairwise by seed.

Resumable: each job is one run directory under <out>/runs/ (git-ignored). When a job finishes, its figures are added
to <out>/runs.jsonl, the committed journal: a job in the journal, or whose metrics.json is there, is done and
skipped, also in a fresh clone without runs/ (commit runs.jsonl to carry the study across sessions). A job that was
interrupted is started again in its own directory, where `ckpt_path=auto` resumes it from its last checkpoint (every
`--ckpt-every` steps; in a fresh clone, where the checkpoint is gone, it starts over). Each job is a subprocess, so
its peak memory is its own. When the grid is done, report.py builds the tables and the plot from the journal.

    python experiments/adapter_study/study.py                       # the full study (many hours on 2 CPU cores)
    python experiments/adapter_study/study.py --dry-run             # list the jobs and whether each is done
    python experiments/adapter_study/study.py --model tiny --arms lora vqc --seeds 2 --steps 4 --lrs 1e-3 \\
        --no-base --out /tmp/study                                  # a tiny grid (what the test runs)

Left out: a sweep over seeds inside the rate choice (one seed chooses the rate; the seeds then test it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from quantum_ft.utils.io import atomic_text
from quantum_ft.utils.jobs import run_one

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from report import collect, finished, read_journal, record, report, write_journal  # noqa: E402  (beside this file)

# arm -> the adapter overrides that make it. LoRA r 4 is the parameter-matched LoRA: on SmolLM2-135M's q/v it has
# 230,400 trainable parameters against vqc's and tq's 232,320 (n 4, L 2): 0.8% apart.
ARMS: dict[str, list[str]] = {
    "lora": ["adapter=lora", "adapter.r=8", "adapter.alpha=16"],
    "lora_r4": ["adapter=lora", "adapter.r=4", "adapter.alpha=8"],
    "vqc": ["adapter=vqc"],
    "vqc_classical": ["adapter=vqc_classical"],
    "tq": ["adapter=tq"],
    "quanta": ["adapter=quanta"],
    "vqc_reference": ["adapter=vqc", "adapter.init=reference"],
    "tq_reference": ["adapter=tq", "adapter.init=reference"],
}
# The reference-init arms reproduce the pyvqnet demo's curve shape; they take their zero-init sibling's rate.
RATE_FROM = {"vqc_reference": "vqc", "tq_reference": "tq"}
LRS = [1e-4, 3e-4, 1e-3, 3e-3]
MMLU_SUBJECTS = ["abstract_algebra", "anatomy", "high_school_computer_science", "international_law", "marketing"]


@dataclass
class Job:
    name: str
    phase: str  # sweep | final | base
    arm: str
    seed: int
    lr: float | None
    steps: int
    overrides: list[str] = field(default_factory=list)

    def directory(self, out: Path) -> Path:
        return out / "runs" / self.name


def common(args: argparse.Namespace, mmlu: bool = True) -> list[str]:
    """What every run shares: model, data, schedule, validation, evaluation (MMLU not in the rate sweep: the rate is
    chosen on validation loss), checkpoints."""
    shared = [
        f"model={args.model}",
        "data=alpaca_demo",
        f"data.val_size={args.val_size}",
        f"data.batch_size={args.batch_size}",
        f"trainer.val_check_interval={args.val_every}",
        "stage.warmup_steps=10",
        "trainer.precision=bf16-mixed",  # what auto chose for every sweep run, kept whatever the next machine has
        f"callbacks.model_checkpoint.every_n_train_steps={args.ckpt_every}",
        "~callbacks.sample_generations",
        "trainer.enable_progress_bar=false",
        "logger=csv",
    ]
    if args.mmlu and mmlu:
        subjects = ",".join(MMLU_SUBJECTS)
        shared += ["eval.tasks=[mmlu]", f"eval.subjects=[{subjects}]", f"eval.max_samples={args.mmlu}"]
    else:
        shared += ["eval.tasks=[]"]
    return shared + list(args.extra)


def run_name(phase: str, arm: str, seed: int, lr: float | None) -> str:
    return f"{phase}-{arm}-s{seed}" + (f"-lr{lr:g}" if lr is not None else "")


def sweep_jobs(args: argparse.Namespace) -> list[Job]:
    if len(args.lrs) < 2:
        return []  # one rate: nothing to choose
    return [
        Job(run_name("sweep", arm, 0, lr), "sweep", arm, 0, lr, args.sweep_steps)
        for arm in args.arms
        if arm not in RATE_FROM
        for lr in args.lrs
    ]


def final_jobs(args: argparse.Namespace, rates: dict[str, float]) -> list[Job]:
    jobs = []
    for seed in range(args.seeds):
        if args.base:
            jobs.append(Job(run_name("base", "base", seed, None), "base", "base", seed, None, 0))
        for arm in args.arms:
            lr = rates[RATE_FROM.get(arm, arm)]
            jobs.append(Job(run_name("final", arm, seed, lr), "final", arm, seed, lr, args.steps))
    return jobs


def overrides(job: Job, args: argparse.Namespace) -> list[str]:
    """The run's settings (utils.jobs adds its directory and ckpt_path=auto)."""
    arm = ARMS["lora"] if job.phase == "base" else ARMS[job.arm]  # base: LoRA's zero update, never trained
    settings = [*common(args, mmlu=job.phase != "sweep"), *arm, f"seed={job.seed}", f"trainer.max_steps={job.steps}"]
    if job.lr is not None:
        settings.append(f"optimizer.lr={job.lr}")
    return settings


def run_jobs(jobs: list[Job], args: argparse.Namespace, out: Path) -> None:
    """Run the jobs not yet in the journal, adding each to it as it finishes. A sweep run that fails (a rate so
    high that training diverges: the loss guard stops it) is journaled as failed, an infinite loss for the rate
    choice, and the study goes on; a failed final run stops the study."""
    journal = {run["name"] for run in collect(out)}  # finished run directories join the journal first
    todo = [job for job in jobs if job.name not in journal]
    if len(todo) < len(jobs):
        print(f"  {len(jobs) - len(todo)} of {len(jobs)} done already (runs.jsonl)", flush=True)
    for i, job in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {job.name}", flush=True)
        try:
            run_one(job.directory(out), overrides(job, args))
            record(out, job.directory(out))
        except SystemExit as failure:
            if job.phase != "sweep":
                raise
            print(f"  {job.name}: {failure}; journaled as failed (infinite loss at this rate)", flush=True)
            failed = {"name": job.name, "phase": "sweep", "arm": job.arm, "seed": job.seed, "lr": job.lr}
            write_journal(out, read_journal(out) | {job.name: failed | {"val_loss": None, "failed": str(failure)}})


def next_rate(lr: float, up: bool) -> float:
    """The neighbour of lr on the 1-3-10 grid (1e-3 -> 3e-3 -> 1e-2 up; 1e-4 -> 3e-5 -> 1e-5 down)."""
    three = f"{lr:.0e}".startswith("3")
    step = (10 / 3 if three else 3) if up else (3 if three else 10 / 3)
    return float(f"{(lr * step if up else lr / step):.0e}")


def sweep_losses(arm: str, journal: dict[str, dict]) -> dict[float, float]:
    """rate -> final validation loss of the arm's sweep runs in the journal (infinite where a run failed or its loss
    is not finite)."""
    runs = [run for run in journal.values() if run["phase"] == "sweep" and run["arm"] == arm]
    return {run["lr"]: run["val_loss"] if finite(run["val_loss"]) else math.inf for run in runs}


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def edge_jobs(args: argparse.Namespace, out: Path) -> list[Job]:
    """One more rate beyond the edge for each arm whose best rate is at the edge of what it has tried (a best at
    the edge is not a choice: the optimum may lie beyond), at most --max-extend beyond the given grid a side."""
    jobs, journal = [], read_journal(out)
    for arm in args.arms:
        losses = sweep_losses(arm, journal)
        if arm in RATE_FROM or len(losses) < len(args.lrs):
            continue
        best, tried = min(losses, key=losses.get), sorted(losses)
        for edge, up, given in ((tried[-1], True, max(args.lrs)), (tried[0], False, min(args.lrs))):
            beyond = sum(lr > given for lr in tried) if up else sum(lr < given for lr in tried)
            if best == edge and beyond < args.max_extend:
                lr = next_rate(edge, up)
                jobs.append(Job(run_name("sweep", arm, 0, lr), "sweep", arm, 0, lr, args.sweep_steps))
    return jobs


def chosen_rates(args: argparse.Namespace, journal: dict[str, dict], out: Path) -> dict[str, float]:
    """arm -> the rate whose sweep run ended with the lowest validation loss (the only rate when one is given), from
    the journal of the study in `out`."""
    if len(args.lrs) < 2:
        return {arm: args.lrs[0] for arm in ARMS}
    rates = {}
    for arm in args.arms:
        if arm not in RATE_FROM:
            losses = sweep_losses(arm, journal)
            if not losses or min(losses.values()) == math.inf:
                raise SystemExit(f"arm {arm}: no sweep run finished with a finite loss ({out / 'runs.jsonl'})")
            rates[arm] = min(losses, key=losses.get)
    return rates


def choose_rates(args: argparse.Namespace, out: Path) -> dict[str, float]:
    """chosen_rates from the journal, written to rates.json."""
    rates = chosen_rates(args, read_journal(out), out)
    atomic_text(out / "rates.json", json.dumps(rates, indent=2))
    return rates


def dry_run(args: argparse.Namespace, out: Path, sweep: list[Job]) -> None:
    """List the jobs and whether each is done; the final runs too once the sweep has chosen their rates. Writes
    nothing."""
    journal = finished(out) if out.is_dir() else {}

    def listed(jobs: list[Job]) -> int:
        for job in jobs:
            print(f"{'done' if job.name in journal else 'todo'}  {job.name}")
        return sum(job.name in journal for job in jobs)

    if listed(sweep) < len(sweep) or (out.is_dir() and edge_jobs(args, out)):
        print(f"then {args.seeds} seeds x {len(args.arms)} arms at the chosen rates ({'+ base' if args.base else ''})")
        return
    finals = final_jobs(args, chosen_rates(args, journal, out))
    print(f"{listed(finals)} of {len(finals)} final runs done")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "study", help="where runs/ and the report go")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--model", default="smollm2_135m")
    p.add_argument("--lrs", nargs="+", type=float, default=LRS, help="the sweep's rates (one rate: no sweep)")
    p.add_argument("--sweep-steps", type=int, default=100)
    p.add_argument("--max-extend", type=int, default=2, help="rates added beyond each edge of --lrs at most")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps of each seed's run")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--val-size", type=int, default=100)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--ckpt-every", type=int, default=25)
    p.add_argument("--mmlu", type=int, default=40, help="questions per MMLU subject (0: no MMLU)")
    p.add_argument("--no-base", dest="base", action="store_false", help="skip the untrained-base floor")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and whether each is done")
    p.add_argument("extra", nargs="*", help="more Hydra overrides for every run (e.g. trainer.precision=32-true)")
    args = p.parse_args(argv)
    for arm, source in RATE_FROM.items():
        if arm in args.arms and source not in args.arms:
            p.error(f"arm {arm} takes the rate chosen for {source}: add {source} to --arms")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    out = args.out.resolve()
    sweep = sweep_jobs(args)
    if args.dry_run:
        dry_run(args, out, sweep)
        return
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("out", "dry_run")}  # the folder is out
    atomic_text(out / "study.json", json.dumps(settings, indent=2))
    if sweep:
        print(f"Learning-rate sweep: {len(sweep)} runs", flush=True)
        run_jobs(sweep, args, out)
        while extra := edge_jobs(args, out):
            print(f"Best rate at the edge of the sweep: {len(extra)} more ({', '.join(j.name for j in extra)})")
            run_jobs(extra, args, out)
    rates = choose_rates(args, out)
    finals = final_jobs(args, rates)
    print(f"Seeds at the chosen rates: {len(finals)} runs ({rates})", flush=True)
    run_jobs(finals, args, out)
    report(out)


if __name__ == "__main__":
    main()

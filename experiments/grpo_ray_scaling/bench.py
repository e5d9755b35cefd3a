"""GRPO rollout throughput with `rollout=ray`: 1 and 2 Ray actors against in-process generation, on this machine,
interleaved in one run; then the scaling projected onto a cluster from the measured per-actor time and the bytes
each generation batch sends.

Settings: the embedded SmolLM2-135M-Instruct + LoRA r 8 (as +experiment=smollm2_grpo_qasm), the circuit-task
prompts, a generation batch of 4 prompts x 4 completions in 2 slices (stage.steps_per_generation=2, data.batch_size
2), 64 new tokens, temperature 0.8, top_p 0.95, top_k 50; the stage's own `generate_batch` is what is timed (its
`generate_s`: sampling and, for Ray, the weight hand-over and the result transfer). Arms:
- in-process: the trainer's process, torch on all (2) threads, slices one after the other;
- ray x1: one actor with 2 CPUs (2 threads), both slices in turn;
- ray x2: two actors with 1 CPU each, one slice each, in parallel.
All three arms live in one process and one local Ray at once (Ray is told 4 logical CPUs so that both actor sets
can exist; only one arm runs at a time); rounds are interleaved and each round reseeds, so every arm samples from
the same slice seeds, and the completions are compared.

Projection (no cluster here): N actors on N nodes like this one's actor, a generation batch of S slices (S >= N),
t_gen(N) = ceil(S / N) * t_slice + N * bytes_per_actor / bandwidth (the head sends every actor its copy over one
link: the worst case; Ray's object store may fan out better), and steps/s with the trainer's update time per
optimiser step U serial after generation, from the measured update of experiments/grpo_vs_trl (cheap reward,
num_iterations 1). Left out: reward scoring (the trainer's pool overlaps it), GPU actors.

    pip install -e ".[ray]"
    python experiments/grpo_ray_scaling/bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from quantum_ft.utils.io import atomic_text

HERE = Path(__file__).parent
SLICES, PROMPTS_PER_SLICE, GROUP, NEW_TOKENS = 2, 2, 4, 64
SAMPLING = {"temperature": 0.8, "top_p": 0.95, "top_k": 50}
ARMS = {"in-process": None, "ray x1": (1, 2), "ray x2": (2, 1)}  # (actors, cpus_per_actor)
BANDWIDTH_BPS = 10e9 / 8  # 10 Gbit/s Ethernet, in bytes/s
UPDATE_S = 17.31  # experiments/grpo_vs_trl/results.md: ours, cheap reward, num_iterations 1, update s a step


def overrides(arm: tuple[int, int] | None, out: str) -> list[str]:
    extra = [] if arm is None else ["rollout=ray", f"stage.rollout.actors={arm[0]}"]
    if arm is not None:
        extra += [f"stage.rollout.cpus_per_actor={arm[1]}", "stage.rollout.cpus=4"]
    return [
        "+experiment=smollm2_grpo_qasm",
        f"data.batch_size={PROMPTS_PER_SLICE}",
        f"stage.steps_per_generation={SLICES}",
        f"stage.group_size={GROUP}",
        f"stage.max_new_tokens={NEW_TOKENS}",
        *(f"stage.{k}={v}" for k, v in SAMPLING.items()),
        "~stage.rewards",
        "~stage.reward_weights",
        "+stage.rewards.length._target_=quantum_ft.stages.rewards.TargetLength",
        "callbacks=none",
        "logger=csv",
        f"paths.output_dir={out}",
        *extra,
    ]


def build_arm(arm: tuple[int, int] | None, out: str) -> Any:
    from quantum_ft.train import build
    from quantum_ft.utils.config import compose_config

    run = build(compose_config("train", overrides(arm, out)))
    run.datamodule.setup("fit")
    run.datamodule.reuse_batches(SLICES, 1)
    return run


def time_batch(module: Any, batch: dict[str, Any], seed: int) -> tuple[float, torch.Tensor, int]:
    """One generation batch through the stage: seconds, the completion ids, the weight bytes sent."""
    torch.manual_seed(seed)
    module.generate_batch(batch)
    completions = torch.cat([part["completion"] for part in module.buffer])
    sent = module.rollout_engine.weight_bytes if module.rollout_engine is not None else 0
    module.collect_rewards()
    return module.timings["generate_s"], completions, sent


def broadcast_seconds(module: Any) -> float:
    """Seconds to put the trained tensors in Ray's object store and fetch them back once (the hand-over's cost on
    one machine, no network)."""
    import ray

    weights = {n: p.detach().cpu() for n, p in module.model.named_parameters() if p.requires_grad}
    started = time.perf_counter()
    ray.get(ray.put(weights))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results.json"))
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    runs = {name: build_arm(arm, f"{tmp}/{i}") for i, (name, arm) in enumerate(ARMS.items())}
    batch = next(iter(runs["in-process"].datamodule.train_dataloader()))
    times: dict[str, list[float]] = {name: [] for name in ARMS}
    same: dict[str, bool] = {name: True for name in ARMS}
    sent: dict[str, int] = {}
    for name, run in runs.items():  # warm-up: actors start, first-call costs paid
        print(f"warm-up {name} ...", flush=True)
        time_batch(run.module, batch, seed=args.rounds)  # a seed no timed round uses
    for r in range(args.rounds):
        order = list(ARMS) if r % 2 == 0 else list(reversed(ARMS))  # interleaved, ABC CBA
        reference = None
        for name in order:
            seconds, completions, sent[name] = time_batch(runs[name].module, batch, seed=r)
            times[name].append(seconds)
            if reference is None:
                reference = completions
            elif completions.shape != reference.shape or not torch.equal(completions, reference):
                same[name] = False
            print(f"round {r} {name}: {seconds:.2f} s", flush=True)
    put_s = broadcast_seconds(runs["ray x2"].module)
    trainable = sum(p.numel() for p in runs["in-process"].module.model.parameters() if p.requires_grad)
    for run in reversed(runs.values()):  # the first Ray arm started Ray: it closes last
        if run.module.rollout_engine is not None:
            run.module.rollout_engine.close()
    record = {
        "rounds": args.rounds,
        "seconds": times,
        "identical_completions": same,
        "weight_bytes_per_batch": sent,
        "trainable_params": trainable,
        "object_store_roundtrip_s": put_s,
        "completions_per_batch": SLICES * PROMPTS_PER_SLICE * GROUP,
    }
    atomic_text(Path(args.out), json.dumps(record, indent=1) + "\n")
    text = report(record)
    atomic_text(HERE / "results.md", text + "\n")
    print(text)


def report(record: dict[str, Any]) -> str:
    completions = record["completions_per_batch"]
    median = {name: statistics.median(ts) for name, ts in record["seconds"].items()}
    base = median["in-process"]
    lines = [
        "| arm | generation batch s (median) | min-max s | completions/s | tokens/s (if all 64 generated) |"
        " vs in-process | weight bytes sent | same completions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, ts in record["seconds"].items():
        m = median[name]
        lines.append(
            f"| {name} | {m:.2f} | {min(ts):.2f}-{max(ts):.2f} | {completions / m:.2f} | "
            f"{completions * NEW_TOKENS / m:.0f} | {base / m:.2f}x | {record['weight_bytes_per_batch'][name]:,} | "
            f"{'yes' if record['identical_completions'][name] else 'no'} |"
        )
    per_actor = record["weight_bytes_per_batch"]["ray x1"]
    t_slice = median["ray x1"] / SLICES  # one actor on the whole (2-core) machine, one slice
    lines += [
        "",
        f"Projection: t_slice {t_slice:.2f} s (ray x1), {per_actor:,} bytes per actor, {BANDWIDTH_BPS * 8 / 1e9:.0f} "
        f"Gbit/s, update {UPDATE_S:.2f} s per optimiser step (grpo_vs_trl). A generation batch of S = N slices.",
        "",
        "| actors N | slices S | generation batch s | broadcast s | completions/s | rollout speed-up |"
        " steps/s | step speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first: tuple[float, float] | None = None  # completions/s and steps/s at N = 1
    for n in (1, 2, 4, 8, 16, 32, 64):
        s = n
        broadcast = n * per_actor / BANDWIDTH_BPS
        t_gen = math.ceil(s / n) * t_slice + broadcast
        rate = s * PROMPTS_PER_SLICE * GROUP / t_gen
        steps = s / (t_gen + s * UPDATE_S)
        first = first or (rate, steps)
        lines.append(
            f"| {n} | {s} | {t_gen:.2f} | {broadcast * 1e3:.2f} ms | {rate:.2f} | {rate / first[0]:.2f}x |"
            f" {steps:.4f} | {steps / first[1]:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

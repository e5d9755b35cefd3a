"""Reward throughput: completions scored per second by the worker pool (2 processes) vs in the calling process,
interleaved over rounds, on a GRPO-like batch mix (reference circuits, their random re-parameterisations, and junk).

    python experiments/qasm_rewards/bench.py [--rounds 5] [--batch 64] [--out experiments/qasm_rewards/results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from quantum_ft.evaluation.qasm_task import reparameterised
from quantum_ft.qasm.generate import load
from quantum_ft.qasm.prompts import CircuitTask
from quantum_ft.qasm.rewards import CircuitScorer, ScorerSettings
from quantum_ft.utils.config import resource
from quantum_ft.utils.io import atomic_text


def batch(rows: list[dict], size: int, rng: np.random.Generator) -> tuple[list[str], dict[str, list]]:
    picked = [rows[i] for i in rng.integers(len(rows), size=size)]
    texts = []
    for k, r in enumerate(picked):
        kind = k % 4
        if kind == 0:
            texts.append(r["reference_circuit"])
        elif kind in (1, 2):
            texts.append(reparameterised(r["reference_circuit"], rng))
        else:
            texts.append(r["reference_circuit"][: int(rng.integers(20, 400))])  # a truncated rollout
    columns = {key: [r[key] for r in picked] for key in picked[0] if key != "prompt"}
    return texts, columns


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", default="experiments/qasm_rewards/results.json")
    args = parser.parse_args()
    task = CircuitTask(mode="prompt", max_circuit_chars=1200)
    rows = [r for r in (task(rec) for rec in load(resource("qasm/train.jsonl.gz"))) if r is not None]
    rng = np.random.default_rng(0)
    scorers = {
        "in_process": CircuitScorer(ScorerSettings(workers=0)),
        "pool_2": CircuitScorer(ScorerSettings(workers=2)),
    }
    scorers["pool_2"].score(*batch(rows, 4, rng))  # start the pool outside the timing (once per run in training)
    scorers["in_process"].score(*batch(rows, 4, rng))  # qiskit's import, likewise
    rates: dict[str, list[float]] = {name: [] for name in scorers}
    for _ in range(args.rounds):
        texts, columns = batch(rows, args.batch, rng)
        for name, scorer in scorers.items():  # interleaved: both see the same batch in the same round
            started = time.perf_counter()
            scorer.score(texts, columns)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    result = {
        "batch": args.batch,
        "rounds": args.rounds,
        "completions_per_s": {name: statistics.median(v) for name, v in rates.items()},
        "all": rates,
    }
    result["pool_speedup"] = result["completions_per_s"]["pool_2"] / result["completions_per_s"]["in_process"]
    atomic_text(args.out, json.dumps(result, indent=2))
    print(json.dumps(result["completions_per_s"]), f"speedup {result['pool_speedup']:.2f}x")


if __name__ == "__main__":
    main()

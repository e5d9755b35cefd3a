"""Paired comparison of two qasm evaluations on the same prompts (e.g. SFT vs SFT + GRPO): per metric the mean of
B - A over the prompts both scored, with a bootstrap 95% interval of that mean difference (the prompts resampled
together, so prompt difficulty cancels), overall and per problem class.

    python experiments/smollm2_grpo_qasm/compare.py <A eval dir> <B eval dir> [--out compare.md]

An eval dir holds qasm_samples.jsonl (written by `eval.tasks=[qasm]`, also after training under <run>/eval/).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from quantum_ft.evaluation.qasm_task import bootstrap
from quantum_ft.utils.io import atomic_text

METRICS = ("compile", "correct", "ground_mass", "energy", "energy_within_0.2", "js")


def samples(folder: Path) -> dict[str, dict]:
    found = sorted(folder.rglob("qasm_samples.jsonl"))
    if not found:
        raise SystemExit(f"{folder}: no qasm_samples.jsonl below it; give an evaluation's output directory.")
    return {row["id"]: row for row in map(json.loads, found[0].read_text().splitlines())}


def paired(a: dict[str, dict], b: dict[str, dict], ids: list[str]) -> dict[str, tuple[float, float, float]]:
    out = {}
    for name in METRICS:
        diff = np.array([b[i][name] - a[i][name] for i in ids], dtype=np.float64)
        low, high = bootstrap(diff, draws=10_000)
        out[name] = (float(np.nanmean(diff)), low, high)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    a, b = samples(args.a), samples(args.b)
    ids = sorted(set(a) & set(b))
    if not ids:
        raise SystemExit("The two evaluations share no prompt id: were they run with the same filters?")
    by_class: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        by_class[a[i]["problem_type"]].append(i)
    lines = [
        f"B - A over {len(ids)} prompts scored by both (A: {args.a}, B: {args.b}); mean difference [bootstrap 95%].",
        "",
        "| prompts | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]

    def row(label: str, group: list[str]) -> str:
        d = paired(a, b, group)
        return (
            f"| {label} ({len(group)}) | "
            + " | ".join(f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" for m, lo, hi in d.values())
            + " |"
        )

    lines.append(row("all", ids))
    lines += [row(name, group) for name, group in sorted(by_class.items())]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        atomic_text(args.out, text)


if __name__ == "__main__":
    main()

"""Peak memory of GRPO's policy forward + backward with the LM head on completion positions only (TRL's
logits_to_keep) vs on every position, on the embedded SmolLM2-135M with LoRA r 8 (+experiment=smollm2_grpo).

Each measurement runs in a fresh subprocess (peak resident memory cannot be reset within one), the two variants
interleaved over rounds; the figure is the step's peak RSS above the peak after loading the model and the batch.
On CUDA the same script reports torch.cuda.max_memory_allocated instead.

    python experiments/grpo_logits_memory/bench.py [--rounds 3] [--rows 8] [--prompt 300] [--completion 400]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from quantum_ft.utils.io import atomic_text

HERE = Path(__file__).parent


def measure(keep: bool, rows: int, prompt: int, completion: int) -> dict[str, float]:
    """One policy step of GRPO's loss on random tokens: forward, log-probs, backward."""
    import torch
    from hydra.utils import instantiate

    from quantum_ft.stages.grpo import GRPOModule
    from quantum_ft.utils.config import compose_config

    cfg = compose_config("train", ["+experiment=smollm2_grpo"])
    source, adapter = instantiate(cfg.model), instantiate(cfg.adapter)
    tokenizer = source.load_tokenizer()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = adapter.apply(source.load_model()).to(device)
    module = GRPOModule(model, tokenizer, torch.optim.SGD, rewards={"x": lambda **_: []}, group_size=1)
    module.keeps_logits = keep
    g = torch.Generator().manual_seed(0)
    prompts = {
        "input_ids": torch.randint(0, len(tokenizer), (rows, prompt), generator=g).to(device),
        "attention_mask": torch.ones(rows, prompt, dtype=torch.long, device=device),
    }
    tokens = torch.randint(0, len(tokenizer), (rows, completion), generator=g).to(device)
    mask = torch.ones_like(tokens)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    logp = module.token_logprobs(model, prompts, tokens, mask)
    (-(logp * mask).sum() / mask.sum()).backward()
    out = {"peak_rss_above_load_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before}
    if device == "cuda":
        out["cuda_peak_above_load_mib"] = torch.cuda.max_memory_allocated() / 2**20 - base
    out["logp_sum"] = float(logp.sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=300)
    parser.add_argument("--completion", type=int, default=400)
    parser.add_argument("--one", choices=["kept", "full"], help=argparse.SUPPRESS)  # a subprocess's own run
    parser.add_argument("--out", default=str(HERE / "results.json"))
    args = parser.parse_args()
    shape = (args.rows, args.prompt, args.completion)
    if args.one:
        print(json.dumps(measure(args.one == "kept", *shape)))
        return
    runs: dict[str, list[dict[str, float]]] = {"kept": [], "full": []}
    for r in range(args.rounds):
        for variant in runs:  # interleaved
            flags = ["--rows", str(args.rows), "--prompt", str(args.prompt), "--completion", str(args.completion)]
            done = subprocess.run(
                [sys.executable, __file__, "--one", variant, *flags], capture_output=True, text=True, check=True
            )
            runs[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {variant}: {runs[variant][-1]}", flush=True)
    medians = {v: {k: statistics.median(m[k] for m in ms) for k in ms[0] if k != "logp_sum"} for v, ms in runs.items()}
    result = {
        "rows": args.rows,
        "prompt_tokens": args.prompt,
        "completion_tokens": args.completion,
        "rounds": args.rounds,
        "median": medians,
        "runs": runs,
        "same_logprobs": all(
            abs(a["logp_sum"] - b["logp_sum"]) <= 1e-3 * abs(b["logp_sum"]) for a, b in zip(runs["kept"], runs["full"])
        ),
    }
    atomic_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps(medians, indent=2))


if __name__ == "__main__":
    main()

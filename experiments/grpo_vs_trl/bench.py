"""GRPO steps/s: our stage against TRL 1.16's GRPOTrainer, same model, prompts, group size, completion length,
sampling, loss and reward functions, one run of each side per setting, interleaved.

Settings: the embedded SmolLM2-135M-Instruct with LoRA r 8 / alpha 16 / dropout 0.05 on q_proj, v_proj; the
circuit-task prompts (data=qasm_prompts); 2 prompts x 4 completions a step, 64 new tokens, temperature 0.8, top_p
0.95, top_k 50 (transformers' default, which both sides would otherwise leave to it), beta 0.04 (reference = the
adapter switched off on both), loss dapo, AdamW lr 5e-5 constant, gradient clipping 1.0, float32 on both (TRL's
own default is bf16). Rewards: the circuit rewards of +experiment=smollm2_grpo_qasm (seven components with their
weights, scored by the same CircuitScorer and its worker pool) or a cheap one (TargetLength, characters only).
num_iterations 1 and 2. Each side trains `--steps` steps; the first `--warmup` are not timed. Each run is its own
subprocess, so its peak RSS is its own; every finished run is journaled (results.jsonl) and skipped on a rerun.

Step time split on both sides: generate (the sampling call), reward (ours: the wait after the policy forward;
TRL: its reward call), update (the rest: log-prob passes, backward, optimiser).

Left out: vLLM (CUDA only, neither side uses it here), Unsloth (CUDA only).

    pip install -e ".[bench-trl]"
    python experiments/grpo_vs_trl/bench.py [--steps 8] [--warmup 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from quantum_ft.utils.io import atomic_text

HERE = Path(__file__).parent
PROMPTS_PER_STEP, GROUP, NEW_TOKENS = 2, 4, 64
SAMPLING = {"temperature": 0.8, "top_p": 0.95, "top_k": 50}
BETA, LR, LOSS = 0.04, 5e-5, "dapo"
CHEAP = {"length": 1.0}


def our_overrides(reward: str, iterations: int, steps: int, out: str) -> list[str]:
    """+experiment=smollm2_grpo_qasm narrowed to the benchmark's settings."""
    overrides = [
        "+experiment=smollm2_grpo_qasm",
        f"data.batch_size={PROMPTS_PER_STEP}",
        f"data.max_samples={prompts_needed(iterations, steps)}",
        f"stage.group_size={GROUP}",
        f"stage.max_new_tokens={NEW_TOKENS}",
        *(f"stage.{k}={v}" for k, v in SAMPLING.items()),
        f"stage.beta={BETA}",
        f"stage.loss_type={LOSS}",
        f"stage.num_iterations={iterations}",
        "stage.gradient_checkpointing=false",
        f"optimizer.lr={LR}",
        f"trainer.max_steps={steps}",
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "callbacks=none",
        "logger=csv",
        "eval.tasks=[]",
        f"paths.output_dir={out}",
    ]
    if reward == "cheap":
        overrides += ["~stage.rewards", "~stage.reward_weights"]
        overrides += ["+stage.rewards.length._target_=quantum_ft.stages.rewards.TargetLength"]
    return overrides


def prompts_needed(iterations: int, steps: int) -> int:
    """Exactly the prompts the run consumes, so both sides train on the same set."""
    return PROMPTS_PER_STEP * steps // iterations


def run_ours(reward: str, iterations: int, steps: int) -> dict[str, Any]:
    import lightning as L

    from quantum_ft.train import build
    from quantum_ft.utils.config import compose_config

    class StepClock(L.Callback):
        def __init__(self) -> None:
            self.steps: list[dict[str, float]] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self.started = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            total = time.perf_counter() - self.started
            t = module.timings
            tokens = float(trainer.callback_metrics["train/completion_tokens"])
            self.steps.append(split(total, t["generate_s"], t["reward_wait_s"], tokens))

    with tempfile.TemporaryDirectory() as out:
        run = build(compose_config("train", our_overrides(reward, iterations, steps, out)))
        clock = StepClock()
        run.trainer.callbacks.append(clock)
        run.trainer.fit(run.module, datamodule=run.datamodule)
        prompts = [run.datamodule.train_set[i].text for i in range(len(run.datamodule.train_set))]
    return {"steps": clock.steps, "prompts": sorted(prompts)}


def run_trl(reward: str, iterations: int, steps: int) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from hydra.utils import instantiate
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from quantum_ft.utils.config import compose_config

    cfg = compose_config("train", our_overrides(reward, iterations, steps, tempfile.mkdtemp()))
    source = instantiate(cfg.model)
    tokenizer, model = source.load_tokenizer(), source.load_model()
    data = instantiate(cfg.data, tokenizer=tokenizer)
    data.setup("fit")
    records = prompts = list(data.train_set)  # records: what the reward wrapper reads (its `prompts` is TRL's)
    rendered = [tokenizer.decode(p.input_ids) for p in prompts]  # the chat-templated prompt our side feeds
    retokenized = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in rendered]
    same_prompt_tokens = all(a == p.input_ids for a, p in zip(retokenized, prompts))
    dataset = Dataset.from_dict({"prompt": rendered, "row": list(range(len(prompts)))})
    rewards = {name: instantiate(fn) for name, fn in cfg.stage.rewards.items() if fn is not None}
    weights = {name: w for name, w in (cfg.stage.get("reward_weights") or {}).items() if w is not None}
    timings = {"generate_s": 0.0, "reward_s": 0.0}

    def as_trl(name: str, fn: Any) -> Any:
        """Our reward with the prompt's columns looked up by row (TRL hands over dataset columns; ours are nested)."""

        def reward_fn(prompts, completions, completion_ids, row, **_):
            columns = {k: [records[r].columns[k] for r in row] for k in records[0].columns}
            texts = [records[r].text for r in row]
            return fn(prompts=texts, completions=completions, completion_ids=completion_ids, **columns)

        reward_fn.__name__ = name
        return reward_fn

    def timed(method: Any, key: str) -> Any:
        """`method`, its seconds added to timings[key]."""

        def wrapper(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                timings[key] += time.perf_counter() - started

        return wrapper

    class TimedGRPOTrainer(GRPOTrainer):
        _generate = timed(GRPOTrainer._generate, "generate_s")
        _calculate_rewards = timed(GRPOTrainer._calculate_rewards, "reward_s")

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[dict[str, float]] = []
            self.lengths: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs) -> None:
            timings.update(generate_s=0.0, reward_s=0.0)
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs) -> None:
            total = time.perf_counter() - self.started
            self.steps.append(split(total, timings["generate_s"], timings["reward_s"], 0.0))

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if logs and "completions/mean_length" in logs:  # logged after on_step_end
                self.lengths.append(float(logs["completions/mean_length"]))

    names = list(rewards)
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=PROMPTS_PER_STEP * GROUP,  # TRL counts completions
        num_generations=GROUP,
        max_completion_length=NEW_TOKENS,
        **SAMPLING,
        beta=BETA,
        loss_type=LOSS,
        num_iterations=iterations,
        learning_rate=LR,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        max_steps=steps,
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        reward_weights=[float(weights.get(n, 1.0)) for n in names],
        seed=cfg.seed,
    )
    clock = StepClock()
    trainer = TimedGRPOTrainer(
        model=model,
        reward_funcs=[as_trl(n, rewards[n]) for n in names],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=cfg.adapter.r,
            lora_alpha=cfg.adapter.alpha,
            lora_dropout=cfg.adapter.dropout,
            target_modules=list(cfg.adapter.target_modules),
            task_type="CAUSAL_LM",
        ),
        callbacks=[clock],
    )
    trainer.train()
    for step, length in zip(clock.steps, clock.lengths):
        step["completion_tokens"] = length
    return {"steps": clock.steps, "prompts": sorted(p.text for p in prompts), "same_prompt_tokens": same_prompt_tokens}


def split(total: float, generate: float, reward: float, tokens: float) -> dict[str, float]:
    return {
        "step_s": total,
        "generate_s": generate,
        "reward_s": reward,
        "update_s": total - generate - reward,
        "completion_tokens": tokens,
    }


def one(side: str, reward: str, iterations: int, steps: int) -> dict[str, Any]:
    result = (run_ours if side == "ours" else run_trl)(reward, iterations, steps)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def summary(result: dict[str, Any], warmup: int) -> dict[str, float]:
    timed = result["steps"][warmup:]
    mean = {k: statistics.fmean(s[k] for s in timed) for k in timed[0]}
    return {
        "steps_per_s": 1 / mean["step_s"],
        **{k: mean[k] for k in ("step_s", "generate_s", "reward_s", "update_s")},
        "peak_rss_mib": result["peak_rss_mib"],
    }


def table(journal: list[dict[str, Any]], warmup: int) -> str:
    rows = {(r["reward"], r["iterations"], r["side"]): summary(r, warmup) for r in journal}
    lines = [
        "| reward | num_iterations | side | steps/s | step s | generate s | reward s | update s | peak RSS MiB |"
        " ours / TRL steps/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for reward in ("circuit", "cheap"):
        for iterations in (1, 2):
            for side in ("ours", "trl"):
                s = rows.get((reward, iterations, side))
                if s is None:
                    continue
                other = rows.get((reward, iterations, "trl"))
                ratio = f"**{s['steps_per_s'] / other['steps_per_s']:.2f}x**" if side == "ours" and other else ""
                lines.append(
                    f"| {reward} | {iterations} | {side} | {s['steps_per_s']:.4f} | {s['step_s']:.2f} | "
                    f"{s['generate_s']:.2f} | {s['reward_s']:.2f} | {s['update_s']:.2f} | {s['peak_rss_mib']:,.0f} |"
                    f" {ratio} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--journal", default=str(HERE / "results.jsonl"))
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # side reward iterations: a subprocess's run
    args = parser.parse_args()
    if args.one:
        side, reward, iterations = args.one
        print("RESULT " + json.dumps(one(side, reward, int(iterations), args.steps)), flush=True)
        return
    journal_path = Path(args.journal)
    journal = [json.loads(line) for line in journal_path.read_text().splitlines()] if journal_path.exists() else []
    done = {(r["side"], r["reward"], r["iterations"]) for r in journal}
    order = 0
    for reward in ("circuit", "cheap"):
        for iterations in (1, 2):
            sides = ("ours", "trl") if order % 2 == 0 else ("trl", "ours")  # interleaved, ABBA
            order += 1
            for side in sides:
                if (side, reward, iterations) in done:
                    continue
                print(f"{side} {reward} num_iterations={iterations} ...", flush=True)
                env = os.environ | {"TOKENIZERS_PARALLELISM": "false"}
                cmd = [sys.executable, __file__, "--steps", str(args.steps), "--one", side, reward, str(iterations)]
                done_run = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if done_run.returncode != 0:
                    sys.exit(f"{side} {reward} {iterations} failed:\n{done_run.stderr[-4000:]}")
                line = next(x for x in reversed(done_run.stdout.splitlines()) if x.startswith("RESULT "))
                record = {"side": side, "reward": reward, "iterations": iterations, **json.loads(line[7:])}
                journal.append(record)
                with journal_path.open("a") as f:  # one line per finished run: a rerun skips it
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(summary(record, args.warmup)), flush=True)
    text = table(journal, args.warmup)
    atomic_text(HERE / "results.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()

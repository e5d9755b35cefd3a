"""SFT tokens/s and peak RSS: our SFT stage against TRL 1.16's SFTTrainer, same model, same batches, same loss mask.

Settings (both sides): the embedded SmolLM2-135M-Instruct (fp32 weights; TRL gets the model our source loads) with
LoRA r 8 / alpha 16 / dropout 0.05 on q_proj, v_proj; the vendored Alpaca demo (data=alpaca_demo) cut at 256 tokens;
micro-batch 4, no gradient accumulation; AdamW lr 2e-4, weight decay 0, constant schedule, no warmup; gradient
clipping 1.0; loss on the assistant tokens only. Validation, evaluation, checkpoints and sample generation off on
both; ours keeps its other default callbacks (loss guard, throughput, resource monitor, lr monitor) and a CSV logger,
TRL reports to nothing.

Same batches: TRL is handed the token ids our datamodule built, in the order our sampler serves them (sequential
sampling on TRL's side), with `completion_mask` = our labels != -100 and `completion_only_loss=True`, so its labels
are ours token for token (checked) and every unpacked step's input_ids / labels / attention mask hash the same on
both sides (recorded per step). Packed arms differ by design: each side packs with its own packer.

Arms (each its own subprocess, so its peak RSS is its own; pairs interleaved, order alternated, per round):
  ours-fp32 / trl-fp32         trainer.precision=32-true / bf16=False
  ours-bf16 / trl-bf16         trainer.precision=bf16-mixed / bf16=True
  ours-default / trl-default   trainer.precision=auto / SFTConfig defaults (bf16, gradient checkpointing, fused AdamW)
  ours-packed / trl-packed     data.packing=true, precision auto / packing=True (bfd, padding-free), bf16 default
  ours-no-retry / trl-default  ours-default with stage.oom_retry=false (the cost of atomic OOM retry)
  ours-gc / trl-default        ours-default with gradient checkpointing, as TRL's default has it (memory-matched)
The fp32, bf16 and packed TRL arms turn off TRL's default gradient checkpointing and use optim=adamw_torch
(torch.optim.AdamW, as ours); trl-default keeps both defaults.

Timed: `--steps` optimiser steps after `--warmup` untimed ones; a step is on_train_batch_start -> on_train_batch_end
(ours, all callbacks' hooks inside) and on_step_begin -> on_step_end (TRL): forward, backward, clipping, optimiser.
tokens/s = non-pad tokens of the timed steps / their seconds. FLOP/s: train_step_flops() per step over its seconds.

    pip install -e ".[bench-trl]"
    python experiments/sft_vs_trl/bench.py [--steps 10] [--warmup 2] [--rounds 3] [--out DIR] [--peak-tflops X]
"""

from __future__ import annotations

import argparse
import hashlib
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

from quantum_ft.utils.io import append_journal, atomic_text, read_journal

HERE = Path(__file__).parent
BATCH, CUTOFF, LR, CLIP = 4, 256, 2e-4, 1.0
LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
IGNORE = -100

# arm -> (side, settings). Ours: trainer.precision and data.packing; TRL: SFTConfig fields over the common ones.
MATCHED_TRL = {"gradient_checkpointing": False, "optim": "adamw_torch"}
ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "ours-fp32": ("ours", {"precision": "32-true", "packing": False}),
    "trl-fp32": ("trl", {**MATCHED_TRL, "bf16": False}),
    "ours-bf16": ("ours", {"precision": "bf16-mixed", "packing": False}),
    "trl-bf16": ("trl", {**MATCHED_TRL, "bf16": True}),
    "ours-default": ("ours", {"precision": "auto", "packing": False}),
    "trl-default": ("trl", {}),
    "ours-packed": ("ours", {"precision": "auto", "packing": True}),
    "trl-packed": ("trl", {**MATCHED_TRL, "packing": True}),
    # the cost of atomic OOM retry (on by default: every step's gradient via autograd.grad + a surrogate backward)
    "ours-no-retry": ("ours", {"precision": "auto", "packing": False, "oom_retry": False}),
    # gradient checkpointing, as TRL's default has it: the memory-matched comparison with trl-default
    "ours-gc": ("ours", {"precision": "auto", "packing": False, "gradient_checkpointing": True}),
}
PAIRS = [("ours-fp32", "trl-fp32"), ("ours-bf16", "trl-bf16"), ("ours-default", "trl-default")]
PAIRS += [("ours-packed", "trl-packed"), ("ours-no-retry", "trl-default"), ("ours-gc", "trl-default")]


# ------------------------------------------------------------------------------------------------ configuration
def our_overrides(
    packing: bool, precision: str, total_steps: int, oom_retry: bool = True, checkpointing: bool = False
) -> list[str]:
    """Our train config narrowed to the benchmark's settings (the TRL side composes it too, for model and data)."""
    return [
        "model=smollm2_135m",
        "adapter=lora",
        f"adapter.r={LORA['r']}",
        f"adapter.alpha={LORA['alpha']}",
        f"adapter.dropout={LORA['dropout']}",
        f"adapter.target_modules=[{','.join(LORA['target_modules'])}]",
        "data=alpaca_demo",
        f"data.cutoff_len={CUTOFF}",
        f"data.batch_size={BATCH}",
        "data.train_on_inputs=false",
        "data.group_by_length=false",
        f"data.packing={str(packing).lower()}",
        "optimizer=adamw",
        f"optimizer.lr={LR}",
        "optimizer.weight_decay=0.0",
        "stage.scheduler=constant",
        "stage.warmup_steps=0",
        "stage.warmup_ratio=0.0",
        f"stage.gradient_checkpointing={str(checkpointing).lower()}",
        f"stage.oom_retry={str(oom_retry).lower()}",
        f"trainer.precision={precision}",
        f"trainer.max_steps={total_steps}",
        "trainer.accumulate_grad_batches=1",
        f"trainer.gradient_clip_val={CLIP}",
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "validate_before=false",
        "validate_after=false",
        "eval.tasks=[]",
        "ckpt_path=null",
        "~callbacks.sample_generations",
        "~callbacks.completions_table",
        "~callbacks.model_checkpoint",  # TRL saves nothing either
        "logger=csv",  # LearningRateMonitor needs a logger; TensorBoard off
    ]


def served_batches(datamodule: Any, count: int) -> list[list[int]]:
    """The sample indices of the first `count` training batches our sampler serves (epoch 0, rank 0)."""
    sampler = datamodule.train_sampler(len(datamodule.train_set), datamodule.batch_size, datamodule.drop_last)
    batches = list(sampler)
    if len(batches) < count:
        raise SystemExit(f"{count} steps need {count} batches; the training set gives {len(batches)}.")
    return batches[:count]


# ------------------------------------------------------------------------------------------------ measurement
def model_shape(config: Any) -> dict[str, int]:
    """The numbers train_step_flops reads, from the loaded model's config."""
    heads = config.num_attention_heads
    return {
        "hidden": config.hidden_size,
        "layers": config.num_hidden_layers,
        "heads": heads,
        "kv_heads": getattr(config, "num_key_value_heads", None) or heads,
        "head_dim": getattr(config, "head_dim", None) or config.hidden_size // heads,
        "intermediate": config.intermediate_size,
        "vocab": config.vocab_size,
    }


def train_step_flops(
    shape: dict[str, int],
    rows: int,
    width: int,
    head_rows: int,
    head_matmuls: int,
    recompute: bool,
    first_layer_input_grad: bool,
    lora_r: int = LORA["r"],
    lora_targets: tuple[str, ...] = tuple(LORA["target_modules"]),
) -> float:
    """Matrix-product FLOPs (2 per multiply-add) of one forward + backward of a LoRA step on a Llama-type decoder.

    Counted over what the kernels are given: `rows` x `width` positions (padding included: the matmuls run on it;
    a padding-free batch is one row). Per decoder layer, with hidden h, query width a = heads x head_dim, kv width
    k = kv_heads x head_dim, MLP width I, and P = h(a + 2k) + a h + 3 h I the projection weights:
      forward   2 P per position (the non-embedding parameters); attention 2 x 2 x width^2 x a per row, halved for
                the causal mask (QK^T and PV; SDPA with an explicit padding / packing mask may compute the full
                square, so this term is a lower bound there); LoRA 2 r (d_in + d_out) per position and target.
      backward  the base weights are frozen, so only input gradients: 2 P per position (1x forward, not 2x),
                less layer 0's q/k/v products when the embeddings' output needs no gradient
                (`first_layer_input_grad` false: nothing below layer 0 is trained); attention 2x its forward (dQ,
                dK from dS; dV, dS from dO); LoRA 2x its forward (weight and input gradients; layer 0 without
                its input gradient under the same condition).
      LM head   2 h V per scored position, `head_matmuls` times: ours fused scores only labelled positions, the
                logits and the hidden gradient in one pass (2); TRL's chunked head on CPU scores every position
                of hidden[:, :-1] and recomputes the logits in backward before the hidden gradient (3); a plain
                HF forward scores every position, backward one more product (2). The head is frozen (tied
                embeddings): no weight gradient.
      recompute gradient checkpointing runs every decoder layer's forward again in backward.
    Elementwise work (norms, softmax, SiLU, rotary, the optimiser) is not counted.
    """
    h, layers, vocab = shape["hidden"], shape["layers"], shape["vocab"]
    a = shape["heads"] * shape["head_dim"]
    k = shape["kv_heads"] * shape["head_dim"]
    inter = shape["intermediate"]
    dims = {
        "q_proj": (h, a),
        "k_proj": (h, k),
        "v_proj": (h, k),
        "o_proj": (a, h),
        "gate_proj": (h, inter),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
    }
    positions = rows * width
    weights = sum(i * o for i, o in dims.values())
    qkv = sum(dims[n][0] * dims[n][1] for n in ("q_proj", "k_proj", "v_proj"))
    matmul_fwd = 2 * layers * weights * positions
    attention_fwd = rows * layers * 2 * 2 * width**2 * a / 2
    lora_fwd = layers * sum(2 * lora_r * (dims[t][0] + dims[t][1]) for t in lora_targets) * positions
    decoder_fwd = matmul_fwd + attention_fwd + lora_fwd
    matmul_bwd = matmul_fwd - (0 if first_layer_input_grad else 2 * qkv * positions)
    lora_layer0_dx = sum(2 * lora_r * dims[t][0] for t in lora_targets) * positions
    lora_bwd = 2 * lora_fwd - (0 if first_layer_input_grad else lora_layer0_dx)
    head = 2 * h * vocab * head_rows * head_matmuls
    return decoder_fwd + matmul_bwd + 2 * attention_fwd + lora_bwd + head + (decoder_fwd if recompute else 0)


def batch_stats(batch: dict[str, Any], tokens: int) -> dict[str, Any]:
    """Shape, labelled targets (labels shifted by one) and a hash of the tensors a step trained on."""
    ids, labels = batch["input_ids"], batch["labels"]
    digest = hashlib.sha1()
    for key in ("input_ids", "labels", "attention_mask"):
        if key in batch:
            digest.update(key.encode() + batch[key].cpu().long().numpy().tobytes())
    return {
        "rows": int(ids.shape[0]),
        "width": int(ids.shape[1]),
        "tokens": int(tokens),
        "trained": int((labels[:, 1:] != IGNORE).sum()),
        "sha": digest.hexdigest()[:16],
    }


class Probe:
    """What the first forward actually ran: the dtype of layer 0's o_proj output (autocast or not) and whether the
    embeddings' output carries a gradient (then layer 0's input gradients are computed)."""

    def __init__(self, model: Any) -> None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        decoder = base.model
        self.seen: dict[str, Any] = {}
        self.handles = [
            decoder.layers[0].self_attn.o_proj.register_forward_hook(self._dtype),
            decoder.embed_tokens.register_forward_hook(self._grad),
        ]

    def _dtype(self, module: Any, args: Any, output: Any) -> None:
        if module.training:
            self.seen.setdefault("compute_dtype", str(output.dtype).replace("torch.", ""))

    def _grad(self, module: Any, args: Any, output: Any) -> None:
        if module.training:
            self.seen.setdefault("embedding_output_requires_grad", bool(output.requires_grad))


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ------------------------------------------------------------------------------------------------ the two sides
def run_ours(arm: str, total_steps: int) -> dict[str, Any]:
    import lightning as L
    import torch

    from quantum_ft.stages.lm_loss import fused_head
    from quantum_ft.train import build, fit
    from quantum_ft.utils.config import compose_config

    settings = ARMS[arm][1]
    steps: list[dict[str, Any]] = []
    clock: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as out:
        overrides = our_overrides(
            settings["packing"],
            settings["precision"],
            total_steps,
            settings.get("oom_retry", True),
            settings.get("gradient_checkpointing", False),
        )
        run = build(compose_config("train", overrides, output_dir=out))
        data = run.datamodule
        order = served_batches(data, total_steps)
        # non-pad tokens per step: packed rows carry no attention mask, so from the samples the sampler serves
        real_tokens = [sum(len(data.train_set[i].input_ids) for i in b) for b in order]
        expected = [batch_stats(data.collate([data.train_set[i] for i in b]), 0)["sha"] for b in order]
        model = run.module.model
        fused = bool(run.cfg.stage.get("fused_loss", True)) and fused_head(model) is not None
        shape = model_shape(model.get_base_model().config)
        recompute = bool(run.cfg.stage.gradient_checkpointing)
        probe = Probe(model)
        setup: dict[str, float] = {}

        class Start(L.Callback):  # first in the list: the clock starts before every other callback's hook
            def on_train_start(self, trainer, module) -> None:
                setup["rss_setup_mib"] = rss_peak_mib()

            def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
                clock["start"] = time.perf_counter()

        class End(L.Callback):  # last: it stops after every other callback's hook
            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
                elapsed = time.perf_counter() - clock["start"]
                stats = batch_stats(batch, real_tokens[batch_idx])
                stats["as_expected"] = stats["sha"] == expected[batch_idx]
                head_rows = stats["trained"] if fused else stats["rows"] * stats["width"]
                layer0 = probe.seen.get("embedding_output_requires_grad", False)
                flops = train_step_flops(shape, stats["rows"], stats["width"], head_rows, 2, recompute, layer0)
                steps.append({"step_s": elapsed, "flops": flops, **stats})

        run.trainer.callbacks.insert(0, Start())
        run.trainer.callbacks.append(End())
        fit(run)
        if len(steps) != total_steps:
            raise RuntimeError(f"ours ran {len(steps)} steps, not {total_steps}")
        return {
            "steps": steps,
            "precision": str(run.trainer.precision),
            "precision_reason": run.choices.get("precision_reason"),
            **probe.seen,
            "fused_head": fused,
            "gradient_checkpointing": bool(run.cfg.stage.gradient_checkpointing),
            "optimizer": type(run.trainer.optimizers[0]).__name__,
            "threads": torch.get_num_threads(),
            "model_shape": shape,
            **setup,
        }


def run_trl(arm: str, total_steps: int) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from hydra.utils import instantiate
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer
    from trl.kernels.chunked_logprob import _use_triton

    from quantum_ft.utils.config import compose_config

    settings = dict(ARMS[arm][1])
    packing = bool(settings.get("packing", False))
    cfg = compose_config("train", our_overrides(False, "32-true", total_steps), output_dir=tempfile.mkdtemp())
    source = instantiate(cfg.model)
    tokenizer, model = source.load_tokenizer(), source.load_model()  # the fp32 weights ours trains
    data = instantiate(cfg.data, tokenizer=tokenizer)  # unpacked: TRL packs with its own packer
    data.setup("fit")
    if packing:  # the whole training split, in our datamodule's order; TRL packs (bfd) and serves its bins
        samples = list(data.train_set)
    else:  # exactly the samples of our first `total_steps` batches, in the order our sampler serves them
        samples = [data.train_set[i] for b in served_batches(data, total_steps) for i in b]
    dataset = Dataset.from_dict(
        {
            "input_ids": [s.input_ids for s in samples],
            "completion_mask": [[int(label != IGNORE) for label in s.labels] for s in samples],
        }
    )
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1,
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=CLIP,
        max_steps=total_steps,
        max_length=CUTOFF,
        completion_only_loss=True,
        train_sampling_strategy="sequential",  # our order, as handed over
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        seed=cfg.seed,
        **settings,
    )
    steps: list[dict[str, Any]] = []
    setup: dict[str, float] = {}

    class ClockedSFTTrainer(SFTTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            self.last_inputs = inputs  # read after the clock stops
            return super().training_step(model, inputs, num_items_in_batch)

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs) -> None:
            setup["rss_setup_mib"] = rss_peak_mib()

        def on_step_begin(self, args, state, control, **kwargs) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs) -> None:
            elapsed = time.perf_counter() - self.started
            inputs = trainer.last_inputs
            mask = inputs.get("attention_mask")
            tokens = int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())  # padding-free
            stats = batch_stats(inputs, tokens)
            scored = stats["trained"] if compact else stats["rows"] * (stats["width"] - 1)
            gc = bool(args.gradient_checkpointing)
            layer0 = probe.seen.get("embedding_output_requires_grad", False)  # enable_input_require_grads under gc
            flops = train_step_flops(shape, stats["rows"], stats["width"], scored, 3, gc, layer0)
            steps.append({"step_s": elapsed, "flops": flops, **stats})

    trainer = ClockedSFTTrainer(
        model=model,
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
        callbacks=[Clock()],
    )
    device = next(trainer.model.parameters()).device
    compact = _use_triton(device)  # TRL's head scores only labelled positions on Triton devices, all elsewhere
    shape = model_shape(trainer.model.get_base_model().config)
    labels_identical = None
    if not packing:
        prepared = trainer.train_dataset
        labels_identical = len(prepared) == len(samples) and all(
            list(p["input_ids"]) == s.input_ids and list(p["labels"]) == s.labels for p, s in zip(prepared, samples)
        )
    probe = Probe(trainer.model)
    trainer.train()
    if len(steps) != total_steps:
        raise RuntimeError(f"TRL ran {len(steps)} steps, not {total_steps}")
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate's wrapper
    return {
        "steps": steps,
        "precision": "bf16-mixed" if args.bf16 else "32-true",
        "mixed_precision": str(trainer.accelerator.mixed_precision),
        **probe.seen,
        "fused_head": True,
        "head_compact": compact,
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "optimizer": f"{args.optim} ({type(optimizer).__name__})",
        "padding_free": bool(trainer.padding_free),
        "labels_identical": labels_identical,
        "threads": torch.get_num_threads(),
        "model_shape": shape,
        **setup,
    }


def prepare() -> None:
    """Fill the caches every arm reads (the converted model, tokenised packed and unpacked data), so that no arm
    pays a one-off conversion in its time or its peak RSS."""
    from hydra.utils import instantiate

    from quantum_ft.utils.config import compose_config

    for packing in (False, True):
        cfg = compose_config("train", our_overrides(packing, "32-true", 1), output_dir=tempfile.mkdtemp())
        source = instantiate(cfg.model)
        tokenizer = source.load_tokenizer()
        source.load_model()
        instantiate(cfg.data, tokenizer=tokenizer).setup("fit")


def one(arm: str, total_steps: int) -> dict[str, Any]:
    side = ARMS[arm][0]
    result = (run_ours if side == "ours" else run_trl)(arm, total_steps)
    result["peak_rss_mib"] = rss_peak_mib()
    return result


# ------------------------------------------------------------------------------------------------ report
def summary(record: dict[str, Any]) -> dict[str, Any]:
    timed = record["steps"][record["warmup"] :]
    seconds = sum(s["step_s"] for s in timed)
    return {
        "tokens_per_s": sum(s["tokens"] for s in timed) / seconds,
        "step_s": seconds / len(timed),
        "tokens_per_step": statistics.fmean(s["tokens"] for s in timed),
        "trained_per_step": statistics.fmean(s["trained"] for s in timed),
        "gflop_per_step": statistics.fmean(s["flops"] for s in timed) / 1e9,
        "gflop_per_s": sum(s["flops"] for s in timed) / seconds / 1e9,
        "peak_rss_mib": record["peak_rss_mib"],
        "rss_setup_mib": record.get("rss_setup_mib", float("nan")),
    }


def spread(values: list[float], fmt: str) -> str:
    middle = format(statistics.median(values), fmt)
    return middle if len(values) == 1 else f"{middle} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def same_batches(ours: list[dict[str, Any]], trl: list[dict[str, Any]]) -> str:
    """Whether every step of every run of the pair trained on the same tensors (hashes) as ours' first run."""
    if not ours or not trl:
        return ""
    reference = [s["sha"] for s in ours[0]["steps"]]
    return "yes" if all([s["sha"] for s in r["steps"]] == reference for r in ours + trl) else "no"


def table(journal: list[dict[str, Any]], peak_tflops: float | None) -> str:
    runs: dict[str, list[dict[str, Any]]] = {arm: [r for r in journal if r["arm"] == arm] for arm in ARMS}
    peak = f" | % of {peak_tflops:g} TFLOP/s" if peak_tflops else ""
    lines = [
        "| arm | precision (compute dtype) | grad ckpt | runs | tokens/s | s/step | tokens/step | trained tokens/step"
        f" | GFLOP/step | GFLOP/s{peak} | peak RSS MiB (setup) | ours / TRL tokens/s | same batches |",
        "|---" * (13 + bool(peak_tflops)) + "|",
    ]
    for ours_arm, trl_arm in PAIRS:
        medians = {
            arm: statistics.median(summary(r)["tokens_per_s"] for r in runs[arm])
            for arm in (ours_arm, trl_arm)
            if runs[arm]
        }
        for arm in (ours_arm, trl_arm):
            done = runs[arm]
            if not done:
                continue
            s = [summary(r) for r in done]
            first = done[0]
            ratio = ""
            if arm == ours_arm and trl_arm in medians:
                ratio = f"**{medians[ours_arm] / medians[trl_arm]:.2f}x**"
            mfu = ""
            if peak_tflops:
                mfu = f" | {100 * statistics.median(x['gflop_per_s'] for x in s) / (peak_tflops * 1e3):.1f}"
            pair_same = same_batches(runs[ours_arm], runs[trl_arm]) if arm == ours_arm else ""
            lines.append(
                f"| {arm} | {first['precision']} ({first.get('compute_dtype', '?')}) |"
                f" {'yes' if first['gradient_checkpointing'] else 'no'} | {len(done)} |"
                f" {spread([x['tokens_per_s'] for x in s], '.1f')} |"
                f" {spread([x['step_s'] for x in s], '.2f')} |"
                f" {statistics.fmean(x['tokens_per_step'] for x in s):.1f} |"
                f" {statistics.fmean(x['trained_per_step'] for x in s):.1f} |"
                f" {statistics.fmean(x['gflop_per_step'] for x in s):.1f} |"
                f" {spread([x['gflop_per_s'] for x in s], '.1f')}{mfu} |"
                f" {statistics.median(x['peak_rss_mib'] for x in s):,.0f}"
                f" ({statistics.median(x['rss_setup_mib'] for x in s):,.0f}) |"
                f" {ratio} | {pair_same} |"
            )
    return "\n".join(lines)


def per_run(journal: list[dict[str, Any]]) -> str:
    lines = ["| round | arm | tokens/s | s/step | GFLOP/s | peak RSS MiB |", "|---|---|---|---|---|---|"]
    for r in sorted(journal, key=lambda r: (r["round"], r["order"])):
        s = summary(r)
        lines.append(
            f"| {r['round']} | {r['arm']} | {s['tokens_per_s']:.1f} | {s['step_s']:.2f} | {s['gflop_per_s']:.1f} |"
            f" {s['peak_rss_mib']:,.0f} |"
        )
    return "\n".join(lines)


def schedule(rounds: int) -> list[tuple[int, str]]:
    """(round, arm) in run order: the pairs one after another, which side goes first alternating from pair to pair
    and from round to round (ABBA); an arm in two pairs (trl-default) runs once a round."""
    order: list[tuple[int, str]] = []
    for r in range(1, rounds + 1):
        for p, pair in enumerate(PAIRS):
            order += [(r, arm) for arm in (pair if (r + p) % 2 else pair[::-1]) if (r, arm) not in order]
    return order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed optimiser steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimiser steps before them")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every arm, interleaved")
    parser.add_argument("--out", default=str(HERE), help="folder of results.jsonl and results.md")
    parser.add_argument("--peak-tflops", type=float, default=None, help="machine peak, for a %% of peak column")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="a subset of the arms")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # an arm: the subprocess's run
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    if args.prepare:
        prepare()
        return
    if args.one:
        print("RESULT " + json.dumps(one(args.one, args.warmup + args.steps)), flush=True)
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    journal_path = out / "results.jsonl"
    journal = [r for r in read_journal(journal_path) if (r["steps_timed"], r["warmup"]) == (args.steps, args.warmup)]
    done = {(r["round"], r["arm"]) for r in journal}
    todo = [(i, r, arm) for i, (r, arm) in enumerate(schedule(args.rounds)) if arm in args.arms]
    todo = [(i, r, arm) for i, r, arm in todo if (r, arm) not in done]
    env = os.environ | {"TOKENIZERS_PARALLELISM": "false"}
    if todo:
        prepared = subprocess.run([sys.executable, __file__, "--prepare"], capture_output=True, text=True, env=env)
        if prepared.returncode != 0:
            sys.exit(f"preparing the caches failed:\n{prepared.stderr[-4000:]}")
    for order, r, arm in todo:
        print(f"round {r}: {arm} ...", flush=True)
        cmd = [sys.executable, __file__, "--steps", str(args.steps), "--warmup", str(args.warmup), "--one", arm]
        started = time.perf_counter()
        child = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if child.returncode != 0:
            sys.exit(f"{arm} (round {r}) failed:\n{child.stderr[-6000:]}")
        line = next(x for x in reversed(child.stdout.splitlines()) if x.startswith("RESULT "))
        record = {
            "arm": arm,
            "side": ARMS[arm][0],
            "round": r,
            "order": order,
            "steps_timed": args.steps,
            "warmup": args.warmup,
            "wall_s": time.perf_counter() - started,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            **json.loads(line[len("RESULT ") :]),
        }
        append_journal(journal_path, record)  # one whole line per finished run: a rerun skips it
        journal.append(record)
        s = summary(record)
        print(
            f"  {s['tokens_per_s']:.1f} tokens/s, {s['step_s']:.2f} s/step, {s['trained_per_step']:.0f} trained"
            f" tokens/step, {s['gflop_per_s']:.1f} GFLOP/s, peak RSS {s['peak_rss_mib']:,.0f} MiB",
            flush=True,
        )
    text = (
        f"{args.steps} timed steps after {args.warmup} warmup steps per run; medians over runs (min-max).\n\n"
        f"{table(journal, args.peak_tflops)}\n\nEvery run:\n\n{per_run(journal)}\n"
    )
    atomic_text(out / "results.md", text)
    print(text)


if __name__ == "__main__":
    main()

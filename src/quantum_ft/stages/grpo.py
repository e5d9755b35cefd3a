"""GRPO: sample a group of completions per prompt, score them, and push up the better-than-the-group ones.

Rollout reuse follows TRL's GRPOTrainer. The data loader hands over a *generation batch* of
`batch_size * steps_per_generation` prompts, `steps_per_generation * num_iterations` times in a row. The first time
the stage samples every group, scores it and keeps completions, advantages and the sampling policy's log-probs in a
buffer; each optimiser step then trains on one of the `steps_per_generation` slices, and the whole buffer is gone
over `num_iterations` times. With one step per generation and one iteration the sampling policy is the trained one,
the ratio is 1 and the clip never acts (train/clip_fraction stays 0); with more, old log-probs are those of the
policy that sampled and the clip does its job. The buffer travels in checkpoints, so a run interrupted mid-cycle
resumes exactly.

Generation runs slice by slice, and each slice's rewards start scoring in the background (rewards with
`prefetch`, such as the circuit rewards' worker pool) while the next slice is generated, the reference and old
log-probs are computed and the step's own policy forward runs; only then does the step wait for them. The step
time is logged split into generate / reward wait / update.

The reference policy of the KL term is the base model with the adapter switched off (no second copy of the
weights), or a frozen copy when every weight is trained; beta = 0 skips it. Rollouts are sampled here, or on Ray
actors (`rollout=ray`, quantum_ft.rollout.ray_actors) from the same per-slice seeds. Left out: a vLLM engine;
generation is the policy's own `generate` with its KV cache.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from transformers import PreTrainedTokenizerBase

from quantum_ft.rollout import sample_completions
from quantum_ft.stages.base import StageModule
from quantum_ft.stages.grpo_objective import (
    LOSS_TYPES,
    AdvantageScale,
    LossType,
    completion_logprobs,
    group_advantages,
    grpo_loss,
)
from quantum_ft.utils.config import ConfigError
from quantum_ft.utils.modes import evaluating

RewardFunction = Callable[..., list[float | None]]
Rollout = dict[str, Any]  # completion, mask, finished, texts, reward_inputs, rows; then scores, reward, advantages


class GRPOModule(StageModule):
    monitor: ClassVar[str] = "val/reward"
    monitor_mode: ClassVar[str] = "max"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        optimizer: Callable[..., torch.optim.Optimizer],
        rewards: dict[str, RewardFunction],
        reward_weights: dict[str, float] | None = None,
        group_size: int = 4,
        max_new_tokens: int = 128,
        temperature: float = 0.7,
        top_p: float = 0.9,
        top_k: int | None = None,
        min_p: float | None = None,
        repetition_penalty: float = 1.0,
        beta: float = 0.0,
        epsilon: float = 0.2,
        epsilon_high: float | None = None,
        loss_type: LossType = "grpo",
        scale_rewards: AdvantageScale = "group",
        num_iterations: int = 1,
        steps_per_generation: int = 1,
        mask_truncated_completions: bool = False,
        rollout: Any | None = None,
        **stage_settings: Any,
    ) -> None:
        super().__init__(model, tokenizer, optimizer, **stage_settings)
        rewards = {name: fn for name, fn in rewards.items() if fn is not None}  # null drops an inherited one
        if not rewards:
            raise ValueError("stage.rewards is empty: GRPO needs at least one reward function.")
        weights = {name: w for name, w in (reward_weights or {}).items() if w is not None}
        unknown = sorted(set(weights) - set(rewards))
        if unknown:
            raise ValueError(f"stage.reward_weights names {unknown}, which are not in stage.rewards {sorted(rewards)}.")
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"stage.loss_type {loss_type!r} is not one of {', '.join(LOSS_TYPES)}.")
        if num_iterations < 1 or steps_per_generation < 1:
            raise ValueError(
                f"stage.num_iterations ({num_iterations}) and stage.steps_per_generation ({steps_per_generation}) "
                "must be at least 1."
            )
        # Full fine-tuning (adapter=none) has no adapter to switch off: the reference is a frozen copy (2x memory).
        self.reference_model = None
        if beta and not hasattr(model, "disable_adapter"):
            self.reference_model = copy.deepcopy(model).eval().requires_grad_(False)
        self.rewards = dict(rewards)
        self.reward_weights = {name: float(weights.get(name, 1.0)) for name in self.rewards}
        self.group_size = group_size
        self.max_new_tokens = max_new_tokens
        # top_k 0, not unset: transformers fills an unset top_k with 50, which would cut what the config says is uncut
        self.sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k or 0}
        self.sampling |= {"repetition_penalty": repetition_penalty} if repetition_penalty != 1.0 else {}
        self.sampling |= {"min_p": min_p} if min_p is not None else {}
        self.temperature = temperature
        self.beta, self.epsilon, self.epsilon_high = beta, epsilon, epsilon_high
        self.loss_type, self.scale_rewards = loss_type, scale_rewards
        self.num_iterations, self.steps_per_generation = num_iterations, steps_per_generation
        self.cycle = num_iterations * steps_per_generation  # optimiser steps per generation batch
        self.mask_truncated_completions = mask_truncated_completions
        self.rollout_engine = rollout  # None: sample in this process; RayRollouts (rollout=ray): on Ray actors
        self.pad_token_id = tokenizer.pad_token_id  # model loading gives every tokenizer a pad token
        self.keeps_logits = _accepts_logits_to_keep(model)
        self.buffer: list[dict[str, Any]] = []  # one entry per slice of the current generation batch
        self.batches_seen = 0  # training batches so far: the position in the generation cycle
        self._unscored: list[Rollout] = []  # the generation batch's rollouts until their rewards are collected
        self.last_rollouts: list[dict[str, Any]] = []  # rows of the latest generation batch (CompletionsTable)
        self.timings = {"generate_s": 0.0, "reward_wait_s": 0.0}
        self._step_started = 0.0

    # ---------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        """A reward that names the prompt columns it needs fails here, before any step (validation included),
        naming what is missing; the data learns how to hand out generation batches."""
        datamodule = getattr(self.trainer, "datamodule", None)
        first = datamodule.train_set[0] if datamodule is not None and datamodule.train_set else None
        if first is not None:
            for name, fn in self.rewards.items():
                missing = [c for c in getattr(fn, "required_columns", ()) if c not in first.columns]
                if missing:
                    raise ConfigError(
                        f"reward {name!r} needs the prompt columns {missing}, which the data does not have (it has "
                        f"{sorted(first.columns) or 'none'}). Use data=qasm_prompts or add the columns to the records."
                    )
        if hasattr(datamodule, "reuse_batches"):
            datamodule.reuse_batches(self.steps_per_generation, self.num_iterations)
        elif self.cycle > 1:
            raise ConfigError(
                "stage.num_iterations / stage.steps_per_generation > 1 need prompt data that hands out generation "
                f"batches (quantum_ft.data.PromptDataModule); {type(datamodule).__name__} does not."
            )

    # ---------------------------------------------------------------- rollouts
    def rollout(self, batch: dict[str, Any], samples: int, sample: bool = True, seed: int | None = None) -> Rollout:
        """`samples` completions of every prompt (prompt-major), sampled here (from `seed`'s own stream if given,
        greedy when not `sample`)."""
        settings = self.generation_settings(samples) | ({} if sample else {"sampling": {"do_sample": False}})
        return self.rollout_from(batch, sample_completions(self.model, batch, seed=seed, **settings), samples)

    def generation_settings(self, samples: int) -> dict[str, Any]:
        return {
            "samples": samples,
            "max_new_tokens": self.max_new_tokens,
            "pad_token_id": self.pad_token_id,
            "sampling": self.sampling,
        }

    def rollout_from(self, batch: dict[str, Any], completion: torch.Tensor, samples: int) -> Rollout:
        """A rollout from sampled completion ids: their token mask and texts; rewards that can (`prefetch`)
        start scoring them in the background at once (see score())."""
        mask, finished = completion_mask(completion, self.tokenizer.eos_token_id)
        texts = self.tokenizer.batch_decode(
            completion * mask + self.pad_token_id * (1 - mask), skip_special_tokens=True
        )
        columns = {k: [v for v in values for _ in range(samples)] for k, values in batch["columns"].items()}
        prompts = [p for p in batch["prompts"] for _ in range(samples)]
        ids = [row[: int(m.sum())].tolist() for row, m in zip(completion, mask)]
        inputs = {"prompts": prompts, "completions": texts, "completion_ids": ids, "finished": finished, **columns}
        for fn in self.rewards.values():
            if hasattr(fn, "prefetch"):
                fn.prefetch(**inputs)
        return {"completion": completion, "mask": mask, "finished": finished, "texts": texts, "reward_inputs": inputs}

    def score(self, out: Rollout) -> float:
        """Every reward of a rollout into out["scores"] and their weighted sum into out["reward"]; returns the
        seconds spent waiting for them (what background scoring did not hide)."""
        started = time.perf_counter()
        out["scores"] = {name: _as_tensor(fn(**out["reward_inputs"])) for name, fn in self.rewards.items()}
        out["reward"] = sum(self.reward_weights[name] * s.nan_to_num(0.0) for name, s in out["scores"].items())
        return time.perf_counter() - started

    def token_logprobs(
        self, model: torch.nn.Module, prompts: dict[str, torch.Tensor], completion: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """log pi(completion token) under `model` at sampling temperature, for a prompt-major expansion of
        `prompts`; the LM head runs on the completion positions only (TRL's logits_to_keep) where the model
        allows it: on a 50k vocabulary the prompt's logits are most of the step's memory."""
        prompt_ids = prompts["input_ids"].repeat_interleave(self.group_size, 0)
        prompt_mask = prompts["attention_mask"].repeat_interleave(self.group_size, 0)
        attention = torch.cat([prompt_mask, mask.to(prompt_mask.dtype)], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding: as generate numbered them
        keep = {"logits_to_keep": completion.shape[1] + 1} if self.keeps_logits else {}
        logits = model(
            input_ids=torch.cat([prompt_ids, completion], dim=1),
            attention_mask=attention,
            position_ids=positions,
            **keep,
        ).logits
        logits = logits[:, -completion.shape[1] - 1 : -1]  # the position before each completion token
        return completion_logprobs(logits.float() / self.temperature, completion)

    def generate_batch(self, batch: dict[str, Any]) -> None:
        """Sample and keep a whole generation batch, one slice per optimiser step, each slice's rewards scoring in
        the background while the next is generated; then the sampling policy's and the reference's log-probs (what
        the clip and the KL need). Rewards are collected later (collect_rewards), after the step's own forward."""
        slices = _prompt_slices(len(batch["prompts"]), self.steps_per_generation)
        parts = [_take(batch, rows) for rows in slices]
        seeds = torch.randint(0, 2**62, (len(parts),)).tolist()  # from the step's stream: one per slice
        rollouts: list[Rollout] = [{} for _ in parts]
        started = time.perf_counter()
        if self.rollout_engine is None:
            for j, prompts in enumerate(parts):
                rollouts[j] = self.rollout(prompts, self.group_size, seed=seeds[j])
        else:
            settings = self.generation_settings(self.group_size)
            for j, completion in self.rollout_engine.generate(self.model, parts, seeds, settings):
                rollouts[j] = self.rollout_from(parts[j], completion.to(self.device), self.group_size)
        for out, rows in zip(rollouts, slices):
            out["rows"] = rows
        self.timings["generate_s"] = time.perf_counter() - started
        for out in rollouts:
            prompts = _take(batch, out["rows"])
            out["old_logp"] = None
            if self.cycle > 1:  # the policy moves before these tokens are trained on: keep the sampler's log-probs
                with torch.no_grad(), evaluating(self.model):
                    out["old_logp"] = self.token_logprobs(self.model, prompts, out["completion"], out["mask"])
            out["ref_logp"] = None
            if self.beta:
                with torch.no_grad(), self._reference() as reference:
                    out["ref_logp"] = self.token_logprobs(reference, prompts, out["completion"], out["mask"])
        self.buffer = [_kept(out, self.mask_truncated_completions) for out in rollouts]
        self._unscored = rollouts

    def collect_rewards(self) -> None:
        """Wait for the generation batch's rewards (the time is what background scoring did not hide), then its
        advantages, over every group at once."""
        rollouts, self._unscored = self._unscored, []
        self.timings["reward_wait_s"] = sum(self.score(out) for out in rollouts)
        rewards = torch.cat([out["reward"] for out in rollouts])
        advantages = group_advantages(rewards, self.group_size, self.scale_rewards).split(
            [len(out["reward"]) for out in rollouts]
        )
        for part, out, a in zip(self.buffer, rollouts, advantages):
            part.update(reward=out["reward"], scores=out["scores"], advantages=a)
        self.last_rollouts = [
            {"prompt": p, "completion": t, "reward": float(r), **{n: float(s[i]) for n, s in out["scores"].items()}}
            for out in rollouts
            for i, (p, t, r) in enumerate(zip(out["reward_inputs"]["prompts"], out["texts"], out["reward"]))
        ]

    # ---------------------------------------------------------------- steps
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        self._step_started = time.perf_counter()
        self.timings = {"generate_s": 0.0, "reward_wait_s": 0.0}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        position = self.batches_seen % self.cycle
        self.batches_seen += 1
        if position == 0 or not self.buffer:
            self.generate_batch(batch)
        part = self.buffer[position % self.steps_per_generation]
        prompts = _take(batch, part["rows"])
        logp = self.token_logprobs(self.model, prompts, part["completion"], part["mask"])
        if self._unscored:  # the policy's forward ran while the last slice was being scored
            self.collect_rewards()
        old_logp = part["old_logp"] if part["old_logp"] is not None else logp.detach()
        result = grpo_loss(
            logp,
            old_logp,
            part["advantages"],
            part["loss_mask"],
            ref_logp=part["ref_logp"],
            beta=self.beta,
            epsilon=self.epsilon,
            epsilon_high=self.epsilon_high,
            loss_type=self.loss_type,
            max_completion_length=self.max_new_tokens,
            global_tokens=self._global_tokens(part["loss_mask"]) if self.loss_type == "dapo" else None,
            world_size=self.trainer.world_size if self.loss_type == "dapo" else 1,
        )
        n = len(part["rows"])
        reward = part["reward"]
        self.log("train/loss", result.loss, on_step=True, prog_bar=True, batch_size=n)
        self.log("train/reward", reward.mean(), on_step=True, prog_bar=True, batch_size=n)
        self.log("train/reward_std", reward.view(-1, self.group_size).std(1).mean(), on_step=True, batch_size=n)
        for name, s in part["scores"].items():
            self.log(f"train/rewards/{name}", s.nanmean().nan_to_num(0.0), on_step=True, batch_size=n)
        self.log("train/kl", result.kl, on_step=True, batch_size=n)
        self.log("train/clip_fraction", result.clip_fraction, on_step=True, batch_size=n)
        self.log("train/completion_tokens", part["mask"].sum(1).float().mean(), on_step=True, batch_size=n)
        self.log("train/truncated_share", 1 - part["finished"].float().mean(), on_step=True, batch_size=n)
        if self.rollout_engine is not None and position == 0:
            self.log("train/rollout/weight_bytes", float(self.rollout_engine.weight_bytes), on_step=True, batch_size=1)
        self.step_tokens = int(part["mask"].sum())  # what this step trained on
        return result.loss

    def _global_tokens(self, mask: torch.Tensor) -> float:
        """Completion tokens of this step over every rank (dapo's normaliser)."""
        tokens = mask.sum().to(self.device, torch.float32)
        if self.trainer.world_size > 1:
            tokens = self.trainer.strategy.reduce(tokens, reduce_op="sum")
        return float(tokens)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The step's time split: generating, waiting on rewards, and the rest (forward passes, backward and the
        optimiser); and the share spent waiting on rewards."""
        elapsed = max(time.perf_counter() - self._step_started, 1e-9)
        generate, wait = self.timings["generate_s"], self.timings["reward_wait_s"]
        self.log("train/time/generate_s", generate, on_step=True, batch_size=1)
        self.log("train/time/reward_wait_s", wait, on_step=True, batch_size=1)
        self.log("train/time/update_s", elapsed - generate - wait, on_step=True, batch_size=1)
        self.log("train/reward_wait_share", wait / elapsed, on_step=True, batch_size=1)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Mean reward of one greedy completion per held-out prompt: what the policy does when not exploring."""
        out = self.rollout(batch, samples=1, sample=False)
        self.score(out)
        reward = out["reward"].mean()
        self.log("val/reward", reward, on_epoch=True, prog_bar=True, batch_size=len(batch["prompts"]), sync_dist=True)
        return reward

    def teardown(self, stage: str) -> None:
        if self.rollout_engine is not None:
            self.rollout_engine.close()

    # ---------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The generation buffer (tensors, row ranges) rides along: a run resumed mid-cycle trains on the
        rollouts the interrupted one had sampled."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["grpo"] = {"batches_seen": self.batches_seen, "buffer": self.buffer}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("grpo", {})
        self.batches_seen = int(state.get("batches_seen", 0))
        self.buffer = list(state.get("buffer", []))

    @contextlib.contextmanager
    def _reference(self) -> Iterator[torch.nn.Module]:
        """The reference policy: the model with its adapter off, or the frozen copy."""
        if self.reference_model is None:
            with self.model.disable_adapter():
                yield self.model
        else:
            yield self.reference_model.eval()  # Lightning's train() at fit start reaches the copy too


def completion_mask(completion: torch.Tensor, eos_token_id: int | None) -> tuple[torch.Tensor, list[bool]]:
    """1 on each completion's tokens up to and including its first EOS; and whether it had one."""
    if eos_token_id is None:
        return torch.ones_like(completion), [False] * len(completion)
    is_eos = completion == eos_token_id
    after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0  # strictly after the first EOS
    return (~after_eos).long(), is_eos.any(1).tolist()


def _prompt_slices(prompts: int, parts: int) -> list[list[int]]:
    """[start, stop) of `parts` near-equal slices of a generation batch (the data drops batches too small)."""
    if prompts < parts:
        raise ValueError(f"a generation batch of {prompts} prompts cannot feed {parts} optimiser steps")
    bounds = [round(i * prompts / parts) for i in range(parts + 1)]
    return [[a, b] for a, b in zip(bounds, bounds[1:])]


def _take(batch: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """The prompts [start, stop) of a collated prompt batch."""
    a, b = rows
    return {
        "input_ids": batch["input_ids"][a:b],
        "attention_mask": batch["attention_mask"][a:b],
        "prompts": batch["prompts"][a:b],
        "columns": {k: v[a:b] for k, v in batch["columns"].items()},
    }


def _kept(out: Rollout, mask_truncated: bool) -> dict[str, Any]:
    """What the optimiser steps need of a slice: tensors and row bounds only (it is saved in checkpoints); its
    rewards and advantages join once collected."""
    finished = torch.tensor(out["finished"], dtype=torch.bool)
    loss_mask = out["mask"] * finished.unsqueeze(1) if mask_truncated else out["mask"]
    return {
        "rows": out["rows"],
        "completion": out["completion"],
        "mask": out["mask"],
        "loss_mask": loss_mask,  # mask_truncated_completions: a completion cut at max_new_tokens teaches nothing
        "finished": finished,
        "old_logp": out["old_logp"],
        "ref_logp": out["ref_logp"],
    }


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _as_tensor(values: list[float | None]) -> torch.Tensor:
    return torch.tensor([float("nan") if v is None else float(v) for v in values], dtype=torch.float32)

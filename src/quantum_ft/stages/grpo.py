"""GRPO: sample a group of completions per prompt, score them, and push up the better-than-the-group ones.

One optimiser step per batch of prompts (num_iterations = 1), so the sampling policy is the policy being trained
and its log-probabilities are the detached current ones. The reference policy of the KL term is the base model
with the adapter switched off (no second copy of the weights), or a frozen copy when every weight is trained.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from transformers import PreTrainedTokenizerBase

from quantum_ft.stages.base import StageModule
from quantum_ft.stages.grpo_objective import (
    AdvantageScale,
    LossType,
    completion_logprobs,
    group_advantages,
    grpo_loss,
)
from quantum_ft.utils.config import ConfigError
from quantum_ft.utils.modes import evaluating

RewardFunction = Callable[..., list[float | None]]


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
        beta: float = 0.0,
        epsilon: float = 0.2,
        epsilon_high: float | None = None,
        loss_type: LossType = "grpo",
        scale_rewards: AdvantageScale = "group",
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
        # Full fine-tuning (adapter=none) has no adapter to switch off: the reference is a frozen copy (2x memory).
        self.reference_model = None
        if beta and not hasattr(model, "disable_adapter"):
            self.reference_model = copy.deepcopy(model).eval().requires_grad_(False)
        self.rewards = dict(rewards)
        self.reward_weights = {name: float(weights.get(name, 1.0)) for name in self.rewards}
        self.group_size = group_size
        self.max_new_tokens = max_new_tokens
        self.temperature, self.top_p = temperature, top_p
        self.beta, self.epsilon, self.epsilon_high = beta, epsilon, epsilon_high
        self.loss_type, self.scale_rewards = loss_type, scale_rewards
        self.pad_token_id = tokenizer.pad_token_id  # model loading gives every tokenizer a pad token
        self.reward_wait_s = 0.0
        self._step_started = 0.0

    # ---------------------------------------------------------------- rollouts
    @torch.no_grad()
    def rollout(self, batch: dict[str, Any], samples: int, sample: bool = True) -> dict[str, Any]:
        """`samples` completions of every prompt (prompt-major) and their token mask; rewards that can
        (`prefetch`) start scoring them in the background at once (see score())."""
        settings = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p} if sample else {}
        with evaluating(self.model):
            sequences = self.model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                max_new_tokens=self.max_new_tokens,
                num_return_sequences=samples,
                pad_token_id=self.pad_token_id,
                **({"do_sample": False} | settings),
            )
        width = batch["input_ids"].shape[1]
        completion = sequences[:, width:]
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
        return {"completion": completion, "mask": mask, "texts": texts, "reward_inputs": inputs}

    def score(self, out: dict[str, Any]) -> None:
        """Every reward of a rollout into out["scores"] and their weighted sum into out["reward"]; the time spent
        waiting for them (what background scoring did not hide) into self.reward_wait_s."""
        started = time.perf_counter()
        out["scores"] = {name: _as_tensor(fn(**out["reward_inputs"])) for name, fn in self.rewards.items()}
        self.reward_wait_s = time.perf_counter() - started
        out["reward"] = sum(self.reward_weights[name] * s.nan_to_num(0.0) for name, s in out["scores"].items())

    def setup(self, stage: str) -> None:
        """A reward that names the prompt columns it needs fails here, before any step (validation included),
        naming what is missing."""
        datamodule = getattr(self.trainer, "datamodule", None)
        first = datamodule.train_set[0] if datamodule is not None and datamodule.train_set else None
        if first is None:
            return
        for name, fn in self.rewards.items():
            missing = [c for c in getattr(fn, "required_columns", ()) if c not in first.columns]
            if missing:
                raise ConfigError(
                    f"reward {name!r} needs the prompt columns {missing}, which the data does not have (it has "
                    f"{sorted(first.columns) or 'none'}). Use data=qasm_prompts or add the columns to the records."
                )

    def token_logprobs(
        self, model: torch.nn.Module, batch: dict[str, Any], completion: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """log pi(completion token) under `model` at sampling temperature, for a prompt-major expansion of `batch`."""
        prompt_ids = batch["input_ids"].repeat_interleave(self.group_size, 0)
        prompt_mask = batch["attention_mask"].repeat_interleave(self.group_size, 0)
        attention = torch.cat([prompt_mask, mask.to(prompt_mask.dtype)], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding: as generate numbered them
        logits = model(
            input_ids=torch.cat([prompt_ids, completion], dim=1), attention_mask=attention, position_ids=positions
        ).logits
        width = prompt_ids.shape[1]
        return completion_logprobs(logits[:, width - 1 : -1].float() / self.temperature, completion)

    # ---------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self._step_started = time.perf_counter()
        out = self.rollout(batch, self.group_size)
        # The policy's and the reference's forward passes run while background rewards score the rollout.
        logp = self.token_logprobs(self.model, batch, out["completion"], out["mask"])
        ref_logp = None
        if self.beta:
            with torch.no_grad(), self._reference() as reference:
                ref_logp = self.token_logprobs(reference, batch, out["completion"], out["mask"])
        self.score(out)
        advantages = group_advantages(out["reward"].to(self.device), self.group_size, self.scale_rewards)
        result = grpo_loss(
            logp,
            logp.detach(),
            advantages,
            out["mask"],
            ref_logp=ref_logp,
            beta=self.beta,
            epsilon=self.epsilon,
            epsilon_high=self.epsilon_high,
            loss_type=self.loss_type,
            max_completion_length=self.max_new_tokens,
        )
        n = len(batch["prompts"])
        reward = out["reward"]
        self.log("train/loss", result.loss, on_step=True, prog_bar=True, batch_size=n)
        self.log("train/reward", reward.mean(), on_step=True, prog_bar=True, batch_size=n)
        self.log("train/reward_std", reward.view(-1, self.group_size).std(1).mean(), on_step=True, batch_size=n)
        for name, s in out["scores"].items():
            self.log(f"train/rewards/{name}", s.nanmean().nan_to_num(0.0), on_step=True, batch_size=n)
        self.log("train/kl", result.kl, on_step=True, batch_size=n)
        self.log("train/clip_fraction", result.clip_fraction, on_step=True, batch_size=n)
        self.log("train/completion_tokens", out["mask"].sum(1).float().mean(), on_step=True, batch_size=n)
        self.log("train/reward_wait_s", self.reward_wait_s, on_step=True, batch_size=n)
        self.step_tokens = int(out["mask"].sum())  # what this step generated and trained on
        return result.loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The share of the whole step (optimiser included) spent waiting on rewards."""
        elapsed = max(time.perf_counter() - self._step_started, 1e-9)
        self.log("train/reward_wait_share", self.reward_wait_s / elapsed, on_step=True, batch_size=1)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Mean reward of one greedy completion per held-out prompt: what the policy does when not exploring."""
        out = self.rollout(batch, samples=1, sample=False)
        self.score(out)
        reward = out["reward"].mean()
        self.log("val/reward", reward, on_epoch=True, prog_bar=True, batch_size=len(batch["prompts"]), sync_dist=True)
        return reward

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


def _as_tensor(values: list[float | None]) -> torch.Tensor:
    return torch.tensor([float("nan") if v is None else float(v) for v in values], dtype=torch.float32)

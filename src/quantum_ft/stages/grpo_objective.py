"""The GRPO objective (DeepSeekMath, arXiv 2402.03300, section 4.1) as plain tensor functions.

Kept apart from any trainer so that each piece can be checked against a scalar loop over the paper's formula:

    J = E[ 1/G sum_i 1/|o_i| sum_t ( min(rho_t A_i, clip(rho_t, 1-eps, 1+eps_high) A_i) - beta KL_t ) ]
    A_i  = (r_i - mean(r_group)) / (std(r_group) + eps_a)
    KL_t = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1      (the "k3" estimator, per token)

Completions are laid out prompt-major: the G completions of prompt 0, then the G of prompt 1, ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

AdvantageScale = Literal["group", "batch", "none"]
LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: AdvantageScale = "group", eps: float = 1e-4
) -> torch.Tensor:
    """A_i = r_i minus its group's mean, divided by the group's std ("group"), the batch's ("batch") or 1 ("none").

    The std is the unbiased one (torch's default, as in TRL). A group whose rewards are all equal gets advantage 0:
    it carries no signal about which completion is better.
    """
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards must be a flat tensor of groups of {group_size} completions, got shape {tuple(rewards.shape)}"
        )
    if group_size < 2:
        raise ValueError("GRPO needs at least 2 completions per prompt (stage.group_size >= 2) to compare them.")
    groups = rewards.view(-1, group_size)
    centred = (groups - groups.mean(dim=1, keepdim=True)).flatten()
    if scale == "group":
        return centred / (groups.std(dim=1).repeat_interleave(group_size) + eps)
    if scale == "batch":
        return centred / (rewards.std() + eps)
    if scale == "none":
        return centred
    raise ValueError(f"Unknown advantage scale {scale!r}: use 'group', 'batch' or 'none'.")


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi_theta || pi_ref) estimate, exp(d) - d - 1 with d = log pi_ref - log pi_theta: never negative."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


@dataclass
class GRPOLoss:
    """The scalar to minimise (minus J) and what is worth logging about it."""

    loss: torch.Tensor
    kl: torch.Tensor  # mean per-token k3 KL over completion tokens (0 when beta = 0 and no reference is given)
    clip_fraction: torch.Tensor  # share of completion tokens whose ratio was clipped in the direction of A


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    loss_type: LossType = "grpo",
    max_completion_length: int | None = None,
    global_tokens: float | None = None,
    world_size: int = 1,
) -> GRPOLoss:
    """Clipped-surrogate GRPO loss over completion tokens.

    logp, old_logp, ref_logp, mask: (N, T) per-token log-probabilities of the sampled completion tokens under the
    policy being trained, the policy that sampled them (equal to logp, detached, on the first iteration) and the
    reference policy; mask is 1 on completion tokens. advantages: (N,).

    loss_type says how token terms are averaged: "grpo" as in the paper (per sequence, then over sequences, which
    favours short wrong answers over long ones), "bnpo" over all completion tokens of the batch, "dr_grpo" over
    N * max_completion_length (Dr. GRPO: no length bias), "dapo" over the completion tokens of the global batch
    (DAPO, arXiv 2503.14476; TRL's default): `global_tokens` counted over every rank, and the rank's sum scaled by
    `world_size` because DDP averages the ranks' gradients, so that the update is the sum over all ranks' tokens
    divided by their count. On one process dapo equals bnpo.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"Unknown loss_type {loss_type!r}: use one of {', '.join(LOSS_TYPES)}.")
    if beta and ref_logp is None:
        raise ValueError("beta > 0 needs the reference policy's log-probabilities (ref_logp).")
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    high = epsilon if epsilon_high is None else epsilon_high
    a = advantages.unsqueeze(1)
    surrogate = torch.minimum(ratio * a, torch.clamp(ratio, 1 - epsilon, 1 + high) * a)
    kl = k3_kl(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    per_token = -surrogate + beta * kl

    tokens = mask.sum().clamp(min=1)
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    elif loss_type == "bnpo":
        loss = (per_token * mask).sum() / tokens
    elif loss_type == "dr_grpo":
        length = max_completion_length or logp.shape[1]
        loss = (per_token * mask).sum() / (logp.shape[0] * length)
    else:  # dapo
        total = tokens if global_tokens is None else max(float(global_tokens), 1.0)
        loss = (per_token * mask).sum() * world_size / total

    with torch.no_grad():
        clipped = ((ratio < 1 - epsilon) & (a < 0)) | ((ratio > 1 + high) & (a > 0))
        clip_fraction = (clipped.to(mask.dtype) * mask).sum() / tokens
        mean_kl = (kl.detach() * mask).sum() / tokens
    return GRPOLoss(loss, mean_kl, clip_fraction)


def completion_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) for each position from (N, T, V) logits, one row at a time.

    A log_softmax over the whole (N, T, V) block is the memory peak of GRPO (the vocabulary is ~50-150k wide);
    taking logsumexp row by row keeps the extra memory to one (T, V) slice.
    """
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    norms = torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
    return picked - norms

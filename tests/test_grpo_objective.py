"""The GRPO objective against hand-computed values and a scalar loop over the paper's formula."""

from __future__ import annotations

import math

import pytest
import torch

from quantum_ft.stages.grpo_objective import completion_logprobs, group_advantages, grpo_loss, k3_kl


def test_group_advantages_by_hand() -> None:
    # group 1: rewards 1, 0 -> mean 0.5, unbiased std sqrt(0.5); group 2: all equal -> no signal
    rewards = torch.tensor([1.0, 0.0, 2.0, 2.0])
    a = group_advantages(rewards, group_size=2, eps=1e-12)
    s = 0.5 / math.sqrt(0.5)
    assert a.tolist() == pytest.approx([s, -s, 0.0, 0.0])
    assert group_advantages(rewards, 2, scale="none").tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])
    batch_std = torch.tensor([1.0, 0.0, 2.0, 2.0]).std().item()
    assert group_advantages(rewards, 2, scale="batch").tolist() == pytest.approx(
        [0.5 / (batch_std + 1e-4), -0.5 / (batch_std + 1e-4), 0.0, 0.0]
    )


def test_group_advantages_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.zeros(4), group_size=3)
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages(torch.zeros(4), group_size=1)


def test_k3_kl_by_hand_and_non_negative() -> None:
    # log pi = log 0.5, log pi_ref = log 0.25: ratio 0.5 -> 0.5 - log 0.5 - 1
    kl = k3_kl(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]))
    assert kl.item() == pytest.approx(0.5 - math.log(0.5) - 1)
    g = torch.Generator().manual_seed(0)
    assert (k3_kl(torch.randn(100, generator=g), torch.randn(100, generator=g)) >= 0).all()


def _loop_loss(logp, old, adv, mask, ref, beta, eps, eps_high, loss_type, max_len):
    """-J written as the paper reads, one float at a time."""
    n, t = len(logp), len(logp[0])
    per_seq, total, tokens = [], 0.0, 0
    for i in range(n):
        seq_sum, seq_tokens = 0.0, 0
        for j in range(t):
            if not mask[i][j]:
                continue
            rho = math.exp(logp[i][j] - old[i][j])
            clipped = min(max(rho, 1 - eps), 1 + eps_high)
            d = ref[i][j] - logp[i][j]
            kl = math.exp(d) - d - 1
            term = -(min(rho * adv[i], clipped * adv[i]) - beta * kl)
            seq_sum += term
            seq_tokens += 1
        per_seq.append(seq_sum / max(seq_tokens, 1))
        total += seq_sum
        tokens += seq_tokens
    if loss_type == "grpo":
        return sum(per_seq) / n
    if loss_type in ("bnpo", "dapo"):  # dapo on one process: over the batch's tokens
        return total / tokens
    return total / (n * max_len)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_matches_scalar_loop(loss_type: str, beta: float) -> None:
    g = torch.Generator().manual_seed(1)
    n, t = 6, 5
    logp = -torch.rand(n, t, generator=g, dtype=torch.float64) * 3
    old = logp + torch.randn(n, t, generator=g, dtype=torch.float64) * 0.4  # ratios well outside [0.8, 1.2]
    ref = logp + torch.randn(n, t, generator=g, dtype=torch.float64) * 0.3
    adv = group_advantages(torch.rand(n, generator=g, dtype=torch.float64), group_size=3)
    mask = torch.ones(n, t)
    mask[0, 3:] = 0  # sequences of different lengths
    mask[4, 1:] = 0
    out = grpo_loss(
        logp,
        old,
        adv,
        mask,
        ref,
        beta=beta,
        epsilon=0.2,
        epsilon_high=0.28,
        loss_type=loss_type,
        max_completion_length=8,
    )
    expected = _loop_loss(
        logp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), ref.tolist(), beta, 0.2, 0.28, loss_type, 8
    )
    assert out.loss.item() == pytest.approx(expected, rel=1e-10)
    assert 0 < out.clip_fraction.item() < 1  # the test exercises both sides of the clip


def test_dapo_normalises_over_the_global_batch_of_two_ranks() -> None:
    """Two ranks with different token counts: each rank's loss (its token sum x world size / all tokens), averaged
    as DDP averages gradients, equals the scalar loop's sum over every token of both ranks over their count; bnpo
    per rank would weigh the short rank's tokens more."""
    g = torch.Generator().manual_seed(3)
    n, t = 4, 6
    logp = -torch.rand(n, t, generator=g, dtype=torch.float64) * 2
    old = logp + torch.randn(n, t, generator=g, dtype=torch.float64) * 0.3
    ref = logp + torch.randn(n, t, generator=g, dtype=torch.float64) * 0.2
    adv = torch.tensor([1.0, -0.5, 0.8, -1.2], dtype=torch.float64)
    mask = torch.ones(n, t)
    mask[2:, 2:] = 0  # rank 1's completions are short: 4 tokens against rank 0's 12
    args = {"beta": 0.04, "epsilon": 0.2, "epsilon_high": 0.28}
    ranks = [slice(0, 2), slice(2, 4)]
    tokens = float(mask.sum())
    per_rank = [
        grpo_loss(
            logp[r], old[r], adv[r], mask[r], ref[r], loss_type="dapo", global_tokens=tokens, world_size=2, **args
        )
        for r in ranks
    ]
    averaged = sum(p.loss for p in per_rank) / 2
    expected = _loop_loss(
        logp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), ref.tolist(), 0.04, 0.2, 0.28, "bnpo", t
    )
    assert averaged.item() == pytest.approx(expected, rel=1e-10)
    bnpo = sum(grpo_loss(logp[r], old[r], adv[r], mask[r], ref[r], loss_type="bnpo", **args).loss for r in ranks) / 2
    assert bnpo.item() != pytest.approx(expected, rel=1e-3)


def test_unknown_loss_type_is_refused() -> None:
    with pytest.raises(ValueError, match="dapo"):
        grpo_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 2), loss_type="ppo")


def test_grpo_gradient_on_first_iteration_is_the_policy_gradient() -> None:
    # With old = logp (detached) the ratio is 1, nothing is clipped, and d(-J)/d logp_t = -A_i / |o_i| ("grpo").
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -1.1]], requires_grad=True)
    adv = torch.tensor([1.5, -1.5])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    grpo_loss(logp, logp.detach(), adv, mask).loss.backward()
    expected = torch.tensor([[-1.5 / 2, -1.5 / 2, 0.0], [1.5 / 3, 1.5 / 3, 1.5 / 3]]) / 2
    torch.testing.assert_close(logp.grad, expected)


def test_grpo_loss_needs_reference_for_kl() -> None:
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 2), beta=0.1)


def test_completion_logprobs_equals_log_softmax_gather() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 50, generator=g)
    tokens = torch.randint(0, 50, (3, 4), generator=g)
    expected = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(completion_logprobs(logits, tokens), expected)

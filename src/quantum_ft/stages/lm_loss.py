"""Next-token cross-entropy without the [batch, length, vocabulary] logits tensor.

A causal LM's own forward computes float32 logits at every position: on SmolLM2 (vocabulary 49,152) a batch of
4 x 1,024 tokens is 805 MB of logits, and as much again for their gradient, most of it on prompt tokens that carry
no loss. Here the decoder runs to its last hidden state, only positions whose next token is labelled are kept,
and the LM head and the cross-entropy run over them in chunks of `chunk_size` rows. The gradient of each chunk
(softmax minus one-hot, times the head) is formed in the same pass, so nothing of vocabulary width outlives a
chunk: the peak is one chunk's logits (Liger's fused linear cross-entropy does the same on CUDA with Triton).

Exact: the same mean over labelled tokens as the model's loss, and the same gradients (tested to 1e-6). Used only
where it is the model's own computation: a plain bias-free `nn.Linear` head on a decoder whose forward adds
nothing after it (model types in FUSED_MODEL_TYPES); anything else (an adapted head, logit soft-capping or
scaling) takes the model's forward, and `fused_head(model)` says which.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from quantum_ft.data.encode import IGNORE_INDEX

FUSED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3"})  # head = Linear(hidden), nothing after


def fused_head(model: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    """(decoder, LM head) when the loss can be fused for this model, else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "model_type", None) not in FUSED_MODEL_TYPES:
        return None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    decoder = getattr(base, getattr(base, "base_model_prefix", ""), None)
    if type(head) is not nn.Linear or head.bias is not None or decoder is None:
        return None  # an adapter on the head (LoRA, modules_to_save) wraps it: the model's forward knows it
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    return decoder, head


def causal_lm_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], chunk_size: int = 1024, fused: bool = True
) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled tokens of `batch` (input_ids, labels, attention_mask,
    position_ids if packed), as `model(**batch).loss` gives it, fused where `fused` and fused_head allow.

    Never with a KV cache: a training forward has no use for one, and transformers detects packed sequences
    (position ids restarting, no attention mask) only when there is none."""
    parts = fused_head(model) if fused else None
    if parts is None or "labels" not in batch:
        return model(**batch, use_cache=False).loss
    decoder, head = parts
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = decoder(**inputs, use_cache=False).last_hidden_state  # (B, T, d)
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    return linear_cross_entropy(hidden[:, :-1][keep], head.weight, targets[keep], chunk_size)


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 1024
) -> torch.Tensor:
    """mean_i CE(hidden_i @ weight.T, targets_i), chunk by chunk; logits and the softmax in float32."""
    if targets.numel() == 0:
        return (hidden.sum() + weight.sum()) * 0.0  # no labelled token: a zero that keeps the graph
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk_size) / targets.numel()


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropies, its gradients formed in the forward pass one chunk at a time."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int):
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        wide = torch.promote_types(hidden.dtype, torch.float32)  # bf16 in, float32 softmax; float64 stays
        total = torch.zeros((), dtype=wide, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=wide) if want_weight else None
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start : start + chunk], targets[start : start + chunk]
            logits = (h @ weight.t()).to(wide)
            norm = torch.logsumexp(logits, dim=-1)
            total += (norm - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if not (want_hidden or want_weight):
                continue
            grad = logits.sub_(norm[:, None]).exp_()  # softmax, in place of the logits
            grad[torch.arange(len(t), device=t.device), t] -= 1.0
            grad = grad.to(h.dtype)
            if want_hidden:
                grad_hidden[start : start + chunk] = grad @ weight
            if want_weight:
                grad_weight += (grad.t() @ h).to(wide)
        ctx.save_for_backward(
            grad_hidden if want_hidden else torch.empty(0), grad_weight if want_weight else torch.empty(0)
        )
        ctx.wants = (want_hidden, want_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    @once_differentiable  # the gradients were formed in the forward: a second derivative through them would be wrong
    def backward(ctx: Any, grad_total: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        want_hidden, want_weight = ctx.wants
        return (
            grad_hidden * grad_total.to(grad_hidden.dtype) if want_hidden else None,
            (grad_weight * grad_total).to(ctx.weight_dtype) if want_weight else None,
            None,
            None,
        )

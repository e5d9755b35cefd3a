"""The fused, label-only, chunked cross-entropy (stages/lm_loss.py) against the model's own loss: value and
gradients, with LoRA and with every weight trained (the tied head included), and where it must step aside."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from quantum_ft.data.encode import IGNORE_INDEX
from quantum_ft.stages.lm_loss import causal_lm_loss, fused_head, linear_cross_entropy
from tests.helpers import compose_train, tiny_model


def _batch(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """3 rows, right-padded, with prompt tokens unlabelled and one row without any label past the first."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 14:] = 0
    labels = ids.clone()
    labels[:, :6] = IGNORE_INDEX  # a prompt
    labels[mask == 0] = IGNORE_INDEX
    labels[2, 1:] = IGNORE_INDEX  # nothing to predict in this row
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _loss_and_grads(model, batch, fused: bool, chunk: int = 5):
    model.zero_grad()
    loss = causal_lm_loss(model, batch, chunk) if fused else model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("adapter", ["lora", "none"])
def test_fused_loss_equals_the_models_loss_and_gradients(adapter: str) -> None:
    cfg = compose_train(["model=tiny", f"adapter={adapter}"])
    model = instantiate(cfg.adapter).apply(tiny_model().double()).train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    with torch.no_grad():  # LoRA's B starts at 0, which would leave A's gradient 0 on both sides
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    assert fused_head(model) is not None
    batch = _batch(model.config.vocab_size if hasattr(model, "config") else 49152)
    want, want_grads = _loss_and_grads(model, batch, fused=False)
    got, got_grads = _loss_and_grads(model, batch, fused=True)
    torch.testing.assert_close(got.to(want.dtype), want, rtol=0, atol=1e-6)  # HF upcasts to float32 only
    assert want_grads.keys() == got_grads.keys() and want_grads
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_linear_cross_entropy_in_float32_matches_to_1e_6() -> None:
    """In float32, as the SFT stage runs: every chunk size, the same loss and gradients as log_softmax."""
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(37, 16, generator=g, requires_grad=True)
    weight = torch.randn(300, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 300, (37,), generator=g)
    plain = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets)
    plain_grads = torch.autograd.grad(plain, (hidden, weight))
    for chunk in (1, 8, 37, 1000):
        fused = linear_cross_entropy(hidden, weight, targets, chunk)
        grads = torch.autograd.grad(fused, (hidden, weight))
        torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6)
        for a, b in zip(grads, plain_grads):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_second_derivatives_are_refused_not_wrong() -> None:
    """The loss's gradients are formed in its forward pass, so they have no graph of their own: differentiating them
    again must raise, not return a Hessian with terms missing."""
    hidden = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)  # makes the incoming gradient need a graph
    loss = scale * linear_cross_entropy(hidden, weight, torch.tensor([0, 1, 2, 3, 4]))
    (grad,) = torch.autograd.grad(loss, hidden, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.square().sum().backward()


def test_no_labelled_token_gives_a_zero_loss_with_a_graph() -> None:
    hidden = torch.randn(0, 4, requires_grad=True)
    weight = torch.randn(10, 4, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert float(loss) == 0.0 and torch.equal(weight.grad, torch.zeros_like(weight))


def test_models_it_cannot_fuse_take_their_own_forward() -> None:
    """An adapted head (LoRA on lm_head) and a model type outside the list fall back to model(**batch).loss."""
    cfg = compose_train(["model=tiny", "adapter=lora", "adapter.target_modules=[q_proj,lm_head]"])
    model = instantiate(cfg.adapter).apply(tiny_model())
    assert fused_head(model) is None
    plain = tiny_model()
    plain.config.model_type = "gemma2"  # soft-capped logits: not the plain head
    assert fused_head(plain) is None
    batch = _batch(49152)
    torch.testing.assert_close(causal_lm_loss(plain, batch), plain(**batch).loss)

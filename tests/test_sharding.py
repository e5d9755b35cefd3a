"""The FSDP wrap policy on a real torch FSDP wrap (gloo, one CPU process): one unit per transformer block, and
trainable-tensor names that match the unwrapped model's, which checkpoints rely on. Lightning's Trainer runs FSDP
on CUDA only; this is the part of it that can be checked here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from quantum_ft.adapters import LoraAdapter
from quantum_ft.distributed import TransformerBlockPolicy, clean_parameter_name
from quantum_ft.models.nanogpt import NanoGPT, NanoGPTConfig
from tests.helpers import tiny_model

CPU = torch.device("cpu")  # FSDP picks an accelerator unless told; there is none here


@pytest.fixture
def process_group(tmp_path: Path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def units(model: torch.nn.Module) -> list[str]:
    return [type(m.module).__name__ for m in model.modules() if isinstance(m, FSDP)]


def test_policy_wraps_each_llama_block_of_a_lora_model(process_group) -> None:
    lora = LoraAdapter(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    model, reference = (lora.apply(tiny_model(num_hidden_layers=3)) for _ in range(2))
    with torch.no_grad():  # a non-zero LoRA update, the same in both
        for (_, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
            if p.requires_grad:
                p.copy_(torch.randn_like(p) * 0.1)
                q.copy_(p)
    before = {n for n, p in model.named_parameters() if p.requires_grad}
    wrapped = FSDP(model, auto_wrap_policy=TransformerBlockPolicy(), use_orig_params=True, device_id=CPU)
    assert units(wrapped).count("LlamaDecoderLayer") == 3 and len(units(wrapped)) == 4  # 3 blocks + the root
    after = {clean_parameter_name(n) for n, p in wrapped.named_parameters() if p.requires_grad}
    assert after == before and any("_fsdp_wrapped_module" in n for n, _ in wrapped.named_parameters())
    ids = torch.randint(0, 1000, (2, 8))
    loss = wrapped(input_ids=ids, labels=ids).loss
    loss.backward()
    expected = reference(input_ids=ids, labels=ids).loss
    expected.backward()
    # the sharded model computes the same loss and the same gradients for every trained tensor
    torch.testing.assert_close(loss, expected)
    grads = {clean_parameter_name(n): p.grad for n, p in wrapped.named_parameters() if p.requires_grad}
    for name, p in reference.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(grads[name], p.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_policy_learns_nanogpt_blocks(process_group) -> None:
    model = NanoGPT(NanoGPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16))
    wrapped = FSDP(model, auto_wrap_policy=TransformerBlockPolicy(), use_orig_params=True, device_id=CPU)
    assert units(wrapped) == ["NanoGPT", "Block", "Block"]


def test_named_blocks_without_a_model_hint() -> None:
    policy = TransformerBlockPolicy(block_names=["Linear"])
    assert policy(torch.nn.Linear(2, 2), recurse=False, nonwrapped_numel=4)
    assert not policy(torch.nn.ReLU(), recurse=False, nonwrapped_numel=0)
    assert policy(torch.nn.ReLU(), recurse=True, nonwrapped_numel=0)

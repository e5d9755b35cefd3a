"""The FSDP wrap policy on a real torch FSDP wrap (gloo, one CPU process): one unit per transformer block, and
trainable-tensor names that match the unwrapped model's, which checkpoints rely on. Lightning's Trainer runs FSDP
on CUDA only; this is the part of it that can be checked here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from quantum_ft.stages.sharding import TransformerBlockPolicy, clean_parameter_name
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from transformers import LlamaConfig, LlamaForCausalLM

from quantum_ft.adapters import LoraAdapter
from quantum_ft.models.nanogpt import NanoGPT, NanoGPTConfig

CPU = torch.device("cpu")  # FSDP picks an accelerator unless told; there is none here


@pytest.fixture
def process_group(tmp_path: Path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def units(model: torch.nn.Module) -> list[str]:
    return [type(m.module).__name__ for m in model.modules() if isinstance(m, FSDP)]


def test_policy_wraps_each_llama_block_of_a_lora_model(process_group) -> None:
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4
    )
    model = LoraAdapter(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]).apply(LlamaForCausalLM(config))
    before = {n for n, p in model.named_parameters() if p.requires_grad}
    wrapped = FSDP(model, auto_wrap_policy=TransformerBlockPolicy(), use_orig_params=True, device_id=CPU)
    assert units(wrapped).count("LlamaDecoderLayer") == 3 and len(units(wrapped)) == 4  # 3 blocks + the root
    after = {clean_parameter_name(n) for n, p in wrapped.named_parameters() if p.requires_grad}
    assert after == before and any("_fsdp_wrapped_module" in n for n, _ in wrapped.named_parameters())
    loss = wrapped(input_ids=torch.randint(0, 64, (2, 8)), labels=torch.randint(0, 64, (2, 8))).loss
    loss.backward()  # the sharded model trains


def test_policy_learns_nanogpt_blocks(process_group) -> None:
    model = NanoGPT(NanoGPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16))
    wrapped = FSDP(model, auto_wrap_policy=TransformerBlockPolicy(), use_orig_params=True, device_id=CPU)
    assert units(wrapped) == ["NanoGPT", "Block", "Block"]


def test_named_blocks_without_a_model_hint() -> None:
    policy = TransformerBlockPolicy(block_names=["Linear"])
    assert policy(torch.nn.Linear(2, 2), recurse=False, nonwrapped_numel=4)
    assert not policy(torch.nn.ReLU(), recurse=False, nonwrapped_numel=0)
    assert policy(torch.nn.ReLU(), recurse=True, nonwrapped_numel=0)

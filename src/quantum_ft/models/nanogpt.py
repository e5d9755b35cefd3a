"""NanoGPT (Karpathy's minimal GPT) as a transformers model, so checkpoints, artifacts, save_pretrained and
AutoModelForCausalLM work for it as for any hub model. Pre-LayerNorm blocks, causal self-attention through
scaled_dot_product_attention, GELU MLP (4x), learned positions; the LM head is not tied to the embedding."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from quantum_ft.models.base import ModelSource, build_seeded
from quantum_ft.utils.dtypes import resolve_dtype


class NanoGPTConfig(PretrainedConfig):
    model_type = "qft_nanogpt"

    def __init__(
        self,
        vocab_size: int = 65,
        block_size: int = 32,
        n_embd: int = 64,
        n_layer: int = 2,
        n_head: int = 8,
        dropout: float = 0.0,
        bias: bool = True,
        **kwargs: Any,
    ) -> None:
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}.")
        self.vocab_size, self.block_size, self.n_embd = vocab_size, block_size, n_embd
        self.n_layer, self.n_head, self.dropout, self.bias = n_layer, n_head, dropout, bias
        super().__init__(**kwargs)


class Block(nn.Module):
    def __init__(self, c: NanoGPTConfig) -> None:
        super().__init__()
        self.n_head, self.dropout = c.n_head, c.dropout
        self.ln_1 = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.ln_2 = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.mlp_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.c_proj(y.transpose(1, 2).reshape(b, t, c)))
        return x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)))))


class NanoGPT(PreTrainedModel):
    config_class = NanoGPTConfig
    base_model_prefix = "nanogpt"
    main_input_name = "input_ids"
    _no_split_modules = ["Block"]  # the transformer block: one FSDP unit each

    def __init__(self, config: NanoGPTConfig) -> None:
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, **_: Any) -> CausalLMOutput:
        t = input_ids.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"Sequence of {t} tokens exceeds the model's block_size={self.config.block_size}.")
        x = self.drop(self.wte(input_ids) + self.wpe(torch.arange(t, device=input_ids.device)))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if labels is not None:  # the Hugging Face convention: labels are the inputs, shifted here
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutput(loss=loss, logits=logits)


AutoConfig.register(NanoGPTConfig.model_type, NanoGPTConfig, exist_ok=True)
AutoModelForCausalLM.register(NanoGPTConfig, NanoGPT, exist_ok=True)


class NanoGPTSource(ModelSource):
    """A freshly initialised NanoGPT (seeded). Its tokenizer comes from the text data (char or byte level)."""

    def __init__(self, name: str, seed: int = 0, dtype: str = "float32", **architecture: Any) -> None:
        """`architecture`: NanoGPTConfig's fields (vocab_size, block_size, n_embd, n_layer, n_head, dropout, bias)."""
        self.name, self.seed, self.dtype = name, seed, dtype
        self.config = NanoGPTConfig(**architecture)

    def load_tokenizer(self) -> None:
        return None

    def load_model(self, quantization_config: Any | None = None) -> NanoGPT:
        if quantization_config is not None:
            raise ValueError("NanoGPT models are trained in full precision: use adapter=none or lora, not qlora.")
        return build_seeded(lambda: NanoGPT(self.config), self.seed).to(resolve_dtype(self.dtype))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seed": self.seed, **self.config.to_diff_dict()}

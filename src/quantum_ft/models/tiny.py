"""A small random Llama-architecture model with the real SmolLM2 tokenizer: fast enough for tests."""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from quantum_ft.models.base import ModelSource, build_seeded
from quantum_ft.models.bundled import BundledGGUFModel
from quantum_ft.utils.dtypes import resolve_dtype


class TinyRandomModel(ModelSource):
    def __init__(
        self,
        tokenizer_source: BundledGGUFModel,
        name: str = "tiny-llama",
        seed: int = 0,
        dtype: str = "float32",
        **architecture: int,
    ) -> None:
        """`architecture`: LlamaConfig sizes (hidden_size, intermediate_size, num_hidden_layers, ...), from
        conf/model/tiny.yaml."""
        self.dtype = dtype
        self.name = name
        self.tokenizer_source = tokenizer_source
        self.arch = {"max_position_embeddings": 2048, **architecture}
        self.seed = seed

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        return self.tokenizer_source.load_tokenizer()

    def config(self) -> LlamaConfig:
        tok = self.load_tokenizer()
        return LlamaConfig(
            vocab_size=len(tok),
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            tie_word_embeddings=True,
            **self.arch,
        )

    def load_model(self, quantization_config: Any | None = None) -> PreTrainedModel:
        """Same seed, same weights: the base reference in an artifact is enough to rebuild it."""
        config = self.config()
        model = build_seeded(lambda: LlamaForCausalLM(config), self.seed).to(resolve_dtype(self.dtype))
        if quantization_config is not None:
            # bitsandbytes quantises on load: round-trip through a temporary directory.
            import tempfile

            from transformers import AutoModelForCausalLM

            with tempfile.TemporaryDirectory() as tmp:
                model.save_pretrained(tmp)
                model = AutoModelForCausalLM.from_pretrained(
                    tmp, quantization_config=quantization_config, dtype=resolve_dtype(self.dtype)
                )
        return model

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seed": self.seed, **self.arch}

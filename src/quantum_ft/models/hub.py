"""Models from the Hugging Face hub (Qwen2.5, Llama 3.2, Gemma 3), pinned by revision.

Offline, a model that is not in the local cache fails at once with a message that says how to provide it,
instead of transformers' retry loop against an unreachable hub.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from quantum_ft.models.base import ModelUnavailableError, PretrainedSource, finish_tokenizer


def hub_reachable(timeout_s: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


class HubModel(PretrainedSource):
    def __init__(
        self,
        name: str,
        repo_id: str,
        revision: str = "main",
        local_path: str | None = None,
        trust_remote_code: bool = False,
        dtype: str = "float32",
    ) -> None:
        self.name = name
        self.dtype = dtype
        self.repo_id = repo_id
        self.revision = revision
        self.local_path = local_path
        self.trust_remote_code = trust_remote_code
        self._checked = False

    def pretrained_dir(self) -> str:
        if self.local_path:
            path = Path(self.local_path).expanduser()
            if not (path / "config.json").is_file():
                raise ModelUnavailableError(
                    f"model.local_path={self.local_path!r} for {self.name} is not a model directory "
                    "(no config.json in it). Point it at a folder saved with save_pretrained or a hub snapshot."
                )
            return str(path)
        self._check_available()
        return self.repo_id

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if not self.local_path:
            kwargs["revision"] = self.revision
        return kwargs

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        return finish_tokenizer(AutoTokenizer.from_pretrained(self.pretrained_dir(), **self.from_pretrained_kwargs()))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "repo_id": self.repo_id,
            "revision": self.revision,
            "local_path": self.local_path,
        }

    def _check_available(self) -> None:
        if self._checked:
            return
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(self.repo_id, "config.json", revision=self.revision)
        if not isinstance(cached, str) and not hub_reachable():
            raise ModelUnavailableError(
                f"Model {self.name} ({self.repo_id}@{self.revision}) is not in the Hugging Face cache "
                f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the hub cannot be reached. Either\n"
                f"  - download it where there is network: huggingface-cli download {self.repo_id} "
                f"--revision {self.revision}, and copy the cache here (set HF_HOME to it), or\n"
                f"  - pass a local copy: model.local_path=/path/to/{self.repo_id.split('/')[-1]}\n"
                "Offline, the embedded default runs with model=smollm2_135m."
            )
        self._checked = True

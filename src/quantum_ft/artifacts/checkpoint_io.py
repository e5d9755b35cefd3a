"""Lightning checkpoint I/O that writes atomically (a crash mid-write never replaces a good checkpoint) and reads
weights-only (a checkpoint is data: loading one never runs code from it)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from quantum_ft.utils.io import atomic_write


def _local(path: str) -> bool:
    protocol = get_filesystem(path).protocol
    return protocol in ("file", ("file", "local")) or "file" in protocol


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str, storage_options: Any | None = None) -> None:
        if not _local(str(path)):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path: str, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Always weights-only: torch refuses any object in the file that is not a tensor or a plain container."""
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)

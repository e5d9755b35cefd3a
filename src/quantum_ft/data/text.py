"""Raw text for the plain causal-LM objective (NanoGPT, DiLoCo, DDP): char- or byte-level tokens, a train /
validation split, fixed-length windows served by the resumable, rank-sharded sampler (so each worker of a
multi-process run reads its own shard)."""

from __future__ import annotations

import json
import logging
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from quantum_ft.data.base import DataModule
from quantum_ft.data.formats import DataFormatError
from quantum_ft.utils.config import resource
from quantum_ft.utils.paths import cache_root

log = logging.getLogger(__name__)
ENWIK8_URL = "http://mattmahoney.net/dc/enwik8.zip"


class CharTokenizer:
    """One id per distinct character of the corpus (sorted), as nanoGPT's shakespeare_char."""

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    def encode(self, text: str) -> list[int]:
        return [self.index[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def __len__(self) -> int:
        return len(self.chars)

    def save_pretrained(self, directory: str | Path) -> None:
        Path(directory, "char_vocab.json").write_text(json.dumps({"chars": self.chars}))


class ByteTokenizer:
    """Bytes 0..255: a vocabulary that fits any file."""

    def encode(self, data: bytes) -> list[int]:
        return list(data)

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def __len__(self) -> int:
        return 256

    def save_pretrained(self, directory: str | Path) -> None:
        Path(directory, "byte_vocab.json").write_text(json.dumps({"bytes": 256}))


class Windows(Dataset):
    """Every window of block_size + 1 tokens starting at a multiple of `stride`."""

    def __init__(self, tokens: torch.Tensor, block_size: int, stride: int = 1) -> None:
        self.tokens, self.block_size, self.stride = tokens, block_size, stride

    def __len__(self) -> int:
        return (len(self.tokens) - self.block_size - 1) // self.stride + 1

    def __getitem__(self, i: int) -> torch.Tensor:
        start = i * self.stride
        return self.tokens[start : start + self.block_size]


@dataclass
class TextStats:
    source: str
    tokenizer: str
    vocab_size: int
    train_tokens: int
    val_tokens: int
    train_windows: int
    val_windows: int

    def table(self) -> str:
        rows = asdict(self)
        width = max(map(len, rows))
        return "\n".join(
            f"{k.replace('_', ' '):<{width}}  {v:,}" if isinstance(v, int) else f"{k:<{width}}  {v}"
            for k, v in rows.items()
        )


def enwik8_path() -> Path:
    """The enwik8 file in the cache, downloaded (once) when the network allows."""
    target = cache_root() / "data" / "enwik8"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = target.with_suffix(".zip")
    try:
        log.info("Downloading enwik8 from %s", ENWIK8_URL)
        urllib.request.urlretrieve(ENWIK8_URL, archive)
        with zipfile.ZipFile(archive) as z:
            z.extract("enwik8", target.parent)
    except (OSError, zipfile.BadZipFile) as e:
        archive.unlink(missing_ok=True)
        raise DataFormatError(
            f"enwik8 is not in the cache ({target}) and could not be downloaded from {ENWIK8_URL}: {e}. "
            f"Download and unzip it elsewhere, then copy the file `enwik8` to {target} "
            "(or use data.path=/path/to/enwik8)."
        ) from e
    archive.unlink(missing_ok=True)
    return target


class TextDataModule(DataModule):
    drop_last = True  # every training batch full: workers of a multi-process run step together

    def __init__(
        self,
        tokenizer: Any = None,  # unused: text data brings its own tokenizer (the model source has none)
        path: str | None = None,
        name: str | None = None,
        level: str = "char",
        block_size: int = 32,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.1,
        splits: list[int] | None = None,
        val_windows: int = 512,
        vocab_size: int | None = None,
        seed: int = 42,
    ) -> None:
        super().__init__()
        if (path is None) == (name is None):
            raise DataFormatError(
                "Text data needs exactly one of `data.path` (a file) or `data.name` (tiny_shakespeare, enwik8)."
            )
        if level not in ("char", "byte"):
            raise DataFormatError(f"data.level={level!r}: choose char or byte.")
        self.path, self.name, self.level = path, name, level
        self.block_size, self.batch_size = block_size, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_fraction, self.splits, self.val_windows = val_fraction, splits, val_windows
        self.vocab_size, self.seed = vocab_size, seed
        self.tokenizer: CharTokenizer | ByteTokenizer | None = None
        self.train_set: Windows | None = None
        self.val_set: Windows | None = None

    def _source(self) -> Path:
        if self.name == "tiny_shakespeare":
            return Path(resource("tiny_shakespeare.txt"))
        if self.name == "enwik8":
            return enwik8_path()
        if self.name is not None:
            raise DataFormatError(f"Unknown text dataset {self.name!r}: use tiny_shakespeare, enwik8 or data.path.")
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise DataFormatError(f"Text file {path} does not exist (data.path).")
        return path

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        source = self._source()
        raw = source.read_bytes()
        if self.level == "byte":
            self.tokenizer = ByteTokenizer()
            tokens = torch.tensor(list(raw), dtype=torch.long)
        else:
            text = raw.decode("utf-8")
            self.tokenizer = CharTokenizer("".join(sorted(set(text))))
            tokens = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        if self.vocab_size is not None and len(self.tokenizer) > self.vocab_size:
            raise DataFormatError(
                f"{source} has {len(self.tokenizer)} distinct {self.level}s but the model's vocabulary holds "
                f"{self.vocab_size}: set model.vocab_size={len(self.tokenizer)} (or use data.level=byte)."
            )
        if self.splits:  # explicit token counts, e.g. enwik8's 90M / 5M / 5M
            n_train, n_val = self.splits[0], self.splits[1]
        else:
            n_val = int(len(tokens) * self.val_fraction)
            n_train = len(tokens) - n_val
        train, val = tokens[:n_train], tokens[n_train : n_train + n_val]
        if len(train) <= self.block_size + 1 or len(val) <= self.block_size + 1:
            raise DataFormatError(f"{source} is too short for block_size={self.block_size} with this split.")
        self.train_set = Windows(train, self.block_size)
        val_set = Windows(val, self.block_size, stride=self.block_size)  # disjoint windows
        self.val_set = torch.utils.data.Subset(val_set, range(min(self.val_windows, len(val_set))))
        self.stats = TextStats(
            str(source), self.level, len(self.tokenizer), len(train), len(val), len(self.train_set), len(self.val_set)
        )

    def collate(self, windows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        ids = torch.stack(windows)
        return {"input_ids": ids, "labels": ids}

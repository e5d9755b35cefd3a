"""The SFT data pipeline as a LightningDataModule: load and normalise every configured dataset, mix them by
weight, split off validation, encode with the chat template (cached on disk), optionally pack, and serve
right-padded batches from a resumable sampler."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from quantum_ft.data.encode import IGNORE_INDEX, Encoded, encode_conversation
from quantum_ft.data.formats import DataFormatError, read_hub_records, read_records, to_messages
from quantum_ft.data.resumable import ResumableDataModule
from quantum_ft.data.sampler import ResumableBatchSampler
from quantum_ft.utils.io import atomic_torch_save

log = logging.getLogger(__name__)


@dataclass
class DatasetSpec:
    """One source: a local JSON/JSONL `path` or a hub `name`, its record format and mixing weight."""

    path: str | None = None
    name: str | None = None
    subset: str | None = None
    split: str = "train"
    format: str = "auto"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if (self.path is None) == (self.name is None):
            raise DataFormatError(f"A dataset needs exactly one of `path` or `name`, got {asdict(self)}.")
        if self.weight <= 0:
            raise DataFormatError(f"Dataset weight must be > 0, got {self.weight} for {self.label}.")

    @property
    def label(self) -> str:
        return self.path or f"{self.name}:{self.split}"

    def read(self, max_samples: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The first `max_samples` records (all with None), each with its origin ("file:line")."""
        raw = read_records(self.path) if self.path else read_hub_records(self.name, self.split, self.subset)
        return raw[:max_samples] if max_samples is not None else raw

    def fingerprint(self) -> str:
        if self.path:
            stat = Path(self.path).expanduser().stat()
            return f"{Path(self.path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        return self.label


@dataclass
class DataStats:
    records: dict[str, int] = field(default_factory=dict)
    train_samples: int = 0
    val_samples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    dropped_no_target: int = 0
    max_len: int = 0
    mean_len: float = 0.0

    def table(self) -> str:
        rows = [("records (" + k + ")", v) for k, v in self.records.items()]
        rows += [(k.replace("_", " "), v) for k, v in asdict(self).items() if k != "records"]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v:,.1f}" if isinstance(v, float) else f"{k:<{width}}  {v:,}" for k, v in rows)


class SFTDataModule(ResumableDataModule):
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        datasets: list[dict[str, Any]],
        cutoff_len: int = 1024,
        max_samples: int | None = None,
        val_size: float | int = 0.1,
        train_on_inputs: bool = False,
        packing: bool = False,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 42,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if not datasets:
            raise DataFormatError("`data.datasets` is empty: configure at least one dataset.")
        self.tokenizer = tokenizer
        self.specs = [DatasetSpec(**dict(d)) for d in datasets]
        self.cutoff_len = cutoff_len
        self.max_samples = max_samples
        self.val_size = val_size
        self.train_on_inputs = train_on_inputs
        self.packing = packing
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.train_set: list[Encoded] = []
        self.val_set: list[Encoded] = []
        self.stats = DataStats()

    # ---------------------------------------------------------------- preparation
    def setup(self, stage: str | None = None) -> None:
        if self.train_set:
            return
        cache = self._cache_path()
        if cache is not None and cache.is_file():
            blob = torch.load(cache, weights_only=False)
            self.train_set, self.val_set, self.stats = blob["train"], blob["val"], blob["stats"]
            log.info("Loaded tokenised data from cache %s", cache)
            return
        self.train_set, self.val_set, self.stats = self._build()
        if cache is not None:
            atomic_torch_save({"train": self.train_set, "val": self.val_set, "stats": self.stats}, cache)

    def _build(self) -> tuple[list[Encoded], list[Encoded], DataStats]:
        stats = DataStats()
        rng = random.Random(self.seed)
        conversations = []
        for spec in self.specs:
            messages = []
            for origin, record in spec.read(self.max_samples):
                if not isinstance(record, dict):
                    raise DataFormatError(f"{origin}: a record must be a JSON object, got {type(record).__name__}.")
                try:
                    messages.append(to_messages(record, spec.format))
                except (DataFormatError, KeyError, TypeError, IndexError) as e:
                    raise DataFormatError(f"{origin}: {e}") from e
            stats.records[spec.label] = len(messages)
            conversations += weighted(messages, spec.weight, rng)
        if not conversations:
            raise DataFormatError(f"No usable record in {[s.label for s in self.specs]}: every dataset is empty.")
        rng.shuffle(conversations)
        encoded = []
        for messages in conversations:
            e = encode_conversation(self.tokenizer, messages, self.cutoff_len, self.train_on_inputs)
            stats.truncated += e.truncated
            if all(label == IGNORE_INDEX for label in e.labels):
                stats.dropped_no_target += 1  # truncation cut off every answer token
                continue
            encoded.append(e)
        if not encoded:
            raise DataFormatError(
                f"No record keeps an answer token within cutoff_len={self.cutoff_len}; raise `data.cutoff_len`."
            )
        n_val = val_count(self.val_size, len(encoded))
        val, train = encoded[:n_val], encoded[n_val:]
        if self.packing:
            train = pack(train, self.cutoff_len)
        lengths = [len(e.input_ids) for e in encoded]
        stats.train_samples, stats.val_samples = len(train), len(val)
        stats.tokens = sum(lengths)
        stats.trained_tokens = sum(sum(lab != IGNORE_INDEX for lab in e.labels) for e in encoded)
        stats.max_len, stats.mean_len = max(lengths), sum(lengths) / len(lengths)
        if stats.truncated:
            log.warning(
                "%d of %d samples were longer than cutoff_len=%d and were truncated (%d lost every answer token "
                "and were dropped).",
                stats.truncated,
                len(conversations),
                self.cutoff_len,
                stats.dropped_no_target,
            )
        return train, val, stats

    def _cache_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        tok = self.tokenizer
        key = json.dumps(
            {
                "v": 1,
                "datasets": [(asdict(s), s.fingerprint()) for s in self.specs],
                "tokenizer": [
                    tok.name_or_path,
                    len(tok),
                    hashlib.sha256(str(tok.chat_template).encode()).hexdigest(),
                ],
                "cutoff_len": self.cutoff_len,
                "max_samples": self.max_samples,
                "val_size": self.val_size,
                "train_on_inputs": self.train_on_inputs,
                "packing": self.packing,
                "seed": self.seed,
            },
            sort_keys=True,
        )
        return self.cache_dir / f"sft-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"

    # ---------------------------------------------------------------- loaders
    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.train_sampler(len(self.train_set), self.batch_size))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_sampler(len(self.val_set), self.eval_batch_size))

    def _loader(self, data: list[Encoded], sampler: ResumableBatchSampler) -> DataLoader:
        return DataLoader(
            data,
            batch_sampler=sampler,
            collate_fn=Collator(self.tokenizer.pad_token_id),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


class Collator:
    """Right-pad a list of samples to the longest one; padding carries no loss and no attention."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, samples: list[Encoded]) -> dict[str, torch.Tensor]:
        width = max(len(s.input_ids) for s in samples)
        ids = torch.full((len(samples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(samples), width), dtype=torch.long)
        for i, s in enumerate(samples):
            n = len(s.input_ids)
            ids[i, :n] = torch.tensor(s.input_ids)
            labels[i, :n] = torch.tensor(s.labels)
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def pack(samples: list[Encoded], cutoff_len: int) -> list[Encoded]:
    """Concatenate whole samples, in order, into sequences of at most `cutoff_len` tokens. Attention spans
    the packed neighbours (the usual trade: fewer pad tokens, a little cross-sample context)."""
    packed: list[Encoded] = []
    ids: list[int] = []
    labels: list[int] = []
    for s in samples:
        if ids and len(ids) + len(s.input_ids) > cutoff_len:
            packed.append(Encoded(ids, labels, False))
            ids, labels = [], []
        ids, labels = ids + s.input_ids, labels + s.labels
    if ids:
        packed.append(Encoded(ids, labels, False))
    return packed


def val_count(val_size: float | int, n: int) -> int:
    """How many of `n` samples go to validation: an int counts them, a float is a fraction (at least one when
    not zero); refused when nothing would be left to train on."""
    n_val = val_size if isinstance(val_size, int) else int(round(n * val_size))
    if val_size and n_val < 1:
        n_val = 1
    if n_val >= n:
        raise DataFormatError(f"val_size={val_size} leaves no training sample out of {n}.")
    return n_val


def weighted(items: list[Any], weight: float, rng: random.Random) -> list[Any]:
    """`weight` copies of the list: whole copies for the integer part, a random subset for the fraction."""
    whole, frac = int(math.floor(weight)), weight - math.floor(weight)
    out = items * whole
    if frac > 0:
        out += rng.sample(items, int(round(frac * len(items))))
    return out


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

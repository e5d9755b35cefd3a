"""The SFT data pipeline as a LightningDataModule: load and normalise every configured dataset, mix them by
weight, split off validation, encode with the chat template (cached on disk), optionally pack (attention kept
inside each sample), and serve right-padded batches from a resumable sampler, optionally grouped by length."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from quantum_ft.data.encode import IGNORE_INDEX, TOKEN_COUNTS, Encoded, encode_conversation
from quantum_ft.data.formats import DataFormatError, to_messages
from quantum_ft.data.records import DatasetSpec, RecordsDataModule, weighted
from quantum_ft.utils.io import atomic_write
from quantum_ft.utils.text import pad

log = logging.getLogger(__name__)
CACHE_VERSION = 3  # 3: position ids of packed sequences; 2: numpy arrays (never unpickled); 1 a torch pickle


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


class SFTDataModule(RecordsDataModule):
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        datasets: list[dict[str, Any]],
        cutoff_len: int = 1024,
        train_on_inputs: bool = False,
        packing: bool = False,
        group_by_length: bool = False,
        cache_dir: str | None = None,
        **records: Any,
    ) -> None:
        super().__init__(tokenizer, datasets, **records)
        self.group_by_length = group_by_length
        self.cutoff_len = cutoff_len
        self.train_on_inputs = train_on_inputs
        self.packing = packing
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.stats = DataStats()

    # ---------------------------------------------------------------- preparation
    def setup(self, stage: str | None = None) -> None:
        if self.train_set:
            return
        cache = self._cache_path()
        if cache is not None and cache.is_file():
            try:
                self.train_set, self.val_set, self.stats = read_cache(cache)
                log.info("Loaded tokenised data from cache %s", cache)
                return
            except (ValueError, KeyError, OSError) as e:  # not ours, damaged, or an object array: rebuilt
                log.warning("Ignoring the tokenised-data cache %s (%s); rebuilding it.", cache, e)
        self.train_set, self.val_set, self.stats = self._build()
        if cache is not None:
            write_cache(cache, self.train_set, self.val_set, self.stats)

    def _conversations(self, spec: DatasetSpec, stats: DataStats) -> list[Any]:
        messages = []
        for origin, record in self.records(spec):
            if not isinstance(record, dict):
                raise DataFormatError(f"{origin}: a record must be a JSON object, got {type(record).__name__}.")
            try:
                messages.append(to_messages(record, spec.format))
            except (DataFormatError, KeyError, TypeError, IndexError) as e:
                raise DataFormatError(f"{origin}: {e}") from e
        stats.records[spec.label] = len(messages)
        return messages

    def _encode(self, conversations: list[Any], stats: DataStats) -> list[Encoded]:
        encoded = []
        for messages in conversations:
            e = encode_conversation(self.tokenizer, messages, self.cutoff_len, self.train_on_inputs)
            stats.truncated += e.truncated
            if all(label == IGNORE_INDEX for label in e.labels):
                stats.dropped_no_target += 1  # truncation cut off every answer token
                continue
            encoded.append(e)
        return encoded

    def _build(self) -> tuple[list[Encoded], list[Encoded], DataStats]:
        stats = DataStats()
        rng = random.Random(self.seed)
        conversations = []
        for spec in self.specs:
            conversations += weighted(self._conversations(spec, stats), spec.weight, rng)
        if not conversations:
            raise DataFormatError(f"No usable record in {[s.label for s in self.specs]}: every dataset is empty.")
        rng.shuffle(conversations)
        held_out = None
        if self.val_specs:
            held_out = self._encode([m for spec in self.val_specs for m in self._conversations(spec, stats)], stats)
        encoded = self._encode(conversations, stats)
        if not encoded:
            raise DataFormatError(
                f"No record keeps an answer token within cutoff_len={self.cutoff_len}; raise `data.cutoff_len`."
            )
        train, val = self.split(encoded, held_out)
        encoded = train + val
        total = len(conversations) + (len(held_out) if held_out is not None else 0)
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
                total,
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
                "v": CACHE_VERSION,
                "datasets": [(asdict(s), s.fingerprint()) for s in self.specs],
                "val_datasets": [(asdict(s), s.fingerprint()) for s in self.val_specs],
                "transform": repr(self.transform),
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
        return self.cache_dir / f"sft-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"

    def sample_lengths(self) -> list[int]:
        return [len(s.input_ids) for s in self.train_set]

    def collate(self, samples: list[Encoded]) -> dict[str, torch.Tensor]:
        """Right-pad to the longest sample; padding carries no loss and no attention.

        Packed sequences carry `position_ids` and no `attention_mask`: transformers then reads each restart of the
        positions as a new sequence and masks attention block-diagonally (varlen kernels under flash-attention).
        Padding gets positions of its own segment, so no real token attends to it; `token_counts` holds each row's
        real tokens (for throughput: nothing else tells padding apart)."""
        ids = [s.input_ids for s in samples]
        batch = {
            "input_ids": pad(ids, self.tokenizer.pad_token_id),
            "labels": pad([s.labels for s in samples], IGNORE_INDEX),
        }
        if any(s.position_ids is not None for s in samples):
            width = batch["input_ids"].shape[1]
            positions = [s.position_ids or list(range(len(s.input_ids))) for s in samples]
            batch["position_ids"] = torch.tensor([p + list(range(width - len(p))) for p in positions])
            batch[TOKEN_COUNTS] = torch.tensor([len(i) for i in ids])
        else:
            batch["attention_mask"] = pad([[1] * len(i) for i in ids], 0)
        return batch


def pack(samples: list[Encoded], cutoff_len: int) -> list[Encoded]:
    """Concatenate whole samples, in order, into sequences of at most `cutoff_len` tokens, without cross-sample
    attention: positions restart at 0 for each sample (collate turns that into a block-diagonal mask), and the
    first token of each sample is not a target of its predecessor's last token. Each sample's loss is the loss it
    has alone (tested to 1e-5)."""
    packed: list[Encoded] = []
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for s in samples:
        if ids and len(ids) + len(s.input_ids) > cutoff_len:
            packed.append(Encoded(ids, labels, False, positions))
            ids, labels, positions = [], [], []
        first = s.labels[:1] if not ids else [IGNORE_INDEX]  # a sample's first token is never predicted alone
        ids, labels = ids + s.input_ids, labels + first + s.labels[1:]
        positions = positions + list(range(len(s.input_ids)))
    if ids:
        packed.append(Encoded(ids, labels, False, positions))
    return packed


def write_cache(path: Path, train: list[Encoded], val: list[Encoded], stats: DataStats) -> None:
    """Plain arrays in an .npz (token ids, labels, lengths, truncation flags per split) and the stats as JSON
    text: nothing in the file can carry code, and np.load reads it with allow_pickle=False."""
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps({"version": CACHE_VERSION, "stats": asdict(stats)}))}
    for name, samples in (("train", train), ("val", val)):
        arrays[f"{name}_ids"] = np.array([t for s in samples for t in s.input_ids], dtype=np.int64)
        arrays[f"{name}_labels"] = np.array([t for s in samples for t in s.labels], dtype=np.int64)
        arrays[f"{name}_lengths"] = np.array([len(s.input_ids) for s in samples], dtype=np.int64)
        arrays[f"{name}_truncated"] = np.array([s.truncated for s in samples], dtype=bool)
        if any(s.position_ids is not None for s in samples):
            arrays[f"{name}_positions"] = np.array([t for s in samples for t in s.position_ids or []], dtype=np.int64)

    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, save)


def read_cache(path: Path) -> tuple[list[Encoded], list[Encoded], DataStats]:
    with np.load(path, allow_pickle=False) as blob:
        meta = json.loads(str(blob["meta"]))
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"cache version {meta.get('version')}, expected {CACHE_VERSION}")
        splits = []
        for name in ("train", "val"):
            ids, labels = blob[f"{name}_ids"].tolist(), blob[f"{name}_labels"].tolist()
            ends = np.cumsum(blob[f"{name}_lengths"]).tolist()
            starts = [0, *ends[:-1]]
            flags = blob[f"{name}_truncated"].tolist()
            positions = blob[f"{name}_positions"].tolist() if f"{name}_positions" in blob else None
            splits.append(
                [
                    Encoded(ids[a:b], labels[a:b], t, positions[a:b] if positions is not None else None)
                    for a, b, t in zip(starts, ends, flags)
                ]
            )
    return splits[0], splits[1], DataStats(**meta["stats"])


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

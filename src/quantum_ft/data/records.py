"""Datasets of records (JSON / JSONL files or hub datasets): the sources, an optional record transform (a task that
turns raw records into chat records and filters them, e.g. quantum_ft.qasm.prompts.CircuitTask), their mixing by
weight and the validation split (a fraction of the mix, or datasets of its own), shared by the SFT and the prompt
(GRPO) data modules."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from quantum_ft.data.base import DataModule
from quantum_ft.data.formats import DataFormatError, read_hub_records, read_records


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

    def read(self) -> list[tuple[str, dict[str, Any]]]:
        """Every record, each with its origin ("file:line")."""
        return read_records(self.path) if self.path else read_hub_records(self.name, self.split, self.subset)

    def fingerprint(self) -> str:
        if self.path:
            stat = Path(self.path).expanduser().stat()
            return f"{Path(self.path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        return self.label


class RecordsDataModule(DataModule):
    """The settings every records-based data module takes; subclasses turn records into samples in setup()."""

    def __init__(
        self,
        tokenizer: Any,
        datasets: list[dict[str, Any]],
        max_samples: int | None = None,
        val_size: float | int = 0.1,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 42,
        transform: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        val_datasets: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if not datasets:
            raise DataFormatError("`data.datasets` is empty: configure at least one dataset.")
        self.tokenizer = tokenizer
        self.specs = [DatasetSpec(**dict(d)) for d in datasets]
        self.val_specs = [DatasetSpec(**dict(d)) for d in val_datasets or []]
        if transform is not None and not callable(transform):
            raise DataFormatError(
                f"data.transform must be a record -> record callable given by a `_target_`, got {transform!r}."
            )
        self.transform = transform
        self.max_samples = max_samples
        self.val_size = val_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: list[Any] = []
        self.val_set: list[Any] = []

    def records(self, spec: DatasetSpec) -> list[tuple[str, dict[str, Any]]]:
        """The source's records after the transform (a record it maps to None is left out), the first
        `max_samples` of them."""
        raw = spec.read()
        if self.transform is not None:
            kept = []
            for origin, record in raw:
                try:
                    out = self.transform(record)
                except (KeyError, TypeError, ValueError) as e:
                    raise DataFormatError(f"{origin}: the transform {self.transform!r} failed: {e!r}") from e
                if out is not None:
                    kept.append((origin, out))
            raw = kept
        return raw[: self.max_samples] if self.max_samples is not None else raw

    def split(self, items: list[Any], held_out: list[Any] | None) -> tuple[list[Any], list[Any]]:
        """(train, val): `held_out` when validation datasets are configured, else the first val_size items."""
        if held_out is not None:
            if not held_out:
                raise DataFormatError(f"The validation datasets {[s.label for s in self.val_specs]} are empty.")
            return items, held_out
        n_val = val_count(self.val_size, len(items))
        return items[n_val:], items[:n_val]


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

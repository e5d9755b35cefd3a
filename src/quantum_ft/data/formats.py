"""Read instruction data from JSON / JSONL files or the `datasets` hub and normalise every record to chat
messages ([{"role": ..., "content": ...}]), so that one chat-template renderer serves every format."""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Messages = list[dict[str, str]]
FORMATS = ("auto", "alpaca", "sharegpt", "messages")
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}


class DataFormatError(ValueError):
    """A data file or record that cannot be used, with the place it came from."""


def read_records(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """Records of a .json (a list of objects) or .jsonl file, either gzipped (.gz), each with its origin
    ("file:line")."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataFormatError(f"Data file {path} does not exist. Check `data.datasets[*].path`.")
    gzipped = path.suffix == ".gz"
    suffix = Path(path.stem).suffix if gzipped else path.suffix
    opener = (
        functools.partial(gzip.open, path, "rt", encoding="utf-8")
        if gzipped
        else functools.partial(path.open, encoding="utf-8")
    )
    if suffix == ".jsonl":
        records = []
        with opener() as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    records.append((f"{path}:{lineno}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise DataFormatError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno}).") from e
        return records
    with opener() as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"{path}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno}). "
            "If the file holds one object per line, name it .jsonl."
        ) from e
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a JSON list of records, got {type(data).__name__}.")
    return [(f"{path}[{i}]", record) for i, record in enumerate(data)]


def read_hub_records(name: str, split: str = "train", subset: str | None = None) -> list[tuple[str, dict]]:
    """Records of a `datasets` hub dataset (or a local dataset script/folder)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, subset, split=split)
    except Exception as e:  # datasets raises many types for "not reachable / not found"
        raise DataFormatError(
            f"Could not load dataset {name!r} (split {split!r}) from the hub: {e}. Offline, download it "
            "elsewhere and point `data.datasets[*].path` at a JSON/JSONL export."
        ) from e
    return [(f"{name}[{i}]", dict(r)) for i, r in enumerate(ds)]


def detect_format(record: dict[str, Any]) -> str:
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record and "output" in record:
        return "alpaca"
    raise DataFormatError(
        f"Cannot tell the format of a record with keys {sorted(record)}: expected alpaca "
        "(instruction/input/output), sharegpt (conversations) or messages (messages)."
    )


def to_messages(record: dict[str, Any], fmt: str = "auto") -> Messages:
    fmt = detect_format(record) if fmt == "auto" else fmt
    if fmt == "alpaca":
        return _alpaca(record)
    if fmt == "sharegpt":
        return _sharegpt(record)
    if fmt == "messages":
        return _validated(record["messages"], role_key="role", content_key="content")
    raise DataFormatError(f"Unknown data format {fmt!r}; choose one of {FORMATS}.")


def _alpaca(record: dict[str, Any]) -> Messages:
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise DataFormatError(f"alpaca record needs a string {key!r}; keys are {sorted(record)}.")
    messages: Messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": record["system"]})
    for turn in record.get("history") or []:  # LLaMA-Factory's [[query, response], ...]
        messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    prompt = record["instruction"]
    if record.get("input"):
        prompt = f"{prompt}\n\n{record['input']}"
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
    return messages


def _sharegpt(record: dict[str, Any]) -> Messages:
    turns = record["conversations"]
    messages = []
    if record.get("system"):
        messages.append({"role": "system", "content": record["system"]})
    for turn in turns:
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataFormatError(f"sharegpt turn must be an object with 'from' and 'value', got {turn!r}.")
        role = _SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise DataFormatError(f"sharegpt turn has unknown speaker {turn['from']!r}.")
        messages.append({"role": role, "content": turn["value"]})
    return _validated(messages, role_key="role", content_key="content")


def _validated(messages: Iterable[Any], role_key: str, content_key: str) -> Messages:
    out = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get(content_key), str):
            raise DataFormatError(f"message must be an object with a string {content_key!r}, got {m!r}.")
        if m.get(role_key) not in {"system", "user", "assistant"}:
            raise DataFormatError(f"message role must be system/user/assistant, got {m.get(role_key)!r}.")
        out.append({"role": m[role_key], "content": m[content_key]})
    if not any(m["role"] == "assistant" for m in out):
        raise DataFormatError("conversation has no assistant message: nothing to learn from.")
    return out

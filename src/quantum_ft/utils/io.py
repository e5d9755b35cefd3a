"""Writes that never leave a half-written file or folder in place of a good one, and journals that survive a kill."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Call `write(tmp_path)`, fsync, then rename over `path`: a crash at any point keeps the old file. The file
    gets the old one's permissions, or a new file's under the umask (not mkstemp's owner-only 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_mode() -> int:
    """0666 under the process's umask, read from /proc where it can be (os.umask can only read it by setting it,
    which another thread creating a file at that moment would see)."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines journal written one whole line per write (`append_journal`). A torn last line,
    from a run killed mid-write, is cut off the file, so that the next append starts on a clean line."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as f:
            f.truncate(end)
    return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


def append_journal(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as one write, flushed and fsynced: the file holds the whole line or a torn tail that
    `read_journal` cuts off."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write((json.dumps(record, sort_keys=True) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save of tensors and plain containers (loaded back with weights_only=True)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


@contextlib.contextmanager
def atomic_directory(target: str | Path, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it is renamed to `target`, on error removed.

    `replace=True` swaps out an existing `target`; `replace=False` keeps an existing one (another process that
    finished first wins, as for a shared cache)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists() and replace:
        shutil.rmtree(target)
    try:
        os.rename(tmp, target)
    except OSError:  # replace=False and the target appeared meanwhile
        shutil.rmtree(tmp, ignore_errors=True)

"""A persistent pool of worker processes with a wall-clock cap per item, for CPU work beside training (scoring
generated circuits while the trainer runs forward passes).

Workers are plain subprocesses (`python -m quantum_ft.utils.pool module:function`) that read one JSON item per
line on stdin and answer one JSON line on stdout: nothing is pickled, and a worker imports only what its function
needs (not the trainer's torch and Lightning, as multiprocessing's spawn would re-import the main module). An item
that runs past `timeout_s` gets its worker killed; a worker that dies (a segfault, the OOM killer) is replaced;
either way that item's result is None and the pool goes on. `submit` runs a batch on a background thread and
returns a Future, so the caller overlaps it with its own work.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import select
import selectors
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
STARTUP_S = 120.0  # a worker's imports, on a loaded machine


@dataclass
class PoolStats:
    """Counts over the pool's life: `pools_started` is per process, the rest per pool."""

    items: int = 0
    failed: int = 0
    timeouts: int = 0
    crashes: int = 0
    replaced: int = 0


class _Worker:
    def __init__(self, function: str, warmup: str | None) -> None:
        self.function = function
        command = [sys.executable, "-m", "quantum_ft.utils.pool", function] + ([warmup] if warmup else [])
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env
        )
        self.item: int | None = None
        self.deadline = 0.0

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the worker has imported its function (and warmed up): item deadlines start after that."""
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else ""
        if _parse(line) != {"ready": True}:
            self.kill()
            raise RuntimeError(
                f"a worker process running {self.function} did not start within "
                f"{timeout_s:.0f} s (exit code {self.process.returncode}); its error is above."
            )

    def send(self, index: int, item: Any, timeout_s: float) -> None:
        self.item, self.deadline = index, time.monotonic() + timeout_s
        self.process.stdin.write(json.dumps(item) + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()


class WorkerPool:
    """`workers` processes running `function` (an import path, "package.module:function") on JSON items."""

    pools_started = 0  # in this process: the GRPO test asserts one per run

    def __init__(self, function: str, workers: int = 2, timeout_s: float = 10.0, warmup: str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least one worker, got workers={workers}.")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}.")
        self.function, self.warmup, self.timeout_s = function, warmup, timeout_s
        self.stats = PoolStats()
        self._lock = threading.Lock()
        self._workers = [_Worker(function, warmup) for _ in range(workers)]  # they start in parallel
        for worker in self._workers:
            worker.wait_ready(STARTUP_S)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-pool")
        WorkerPool.pools_started += 1
        atexit.register(self.close)

    @property
    def size(self) -> int:
        return len(self._workers)

    def map(self, items: list[Any]) -> list[Any]:
        """Results in order; None for an item whose worker timed out, died, or whose function raised."""
        with self._lock:
            return self._run(items)

    def submit(self, items: list[Any]) -> Future:
        """map() on a background thread: the Future's result is map's list."""
        return self._thread.submit(self.map, items)

    def _run(self, items: list[Any]) -> list[Any]:
        if not self._workers:
            raise RuntimeError("this worker pool is closed")
        results: list[Any] = [None] * len(items)
        pending = deque(range(len(items)))
        idle = list(self._workers)
        busy: dict[int, _Worker] = {}  # stdout fd -> worker
        selector = selectors.DefaultSelector()
        try:
            while pending or busy:
                while pending and idle:
                    worker = idle.pop()
                    index = pending.popleft()
                    try:
                        worker.send(index, items[index], self.timeout_s)
                    except (BrokenPipeError, OSError):  # it died while idle: replace it, retry the item
                        pending.appendleft(index)
                        idle.append(self._replace(worker, crashed=False))
                        continue
                    busy[worker.process.stdout.fileno()] = worker
                    selector.register(worker.process.stdout, selectors.EVENT_READ)
                wait = max(0.0, min(w.deadline for w in busy.values()) - time.monotonic())
                for key, _ in selector.select(timeout=wait):
                    worker = busy.pop(key.fd)
                    selector.unregister(key.fileobj)
                    line = worker.process.stdout.readline()
                    answer = _parse(line)
                    if answer is None:  # EOF or garbage: the process is gone
                        self._failed("crash", worker.item)
                        idle.append(self._replace(worker, crashed=True))
                        continue
                    if "error" in answer:
                        self._failed("error", worker.item, answer["error"])
                    else:
                        results[worker.item] = answer["result"]
                    worker.item = None
                    idle.append(worker)
                now = time.monotonic()
                for fd, worker in list(busy.items()):
                    if worker.deadline <= now:
                        busy.pop(fd)
                        selector.unregister(worker.process.stdout)
                        self._failed("timeout", worker.item)
                        idle.append(self._replace(worker, crashed=False))
        finally:
            selector.close()
        self.stats.items += len(items)
        return results

    def _failed(self, why: str, index: int | None, detail: str = "") -> None:
        self.stats.failed += 1
        if why == "timeout":
            self.stats.timeouts += 1
        elif why == "crash":
            self.stats.crashes += 1
        else:
            log.debug("worker function raised on item %s: %s", index, detail)

    def _replace(self, worker: _Worker, crashed: bool) -> _Worker:
        worker.kill()
        fresh = _Worker(self.function, self.warmup)
        fresh.wait_ready(STARTUP_S)
        self._workers[self._workers.index(worker)] = fresh
        self.stats.replaced += 1
        return fresh

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        workers, self._workers = self._workers, []
        for worker in workers:
            try:
                worker.process.stdin.close()  # EOF: the worker leaves its loop
                worker.process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
            worker.kill()


def _parse(line: str) -> dict[str, Any] | None:
    try:
        answer = json.loads(line)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _load(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def serve(function: str, warmup: str | None = None) -> None:
    """The worker's loop: one JSON item per stdin line, one {"result"} or {"error"} per stdout line."""
    fn = _load(function)
    if warmup:
        _load(warmup)()
    out = sys.stdout
    sys.stdout = sys.stderr  # a stray print in the function must not corrupt the answers
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            answer = {"result": fn(json.loads(line))}
        except Exception as exc:  # reported to the parent, which scores the item as failed
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    serve(*sys.argv[1:3])

"""The dataset generator: `python -m quantum_ft.qasm.generate` (Hydra; primary config conf/qasm_generate.yaml).

A run is a fixed list of tasks (problem class x instance number), each with its own seed, so the data depends on
the seed only, whatever the worker count or order. Finished tasks go to work/tasks.jsonl as one complete line
each (one write, flushed and fsynced); a rerun in the same output dir skips them, and a torn last line from a
killed run is cut off before anything is appended. At the end the records are split by graph signature into
train / val / test JSONL(.gz) files with a dataset card (README.md, card.json, quality.png)."""

from __future__ import annotations

import gzip
import hashlib
import json
import multiprocessing
import os
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from quantum_ft.utils.io import append_journal, atomic_write, read_journal

from . import problems
from .ansatz import Ansatz
from .optimize import OBJECTIVES
from .records import Skip, instance_records

WORK = "work/tasks.jsonl"
SPLITS = ("train", "val", "test")


class GenerateError(ValueError):
    """A configuration the generator refuses before doing any work, with what to change."""


@dataclass(frozen=True)
class Task:
    index: int
    problem: str
    number: int
    num_qubits: int
    seed: tuple[int, ...]

    @property
    def id(self) -> str:
        return f"{self.problem}/{self.number:05d}"


def settings_of(cfg: DictConfig) -> dict[str, Any]:
    """The plain settings a worker needs, checked: unknown classes / ansatze / objectives and sizes over the cap
    fail here, listing what is known."""
    names = list(cfg.qasm.problems.names)
    for name in names:
        try:
            problems.get(name)
        except KeyError as exc:
            raise GenerateError(exc.args[0]) from None
    ansatz = cfg.qasm.ansatz
    unknown = [k for k in ansatz if k not in {"qaoa", "vqe", "objective", "restarts", "maxiter"}]
    if unknown:
        raise GenerateError(f"unknown ansatz {', '.join(unknown)}; known: qaoa, vqe (adaptive VQE is not built)")
    qaoa_layers = sorted(int(p) for p in ansatz.get("qaoa", {}).get("layers", []))
    vqe_layers = sorted(int(p) for p in ansatz.get("vqe", {}).get("layers", []))
    for kind, layers in (("qaoa", qaoa_layers), ("vqe", vqe_layers)):
        for p in layers:
            try:
                Ansatz(kind, p)
            except ValueError as exc:
                raise GenerateError(str(exc)) from None
    if not qaoa_layers and not vqe_layers:
        raise GenerateError("qasm.ansatz gives no circuit: set qasm.ansatz.qaoa.layers or qasm.ansatz.vqe.layers")
    if ansatz.objective not in OBJECTIVES:
        raise GenerateError(f"unknown objective {ansatz.objective!r}; known: {', '.join(OBJECTIVES)}")
    lo, hi, cap = int(cfg.qasm.sizes.min_qubits), int(cfg.qasm.sizes.max_qubits), int(cfg.verify.max_qubits)
    if hi > cap:
        raise GenerateError(
            f"qasm.sizes.max_qubits={hi} is over the verifier's cap verify.max_qubits={cap}: lower the size or raise"
            " the cap (the exact simulation doubles in cost with every qubit)"
        )
    if lo > hi:
        raise GenerateError(f"qasm.sizes.min_qubits={lo} > max_qubits={hi}")
    if int(cfg.count) < 0:
        raise GenerateError(f"count={cfg.count}: give the number of instances per class (>= 0)")
    splits = {k: float(v) for k, v in cfg.output.splits.items()}
    if set(splits) != set(SPLITS) or abs(sum(splits.values()) - 1) > 1e-9:
        raise GenerateError(f"output.splits must give train, val and test shares summing to 1, got {splits}")
    return {
        "problems": names,
        "count": int(cfg.count),
        "seed": int(cfg.seed),
        "min_qubits": lo,
        "max_qubits_size": hi,
        "max_qubits": cap,
        "max_gates": int(cfg.verify.max_gates),
        "qaoa_layers": qaoa_layers,
        "vqe_layers": vqe_layers,
        "objective": str(ansatz.objective),
        "restarts": int(ansatz.restarts),
        "maxiter": int(ansatz.maxiter),
        "top_k": int(cfg.output.top_k),
        "require_ground_top": bool(cfg.output.require_ground_top),
        "splits": splits,
    }


def plan(settings: dict[str, Any]) -> list[Task]:
    """Every task of the run, in a fixed order; instance i of a class cycles through the class's sizes (from an
    offset fixed by the class name, so small counts still spread over sizes)."""
    tasks = []
    for name in settings["problems"]:
        sizes = [q for q in problems.get(name).sizes(settings["max_qubits_size"]) if q >= settings["min_qubits"]]
        if not sizes:
            continue  # counted in the card as a class with no size in range
        for i in range(settings["count"]):
            seed = (settings["seed"], zlib.crc32(name.encode()), i)
            tasks.append(Task(len(tasks), name, i, sizes[(i + seed[1]) % len(sizes)], seed))
    return tasks


def solve(task: Task, settings: dict[str, Any]) -> dict[str, Any]:
    """One task -> its work line: records, or why there are none."""
    rng = np.random.default_rng(list(task.seed))
    out: dict[str, Any] = {"task": task.id, "index": task.index, "records": [], "dropped": [], "skipped": None}
    inst = problems.get(task.problem).random_instance(rng, task.num_qubits)
    if inst is None:
        out["skipped"] = f"no {task.problem} instance with {task.num_qubits} qubits"
        return out
    try:
        out["records"], out["dropped"] = instance_records(inst, rng, settings)
    except Skip as why:
        out["skipped"] = str(why)
    for k, rec in enumerate(out["records"]):
        rec["id"] = f"{task.id}/{k}"
    return out


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per process: workers already fill the machine


def _solve_star(args: tuple[Task, dict[str, Any]]) -> dict[str, Any]:
    return solve(*args)


def read_work(path: Path) -> dict[str, dict[str, Any]]:
    """Finished tasks from the work file (a torn last line from a killed run is cut off)."""
    return {item["task"]: item for item in read_journal(path)}


def split_of(signature: str, shares: dict[str, float]) -> str:
    """A graph's split from its signature alone: the same graph always lands in the same split."""
    u = int(hashlib.sha256(signature.encode()).hexdigest()[:12], 16) / 16**12
    edge = 0.0
    for name in SPLITS:
        edge += shares[name]
        if u < edge:
            return name
    return SPLITS[-1]


def run(cfg: DictConfig, show_progress: bool = True) -> Path:
    """Generate (or finish) the dataset of `cfg` in cfg.output.dir; returns that dir."""
    settings = settings_of(cfg)
    out_dir = Path(cfg.output.dir)
    work = out_dir / WORK
    if not cfg.output.resume and work.exists() and work.stat().st_size > 0:
        raise GenerateError(f"{work} holds an earlier run: use output.resume=true or another output.dir")
    work.parent.mkdir(parents=True, exist_ok=True)
    settings_file = out_dir / "work" / "settings.json"
    if settings_file.exists() and json.loads(settings_file.read_text()) != settings:
        raise GenerateError(f"{out_dir} was generated with other settings ({settings_file}): use another output.dir")
    settings_file.write_text(json.dumps(settings, indent=1, sort_keys=True))
    tasks = plan(settings)
    done = read_work(work)
    todo = [t for t in tasks if t.id not in done]
    from tqdm import tqdm

    bar = tqdm(
        total=len(tasks), initial=len(tasks) - len(todo), desc="qasm tasks", unit="task", disable=not show_progress
    )

    def keep(item: dict[str, Any]) -> None:
        append_journal(work, item)
        done[item["task"]] = item
        bar.update(1)

    workers = int(cfg.workers)
    if workers <= 1 or len(todo) <= 1:
        _init_worker()
        for t in todo:
            keep(solve(t, settings))
    else:
        ctx = multiprocessing.get_context("spawn")  # no forked torch / BLAS state
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            for item in pool.imap_unordered(_solve_star, [(t, settings) for t in todo], chunksize=1):
                keep(item)
    bar.close()
    finalize(out_dir, tasks, done, settings, gz=bool(cfg.output.gzip))
    if not cfg.output.keep_work:
        work.unlink()
        settings_file.unlink()
        work.parent.rmdir()
    return out_dir


def finalize(
    out_dir: Path, tasks: list[Task], done: dict[str, dict[str, Any]], settings: dict[str, Any], gz: bool = True
) -> None:
    """Split files in task order (deterministic) and the dataset card."""
    from .card import write_card

    rows: dict[str, list[str]] = {s: [] for s in SPLITS}
    records = []
    for t in tasks:
        for rec in done[t.id]["records"]:
            rows[split_of(rec["signature"], settings["splits"])].append(json.dumps(rec, sort_keys=True))
            records.append(rec)
    for name, lines in rows.items():
        text = "".join(line + "\n" for line in lines).encode()
        path = out_dir / (f"{name}.jsonl.gz" if gz else f"{name}.jsonl")

        def dump(tmp: str, text: bytes = text) -> None:
            if gz:
                with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as g:
                    g.write(text)
            else:
                Path(tmp).write_bytes(text)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are data for everyone

        atomic_write(path, dump)
    skipped = Counter(done[t.id]["skipped"] for t in tasks if done[t.id]["skipped"])
    dropped = Counter(reason for t in tasks for reason in done[t.id]["dropped"])
    missing = [n for n in settings["problems"] if not any(t.problem == n for t in tasks)]
    split_counts = {s: len(v) for s, v in rows.items()}
    write_card(out_dir, records, settings, skipped, dropped, missing, split_counts)


def load(path: str | Path) -> list[dict[str, Any]]:
    """Records of one split file (.jsonl or .jsonl.gz)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _main(cfg: DictConfig) -> None:
    out = run(cfg)
    print(f"dataset in {out} (card: {out / 'README.md'})")
    print(OmegaConf.to_yaml(cfg.qasm), end="")


def main() -> None:
    import hydra

    from quantum_ft.utils.config import config_path

    hydra.main(version_base="1.3", config_path=config_path(), config_name="qasm_generate")(_main)()


if __name__ == "__main__":
    main()

"""Rewards for the circuit-writing task, computed by simulating what the model wrote.

Every completion is scored once (`score_completion`, a pure function) into all the components below; each reward
function of the GRPO stage (`CircuitReward(component=...)`, TRL's convention: `f(prompts, completions, **columns)
-> list[float]`) reads one. Every value is in [0, 1] and finite, for any string.

  format       tags asked for (column `tags`): the completion is `<think>..</think> <answer>PROGRAM</answer>`;
               not asked: the completion is the program alone (a code fence allowed)
  compile      the strict verifier accepts the answer (qasm/verify.py, with its caps)
  distribution 1 - JS(p_gen, p_ref), base 2 (bounded in [0, 1], symmetric, finite with zeros), or with
               divergence="kl": 1 / (1 + KL(p_gen || p_ref)), base 2, both smoothed by `epsilon` (the direction
               Agent-Q used: the generated distribution measured against the reference)
  energy       (E_max - <H>) / (E_max - E_0) of the generated state, clipped: 1 at a ground state, 0 at the worst
  ground_mass  the probability the generated state puts on ground states
  correct      1 when every most probable bitstring (ties included) is a ground state: a uniform superposition
               does not win by the accident of index 0
  length       1 at the reference circuit's length, falling linearly to 0 at 0 and at twice that
The physics components are 0 for a program that does not compile or has another qubit count than asked.

Scoring runs in a persistent pool of worker processes (utils/pool.py), shared by every component and created once
per process: `prefetch` starts a batch while the trainer computes log-probabilities; the call that follows waits
only for what is left. An item past `timeout_s`, or whose worker died, scores 0 and is counted in the log.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .hamiltonian import index_of, parse_hamiltonian
from .verify import verify

log = logging.getLogger(__name__)

COMPONENTS = ("format", "compile", "distribution", "energy", "ground_mass", "correct", "length")
COLUMNS = ("num_qubits", "hamiltonian", "ground_states", "reference_circuit")  # what a prompt record must carry
_TAGGED = re.compile(r"(?s)\A<think>(.*?)</think>\s*<answer>(.*?)</answer>\Z")
_ANSWER = re.compile(r"(?s)<answer>(.*?)(?:</answer>|\Z)")
_FENCE = re.compile(r"(?s)```[ \t]*(?:qasm3?|openqasm3?|OPENQASM3?)?[ \t]*\n?(.*?)(?:```|\Z)")
_HEADER = re.compile(r"OPENQASM\s+3")


def extract_answer(text: str) -> str:
    """The program in a completion: inside <answer> tags if any, inside a code fence if any, from the first
    `OPENQASM 3` on, cut after its last statement (trailing prose dropped)."""
    if m := _ANSWER.search(text):
        text = m.group(1)
    if m := _FENCE.search(text):
        text = m.group(1)
    if m := _HEADER.search(text):
        text = text[m.start() :]
    end = max(text.rfind(";"), text.rfind("}"))
    return (text[: end + 1] if end >= 0 else text).strip()


def format_score(text: str, tags: bool) -> float:
    stripped = text.strip()
    if tags:
        m = _TAGGED.match(stripped)
        return float(m is not None and bool(m.group(2).strip()) and bool(m.group(1).strip()))
    program = extract_answer(stripped)
    bare = _FENCE.sub(lambda f: f.group(1), stripped).strip()
    return float(bool(program) and bare == program)


@dataclass(frozen=True)
class Target:
    """What a prompt asks for, as the scorer needs it."""

    num_qubits: int
    energies: np.ndarray
    ground: np.ndarray  # basis-state indices
    reference: np.ndarray | None  # probabilities of the reference circuit
    reference_length: int
    reference_energy: float | None


@functools.lru_cache(maxsize=4096)
def _target(num_qubits: int, hamiltonian: str, ground_states: tuple[str, ...], reference_circuit: str) -> Target:
    energies = parse_hamiltonian(hamiltonian, num_qubits)
    ground = np.array(sorted(index_of(b) for b in ground_states), dtype=np.int64)
    verdict = verify(reference_circuit) if reference_circuit else None
    reference = verdict.probabilities if verdict is not None and verdict.valid else None
    energy = float(reference @ energies) if reference is not None and reference.size == energies.size else None
    return Target(num_qubits, energies, ground, reference, len(reference_circuit or ""), energy)


def target_of(columns: dict[str, Any]) -> Target:
    missing = [c for c in COLUMNS if columns.get(c) is None]
    if missing:
        raise KeyError(f"the prompt record lacks {missing}")
    return _target(
        int(columns["num_qubits"]),
        str(columns["hamiltonian"]),
        tuple(columns["ground_states"]),
        str(columns["reference_circuit"]),
    )


@dataclass(frozen=True)
class CircuitScore:
    """Every component of one completion, plus the raw figures the evaluation tabulates."""

    format: float = 0.0
    compile: float = 0.0
    distribution: float = 0.0
    energy: float = 0.0
    ground_mass: float = 0.0
    correct: float = 0.0
    length: float = 0.0
    kind: str = "unscored"  # the verifier's verdict kind, "wrong_qubits", or why it was not scored
    qubits_match: bool = False
    js: float = 1.0  # base 2, in [0, 1]
    kl: float | None = None  # base 2, KL(p_gen || p_ref)
    expectation: float | None = None
    reference_energy: float | None = None

    def component(self, name: str, divergence: str = "js") -> float:
        if name == "distribution" and divergence == "kl":
            return 0.0 if self.kl is None else 1.0 / (1.0 + self.kl)
        return float(getattr(self, name))


def _entropy_terms(p: np.ndarray, q: np.ndarray) -> float:
    """sum p log2(p / q) over p > 0 (0 log 0 = 0)."""
    keep = p > 0
    return float(np.sum(p[keep] * np.log2(p[keep] / q[keep])))


def divergences(p: np.ndarray, q: np.ndarray, epsilon: float = 1e-10) -> tuple[float, float]:
    """(Jensen-Shannon, KL(p || q)) in bits; KL on distributions smoothed by epsilon and renormalised."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0, None)
    q = np.clip(np.asarray(q, dtype=np.float64), 0, None)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    js = 0.5 * _entropy_terms(p, m) + 0.5 * _entropy_terms(q, m)
    ps, qs = (p + epsilon) / (1 + epsilon * p.size), (q + epsilon) / (1 + epsilon * q.size)
    return float(min(max(js, 0.0), 1.0)), max(_entropy_terms(ps, qs), 0.0)


def score_completion(
    completion: str,
    target: Target,
    tags: bool = False,
    max_qubits: int = 16,
    max_gates: int = 5000,
    max_chars: int = 100_000,
    epsilon: float = 1e-10,
) -> CircuitScore:
    """All components for one completion. Never raises; unscorable input gets zeros with the reason in `kind`."""
    if not isinstance(completion, str):
        return CircuitScore(kind="not_text")
    fmt = format_score(completion[:max_chars], tags) if len(completion) <= max_chars else 0.0
    ref_len = max(target.reference_length, 1)
    length = max(0.0, 1.0 - abs(len(completion) - ref_len) / ref_len)
    base = {"format": fmt, "length": length, "reference_energy": target.reference_energy}
    verdict = verify(extract_answer(completion[: max_chars + 1]), max_qubits, max_gates, max_chars)
    if not verdict.valid:
        return CircuitScore(kind=verdict.kind, **base)
    if verdict.num_qubits != target.num_qubits:
        return CircuitScore(compile=1.0, kind="wrong_qubits", **base)
    probs = verdict.probabilities
    span = float(target.energies.max() - target.energies.min())
    expectation = float(probs @ target.energies)
    energy = 1.0 if span <= 0 else float(np.clip((target.energies.max() - expectation) / span, 0.0, 1.0))
    top = np.flatnonzero(probs >= probs.max() - 1e-9)
    js, kl = (1.0, None) if target.reference is None else divergences(probs, target.reference, epsilon)
    return CircuitScore(
        compile=1.0,
        distribution=1.0 - js if target.reference is not None else 0.0,
        energy=energy,
        ground_mass=float(np.clip(probs[target.ground].sum(), 0.0, 1.0)),
        correct=float(np.isin(top, target.ground).all()),
        kind="ok",
        qubits_match=True,
        js=js,
        kl=kl,
        expectation=expectation,
        **base,
    )


def score_item(item: dict[str, Any]) -> dict[str, Any]:
    """The pool's entry point: {"completion", "columns", "settings"} -> a CircuitScore as a dict (JSON)."""
    try:
        target = target_of(item["columns"])
    except (KeyError, ValueError, TypeError) as exc:
        return asdict(CircuitScore(kind=f"bad_columns: {exc}"))
    tags = bool(item["columns"].get("tags") or False)
    return asdict(score_completion(item["completion"], target, tags, **item.get("settings", {})))


def warm_up() -> None:
    """Pay qiskit's import (0.6 s) once per worker, not on its first item."""
    import qiskit.qasm3  # noqa: F401


@dataclass(frozen=True)
class ScorerSettings:
    workers: int = 2  # processes; 0 scores in the calling process (no wall-clock cap but the verifier's)
    timeout_s: float = 10.0  # per completion
    max_qubits: int = 16
    max_gates: int = 5000
    max_chars: int = 100_000
    epsilon: float = 1e-10


class CircuitScorer:
    """Scores batches of completions (all components at once), remembering the last batches so that every
    component reward of one step reads the same scores; one per settings in a process (`shared`)."""

    _shared: dict[ScorerSettings, CircuitScorer] = {}

    def __init__(self, settings: ScorerSettings) -> None:
        self.settings = settings
        self._pool = None
        self._recent: dict[str, Future | list[CircuitScore]] = {}
        self.failed = 0

    @classmethod
    def shared(cls, settings: ScorerSettings) -> CircuitScorer:
        if settings not in cls._shared:
            cls._shared[settings] = cls(settings)
        return cls._shared[settings]

    @property
    def pool(self):
        if self._pool is None and self.settings.workers > 0:
            from quantum_ft.utils.pool import WorkerPool

            self._pool = WorkerPool(
                "quantum_ft.qasm.rewards:score_item",
                self.settings.workers,
                self.settings.timeout_s,
                warmup="quantum_ft.qasm.rewards:warm_up",
            )
        return self._pool

    def _items(self, completions: Sequence[str], columns: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise KeyError(
                f"the circuit rewards need the prompt columns {list(COLUMNS)}; this dataset lacks {missing}. "
                "Use data=qasm_prompts (quantum_ft.qasm.prompts.CircuitTask in prompt mode) or add them."
            )
        settings = {k: v for k, v in asdict(self.settings).items() if k not in ("workers", "timeout_s")}
        names = [*COLUMNS, "tags"]
        rows = [{k: _plain(columns[k][i]) for k in names if k in columns} for i in range(len(completions))]
        return [{"completion": c, "columns": r, "settings": settings} for c, r in zip(completions, rows)]

    @staticmethod
    def _key(completions: Sequence[str], columns: dict[str, Sequence[Any]]) -> str:
        blob = json.dumps([list(completions), [_plain(v) for v in columns.get("reference_circuit", [])]])
        return hashlib.sha1(blob.encode()).hexdigest()

    def prefetch(self, completions: Sequence[str], columns: dict[str, Sequence[Any]]) -> None:
        """Start scoring a batch in the pool and return at once."""
        key = self._key(completions, columns)
        if key not in self._recent:
            items = self._items(completions, columns)
            self._remember(key, self.pool.submit(items) if self.pool else self._local(items))

    def score(self, completions: Sequence[str], columns: dict[str, Sequence[Any]]) -> list[CircuitScore]:
        key = self._key(completions, columns)
        if key not in self._recent:
            self.prefetch(completions, columns)
        found = self._recent[key]
        if isinstance(found, Future):
            found = self._collect(found.result())
            self._recent[key] = found
        return found

    def _local(self, items: list[dict[str, Any]]) -> list[CircuitScore]:
        return [CircuitScore(**score_item(item)) for item in items]

    def _collect(self, raw: list[dict[str, Any] | None]) -> list[CircuitScore]:
        failed = sum(r is None for r in raw)
        if failed:
            self.failed += failed
            stats = self.pool.stats
            log.warning(
                "%d of %d completions could not be scored in time or their worker died; scored 0 (this run: "
                "%d timeouts, %d crashes, %d workers replaced).",
                failed,
                len(raw),
                stats.timeouts,
                stats.crashes,
                stats.replaced,
            )
        return [CircuitScore(kind="unscored") if r is None else CircuitScore(**r) for r in raw]

    def _remember(self, key: str, value: Future | list[CircuitScore]) -> None:
        self._recent[key] = value
        while len(self._recent) > 64:  # a generation batch of up to 64 chunks scored ahead
            self._recent.pop(next(iter(self._recent)))


def _plain(value: Any) -> Any:
    """Columns as JSON-able Python (Hydra and numpy types out)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class CircuitReward:
    """One component as a GRPO reward function; the components of a run share one scorer and its pool."""

    required_columns = COLUMNS  # checked against the prompt data when fitting starts

    def __init__(self, component: str, divergence: str = "js", scorer: dict[str, Any] | None = None) -> None:
        if component not in COMPONENTS:
            raise ValueError(f"CircuitReward.component {component!r} is not one of {', '.join(COMPONENTS)}.")
        if divergence not in ("js", "kl"):
            raise ValueError(f"CircuitReward.divergence must be 'js' or 'kl', got {divergence!r}.")
        self.component, self.divergence = component, divergence
        self.scorer = CircuitScorer.shared(ScorerSettings(**dict(scorer or {})))

    def prefetch(self, prompts: list[str], completions: list[str], **columns: Any) -> None:
        self.scorer.prefetch(completions, columns)

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float]:
        return [s.component(self.component, self.divergence) for s in self.scorer.score(completions, columns)]

"""The circuit-writing task as chat: a dataset record (qasm/records.py) -> an SFT conversation or a GRPO prompt.

The user turn states the problem, the graph (a compact edge list, not Agent-Q's node-link JSON: a third of the
tokens), what each qubit encodes, the qubit count, the layer count and the ansatz family; the reply is the
verified circuit, optionally as `<think>...</think><answer>...</answer>` when `tags` is set (Agent-Q's GRPO
format, which its own prompt never asked for). A prompt record carries the columns the rewards need
(qasm/rewards.py): the Hamiltonian, the ground states and the reference circuit.

`CircuitTask` is the `transform` of a records data module (conf/data/qasm_sft.yaml, qasm_prompts.yaml): it filters
by class, qubits, layers and ansatz, and picks one of the templates per record, deterministically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM = (
    "You are a helpful quantum circuit design assistant. You write complete OpenQASM 3.0 programs: "
    '`OPENQASM 3.0;`, `include "stdgates.inc";`, one qubit register, straight-line gates with numeric angles.'
)
TEMPLATES = (
    "Generate a quantum circuit in QASM 3.0 with {qubits} qubits and {layers} that solves the {problem} "
    "problem for the following graph.\n{graph}\nUse a {ansatz} circuit. The answer must be valid QASM 3.0 code "
    "with optimal parameters.",
    "Write an OpenQASM 3.0 {ansatz} circuit ({qubits} qubits, {layers}) whose most probable measurement "
    "solves {problem} on this graph:\n{graph}",
    "Problem: {problem}.\n{graph}\nDesign a {p}-layer {ansatz} circuit on {qubits} qubits in OpenQASM 3.0 "
    "with its parameters optimised, so that measuring it gives an optimal solution.",
    "I need a {qubits}-qubit OpenQASM 3.0 program for {problem}. Graph:\n{graph}\nUse a {ansatz} ansatz with "
    "{layers} and give every angle its optimised value.",
    "Solve {problem} with a variational quantum circuit. {graph}\nReturn an OpenQASM 3.0 {ansatz} circuit with "
    "{qubits} qubits and {layers}, parameters already optimised.",
)
TAGS_INSTRUCTION = " Reason briefly inside <think></think>, then give only the program inside <answer></answer>."
ANSATZ_NAMES = {"qaoa": "QAOA (X mixer)", "vqe": "hardware-efficient VQE (RY-RZ layers, CX chain)"}
_ATTRIBUTE_NAMES = {
    "k": "clique size k",
    "root": "root node",
    "colours": "colours",
    "source": "source",
    "sink": "sink",
}


def problem_name(problem_type: str) -> str:
    return problem_type.replace("_", " ")


def describe_graph(record: dict[str, Any]) -> str:
    """Nodes, edges (with weights or capacities), the problem's own parameters and what each qubit means."""
    graph = json.loads(record["graph"])
    attrs = json.loads(record.get("problem_specific_attributes") or "{}")
    arrow = "->" if graph.get("directed") else "-"
    nodes = [n["id"] for n in graph["nodes"]]
    lines = [f"Nodes: {', '.join(map(str, nodes))}."]
    edges = []
    for e in graph.get("edges", []):
        label = f"{e['source']}{arrow}{e['target']}"
        for key in ("weight", "capacity"):
            if key in e and e[key] != 1:
                label += f" ({key} {e[key]:g})"
        edges.append(label)
    if edges:
        lines.append(f"Edges: {', '.join(edges)}.")
    if attrs.get("hyperedges"):
        weights = attrs.get("weights") or [1.0] * len(attrs["hyperedges"])
        hyper = [
            "{" + ", ".join(map(str, h)) + "}" + (f" (weight {w:g})" if w != 1 else "")
            for h, w in zip(attrs["hyperedges"], weights)
        ]
        lines.append(f"Hyperedges: {', '.join(hyper)}.")
    if attrs.get("graph_2_edges") is not None:
        lines.append(f"Second graph's edges: {', '.join(f'{u}-{v}' for u, v in attrs['graph_2_edges'])}.")
    params = [f"{label} {attrs[key]}" for key, label in _ATTRIBUTE_NAMES.items() if key in attrs]
    if params:
        lines.append(f"Parameters: {', '.join(params)}.")
    labels = attrs.get("qubit_labels") or []
    if labels and labels != [f"node {v}" for v in nodes]:
        lines.append("Qubit i is 1 when: " + "; ".join(f"q[{i}] {text}" for i, text in enumerate(labels)) + ".")
    return "\n".join(lines)


def _allowed(value: Any, choices: Sequence[Any] | None) -> bool:
    return choices is None or value in choices


@dataclass(frozen=True)
class CircuitTask:
    """Record -> chat record (`mode="sft"`) or prompt record (`mode="prompt"`), or None when filtered out.

    Its repr names every setting: the SFT token cache keys on it."""

    mode: str = "sft"
    tags: bool = False
    classes: tuple[str, ...] | None = None
    qubits: tuple[int, ...] | None = None
    layers: tuple[int, ...] | None = None
    ansatz: tuple[str, ...] | None = None
    max_circuit_chars: int | None = None  # small instances: the reference circuit's length in characters
    templates: tuple[int, ...] | None = None  # indices into TEMPLATES; None: all of them
    system: str | None = SYSTEM
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("sft", "prompt"):
            raise ValueError(f"CircuitTask.mode must be 'sft' or 'prompt', got {self.mode!r}.")
        for name in ("classes", "qubits", "layers", "ansatz", "templates"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))  # Hydra passes ListConfig
        bad = [t for t in self.templates or () if not 0 <= t < len(TEMPLATES)]
        if bad:
            raise ValueError(
                f"CircuitTask.templates {bad}: there are {len(TEMPLATES)} templates (0-{len(TEMPLATES) - 1})."
            )
        if self.classes is not None:
            from .problems import REGISTRY

            unknown = sorted(set(self.classes) - set(REGISTRY))
            if unknown:
                raise ValueError(
                    f"CircuitTask.classes {unknown} are not problem classes; known: {', '.join(REGISTRY)}."
                )

    def keep(self, record: dict[str, Any]) -> bool:
        return (
            _allowed(record["problem_type"], self.classes)
            and _allowed(record["number_of_qubits"], self.qubits)
            and _allowed(record["number_of_layers"], self.layers)
            and _allowed(record["optimization_type"], self.ansatz)
            and (self.max_circuit_chars is None or len(record["circuit_with_params"]) <= self.max_circuit_chars)
        )

    def user_prompt(self, record: dict[str, Any]) -> str:
        choices = self.templates or tuple(range(len(TEMPLATES)))
        key = f"{self.seed}:{record.get('id', record['signature'])}".encode()
        template = TEMPLATES[choices[int(hashlib.sha1(key).hexdigest(), 16) % len(choices)]]
        text = template.format(
            qubits=record["number_of_qubits"],
            layers=f"{record['number_of_layers']} layer" + ("s" if record["number_of_layers"] != 1 else ""),
            p=record["number_of_layers"],
            problem=problem_name(record["problem_type"]),
            graph=describe_graph(record),
            ansatz=ANSATZ_NAMES[record["optimization_type"]],
        )
        return text + (TAGS_INSTRUCTION if self.tags else "")

    def reply(self, record: dict[str, Any]) -> str:
        circuit = record["circuit_with_params"].strip()
        if not self.tags:
            return circuit
        kind = "QAOA" if record["optimization_type"] == "qaoa" else "hardware-efficient VQE"
        thought = (
            f"{problem_name(record['problem_type']).capitalize()} on {record['number_of_qubits']} qubits: a "
            f"{kind} circuit with {record['number_of_layers']} layers, angles optimised on the cost Hamiltonian "
            f"{record['cost_hamiltonian']}."
        )
        return f"<think>{thought}</think>\n<answer>\n{circuit}\n</answer>"

    def __call__(self, record: dict[str, Any]) -> dict[str, Any] | None:
        if not self.keep(record):
            return None
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": self.user_prompt(record)})
        if self.mode == "sft":
            return {"messages": [*messages, {"role": "assistant", "content": self.reply(record)}]}
        return {"prompt": messages, **prompt_columns(record), "tags": self.tags}


def prompt_columns(record: dict[str, Any]) -> dict[str, Any]:
    """What the rewards and the evaluation need of a record, under the names they take (qasm/rewards.py)."""
    return {
        "id": record.get("id", record["signature"]),
        "problem_type": record["problem_type"],
        "optimization_type": record["optimization_type"],
        "num_qubits": record["number_of_qubits"],
        "num_layers": record["number_of_layers"],
        "hamiltonian": record["cost_hamiltonian"],
        "ground_states": list(record["exact_solution"]["smallest_bitstrings"]),
        "reference_circuit": record["circuit_with_params"],
    }

"""Benchmark: our QAOA optimiser vs a PennyLane implementation of Agent-Q's loop, interleaved on the same
instances and depths; then generate and verify throughput. See README.md here for the command and the table.

Agent-Q's loop as we read it (its code: PennyLane + JAX + optax): QAOA with qml.qaoa cost / X-mixer layers on
default.qubit, AdamW lr 0.01 run in chunks of 10 steps with the Adam state reset every chunk, stopping when the
most probable bitstring is a ground state, up to 3 restarts. JAX and optax are not installed here, so the
PennyLane side uses its autograd interface and the same AdamW update written out (optax defaults: b1 0.9,
b2 0.999, eps 1e-8, weight decay 1e-4). The step cap (60 per restart, 6 chunks) is ours, to keep the run to
minutes; Agent-Q's is not published, and a cap only makes its side faster and weaker."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from quantum_ft.qasm import problems
from quantum_ft.qasm.generate import load
from quantum_ft.qasm.hamiltonian import diagonal, spectrum, to_ising
from quantum_ft.qasm.optimize import Problem, qaoa_schedule
from quantum_ft.qasm.simulator import QaoaAdjoint
from quantum_ft.qasm.verify import verify


def quality(energies: np.ndarray, spec, probs: np.ndarray) -> dict[str, float]:
    ground = spec.ground_indices
    span = spec.max_energy - spec.ground_energy
    return {
        "top_is_ground": float(int(np.argmax(probs)) in set(int(k) for k in ground)),
        "ground_mass": float(probs[ground].sum()),
        "approx_ratio": float((spec.max_energy - probs @ energies) / span),
    }


def ours(energies, spec, n, p, seed, objective):
    problem = Problem(energies, spec, n, objective)
    t0 = time.perf_counter()
    res = qaoa_schedule(problem, [p], np.random.default_rng(seed))[p]
    seconds = time.perf_counter() - t0
    probs = np.abs(QaoaAdjoint(energies, n).state(res.params[None])[0]) ** 2
    return seconds, probs


def agent_q_loop(terms, energies, spec, n, p, seed, max_steps=60, restarts=3):
    """PennyLane default.qubit, AdamW lr 0.01 in 10-step chunks (state reset), success check after every chunk."""
    import pennylane as qml
    from pennylane import numpy as pnp

    coeffs, ops = [], []
    for c, qubits in terms:
        op = qml.Z(qubits[0])
        for q in qubits[1:]:
            op = op @ qml.Z(q)
        coeffs.append(c)
        ops.append(op)
    cost_h = qml.Hamiltonian(coeffs, ops)
    mixer_h = qml.qaoa.x_mixer(range(n))
    dev = qml.device("default.qubit", wires=n)

    def layers(params):
        for w in range(n):
            qml.Hadamard(w)
        for k in range(p):
            qml.qaoa.cost_layer(params[k], cost_h)
            qml.qaoa.mixer_layer(params[p + k], mixer_h)

    @qml.qnode(dev, interface="autograd")
    def cost(params):
        layers(params)
        return qml.expval(cost_h)

    @qml.qnode(dev, interface="autograd")
    def probs(params):
        layers(params)
        return qml.probs(wires=range(n))

    ground = set(int(k) for k in spec.ground_indices)
    rng = np.random.default_rng(seed)
    grad_fn = qml.grad(cost)
    steps = 0
    params = None
    for _ in range(restarts):
        params = pnp.array(rng.uniform(0, np.pi / 2, 2 * p), requires_grad=True)
        done = False
        for _chunk in range(max_steps // 10):
            m, v = np.zeros(2 * p), np.zeros(2 * p)  # AdamW state reset every chunk (Agent-Q)
            for t in range(1, 11):
                g = np.asarray(grad_fn(params))
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * g * g
                update = (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8) + 1e-4 * np.asarray(params)
                params = pnp.array(np.asarray(params) - 0.01 * update, requires_grad=True)
                steps += 1
            pl = np.asarray(probs(params))  # wire 0 is PennyLane's most significant bit
            ours_order = pl.reshape((2,) * n).transpose(range(n - 1, -1, -1)).reshape(-1)
            if int(np.argmax(ours_order)) in ground:
                done = True
                break
        if done:
            break
    final = np.abs(QaoaAdjoint(energies, n).state(np.asarray(params)[None])[0]) ** 2
    assert np.allclose(final, ours_order, atol=1e-8), "PennyLane and our engine disagree on the same angles"
    return steps, final


def instances(per_class: int, seed: int):
    out = []
    for pc in problems.REGISTRY.values():
        sizes = pc.sizes(9)
        q = min(sizes, key=lambda s: (abs(s - 6), s)) if 6 not in sizes else 6
        rng = np.random.default_rng([seed, len(out)])
        for _ in range(per_class):
            inst = pc.random_instance(rng, q)
            if inst is not None:
                out.append(inst)
    return out


def bench_optimisers(per_class: int, depths: list[int], seed: int) -> list[dict]:
    rows = []
    for k, inst in enumerate(instances(per_class, seed)):
        n = inst.num_qubits
        terms, const = to_ising(inst.poly)
        energies = diagonal(terms, const, n)
        spec = spectrum(energies)
        for p in depths:
            row = {"class": inst.problem, "n": n, "p": p}
            # interleaved, alternating who goes first
            order = ["ours", "pennylane"] if (k + p) % 2 == 0 else ["pennylane", "ours"]
            for who in order:
                t0 = time.perf_counter()
                if who == "ours":
                    _, probs = ours(energies, spec, n, p, seed + k, "ground_mass")
                    row["ours_s"] = time.perf_counter() - t0
                    row["ours"] = quality(energies, spec, probs)
                else:
                    steps, probs = agent_q_loop(terms, energies, spec, n, p, seed + k)
                    row["pl_s"] = time.perf_counter() - t0
                    row["pl_steps"] = steps
                    row["pl"] = quality(energies, spec, probs)
            t0 = time.perf_counter()
            _, probs = ours(energies, spec, n, p, seed + k, "energy")
            row["ours_energy_s"] = time.perf_counter() - t0
            row["ours_energy"] = quality(energies, spec, probs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def bench_generate(count: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "quantum_ft.qasm.generate", f"count={count}", "workers=2", f"output.dir={tmp}/d"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        card = json.loads((Path(tmp) / "d" / "card.json").read_text())
        kept = card["quality"]["circuits"]
        dropped = sum(card["dropped_circuits"].values())
        records = [r for s in ("train", "val", "test") for r in load(Path(tmp) / "d" / f"{s}.jsonl.gz")]
    texts = [r["circuit_with_params"] for r in records]
    verify(texts[0])  # pay the qiskit import once, as a worker would
    t0 = time.perf_counter()
    assert all(verify(t).valid for t in texts)
    vsec = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "circuits_written": kept,
        "circuits_dropped": dropped,
        "circuits_per_min": 60 * (kept + dropped) / wall,
        "verify_programs_per_s": len(texts) / vsec,
        "verify_n": len(texts),
        "mean_qubits": float(np.mean([r["number_of_qubits"] for r in records])),
    }


def summarise(rows: list[dict]) -> str:
    lines = [
        "| class | n | p | ours s | Agent-Q loop s | ratio | top=ground ours / AQ | ground mass ours / AQ |"
        " approx. ratio ours / AQ | ours (energy objective): top, mass, AR |",
        "|" + "---|" * 10,
    ]
    for r in rows:
        o, a, e = r["ours"], r["pl"], r["ours_energy"]
        lines.append(
            f"| {r['class']} | {r['n']} | {r['p']} | {r['ours_s']:.3f} | {r['pl_s']:.2f}"
            f" | {r['pl_s'] / r['ours_s']:.0f}x"
            f" | {o['top_is_ground']:.0f} / {a['top_is_ground']:.0f} | {o['ground_mass']:.3f} / {a['ground_mass']:.3f}"
            f" | {o['approx_ratio']:.3f} / {a['approx_ratio']:.3f}"
            f" | {e['top_is_ground']:.0f}, {e['ground_mass']:.3f}, {e['approx_ratio']:.3f} |"
        )
    lines.append("")
    lines.append(
        "| p | instances | median ratio | total time ours / AQ | top=ground ours / AQ / ours-energy |"
        " median mass ours / AQ / ours-energy | median AR ours / AQ / ours-energy |"
    )
    lines.append("|" + "---|" * 7)
    for p in sorted({r["p"] for r in rows}):
        rs = [r for r in rows if r["p"] == p]
        cells = []
        for key in ("top_is_ground", "ground_mass", "approx_ratio"):
            agg = statistics.mean if key == "top_is_ground" else statistics.median
            cells.append(" / ".join(f"{agg(r[who][key] for r in rs):.3f}" for who in ("ours", "pl", "ours_energy")))
        ratio = statistics.median(r["pl_s"] / r["ours_s"] for r in rs)
        total = f"{sum(r['ours_s'] for r in rs):.1f} s / {sum(r['pl_s'] for r in rs):.1f} s"
        lines.append(f"| {p} | {len(rs)} | {ratio:.0f}x | {total} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=1)
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generate-count", type=int, default=2, help="instances per class for the throughput run")
    parser.add_argument("--out", default="experiments/qasm_data/results.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = bench_optimisers(args.per_class, args.depths, args.seed)
    gen = bench_generate(args.generate_count)
    Path(args.out).write_text(json.dumps({"rows": rows, "generate": gen}, indent=1))
    print(summarise(rows))
    print(json.dumps(gen, indent=1))


if __name__ == "__main__":
    main()

"""Adapter benchmark: (1) exact circuit simulation, forward + backward, our torch engine vs PennyLane's
default.qubit (backprop) and lightning.qubit (adjoint); (2) a training step on SmolLM2-135M with each adapter,
as a ratio to LoRA's step, with peak memory. All ratios come from one run on one machine.

    python experiments/adapter_benchmark/bench.py [--quick] [--device cpu|cuda] [--out results.json]

PennyLane's cost is linear in the number of rows (lightning.qubit runs one tape per row; default.qubit
broadcasts but keeps every intermediate state for backprop), so where 8,192 rows would take minutes or too
much memory they are timed on fewer rows and scaled to 8,192; the table says how many rows were timed.
Ends by printing one JSON line with the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

# PyTorch's CPU allocator asks for transparent huge pages on tensors of 2 MB and more (read at import): without it,
# torch calls right after a large default.qubit call took up to 10x their usual time (page faults; 2026-12-06)
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402

from quantum_ft.utils.allocator import retain_freed_memory  # noqa: E402
from quantum_ft.utils.host import describe_host  # noqa: E402

ROWS = 8192
CIRCUITS = [(4, 2), (4, 10), (8, 2), (8, 10), (10, 2), (10, 10)]
ADAPTERS = ["lora", "vqc", "tq", "quanta"]


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def interleaved(fns: dict, min_rounds: int = 3, max_rounds: int = 30, budget_s: float = 2.0) -> dict:
    """Median seconds per call of each function, timed in rounds that call each once in turn after one warm-up
    call each, so that a slow spell of the machine hits all of them alike. Garbage is collected before each round
    and collection is off during the calls, as timeit does (a PennyLane call leaves many objects behind). At least
    `min_rounds` rounds, more while the rounds so far took under `budget_s`: many for millisecond calls, whose
    median over 3 calls moved 2-3x between runs on the shared 2-core VM."""
    for fn in fns.values():
        fn()
    samples: dict = {name: [] for name in fns}
    start = time.perf_counter()
    while len(samples[next(iter(fns))]) < max_rounds:
        gc.collect()
        gc.disable()
        try:
            for name, fn in fns.items():
                began = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - began)
        finally:
            gc.enable()
        if len(samples[name]) >= min_rounds and time.perf_counter() - start > budget_s:
            break
    return {name: statistics.median(values) for name, values in samples.items()}


def circuit_case(n: int, layers: int, device: str, quick: bool) -> dict:
    from quantum_ft.quantum import VQCSpec, make_circuit
    from quantum_ft.quantum.vqc import choose_mode

    spec = VQCSpec(n, layers)
    g = torch.Generator().manual_seed(0)
    theta0 = torch.rand(spec.weight_shape, generator=g) * 6.28

    def prepared(backend: str, dev: str, rows: int):
        circuit = make_circuit(spec, backend, dev)
        h0 = torch.randn(rows, n, generator=g)
        if backend == "torch":
            h0, theta = h0.to(device), theta0.to(device)
        else:
            theta = theta0

        def step() -> None:
            h = h0.clone().requires_grad_(True)
            t = theta.clone().requires_grad_(True)
            circuit(h, t).sum().backward()
            if device == "cuda":
                torch.cuda.synchronize()

        return step

    # rows timed for PennyLane: keep each measurement to seconds and default.qubit's backprop memory < ~2 GB
    dq_rows = min(ROWS, max(64, int(2e9 / (2**n * 8 * (4 * n + 2) * layers))))
    lq_rows = 8 if quick else 32
    if quick:
        dq_rows = min(dq_rows, 512)
    seconds = interleaved(
        {  # ours last in a round: not straight after the round's garbage collection
            "dq": prepared("pennylane", "default.qubit", dq_rows),
            "lq": prepared("pennylane", "lightning.qubit", lq_rows),
            "torch": prepared("torch", "", ROWS),
        }
    )
    ours, dq, lq = seconds["torch"], seconds["dq"] * ROWS / dq_rows, seconds["lq"] * ROWS / lq_rows
    return {
        "n": n,
        "L": layers,
        "mode": choose_mode(spec, ROWS),
        "torch_ms": 1e3 * ours,
        "default_qubit_ms": 1e3 * dq,
        "default_qubit_rows_timed": dq_rows,
        "lightning_qubit_ms": 1e3 * lq,
        "lightning_qubit_rows_timed": lq_rows,
        "speedup_vs_default_qubit": dq / ours,
        "speedup_vs_lightning_qubit": lq / ours,
    }


PEAK_GFLOPS = 2 * 32 * 2.6  # fp32, 2 cores x 2 AVX-512 FMA (32 flop/cycle) x 2.6 GHz reported (no turbo assumed)


def product_gflop(spec, mode: str, rows: int) -> float:
    """The dominant matrix products' flops, forward + backward (autograd: one forward product, two backward):
    fused: [rows, 2^n] x [2^n, 2 * 2^n]; cone: per wire the trig coefficients [3^(c/2), 3^(c - c/2)] times the
    features [3^(c - c/2), rows]. The gate path is not counted (bound by memory traffic, not by products), nor are
    the per-call builds (the fused matrix, the cones' circuits)."""
    from quantum_ft.quantum.vqc import light_cones

    if mode == "fused":
        dim = 2**spec.n_qubits
        return 3 * 2 * rows * dim * 2 * dim / 1e9
    if mode == "cone":
        return 3 * 2 * spec.n_qubits * rows * 3 ** light_cones(spec).plans[0].n / 1e9
    return float("nan")


def spec_of(case: dict):
    from quantum_ft.quantum import VQCSpec

    return VQCSpec(case["n"], case["L"])


def roofline(device: str) -> dict:
    """What this machine reaches on a large fp32 matrix product alone (the practical flop ceiling of the fused
    and cone modes' products) and on a streaming copy (memory bandwidth), measured here and now."""
    rows, dim = ROWS, 2**10
    a, b = torch.rand(rows, dim, device=device), torch.rand(dim, 2 * dim, device=device)
    gemm_s = timed(lambda: a @ b, 5)
    big = torch.rand(64 * 2**20, device=device)
    out = torch.empty_like(big)
    copy_s = timed(lambda: out.copy_(big), 5)
    return {
        "plain_gemm_gflops": 2 * rows * dim * 2 * dim / gemm_s / 1e9,
        "copy_gb_per_s": 2 * big.numel() * 4 / copy_s / 1e9,
        "peak_gflops_assumed": PEAK_GFLOPS if device == "cpu" else None,
    }


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Highest resident memory seen while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> PeakRSS:
        self.peak, self._stop = rss_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def train_step_child(adapter: str, device: str, steps: int) -> None:
    """Runs in a fresh process so that its peak memory is its own."""
    from hydra.utils import instantiate

    from quantum_ft.utils.config import compose_config

    cfg = compose_config("train", [f"adapter={adapter}"])
    source, adapt = instantiate(cfg.model), instantiate(cfg.adapter)
    model = adapt.apply(source.load_model()).to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 49152, (4, 256), generator=g).to(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    before = torch.cuda.memory_allocated() if device == "cuda" else rss_bytes()
    with PeakRSS() as rss:
        seconds = timed(step, steps)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss.peak
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        json.dumps(
            {
                "adapter": adapter,
                "step_s": seconds,
                "peak_mb": peak / 2**20,
                "step_extra_mb": (peak - before) / 2**20,
                "trainable": trainable,
            }
        )
    )


def train_steps(device: str, steps: int) -> list[dict]:
    rows = []
    root = Path(__file__).resolve().parents[2]
    for adapter in ADAPTERS:
        out = subprocess.run(
            [sys.executable, __file__, "--child", adapter, "--device", device, "--steps", str(steps)],
            capture_output=True,
            text=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"  train step {adapter:7s} {r['step_s']:.2f} s  peak {r['peak_mb']:.0f} MB"
            f" (+{r['step_extra_mb']:.0f} MB over the loaded model)  trainable {r['trainable']:,}",
            flush=True,
        )
    base = rows[0]["step_s"]
    for r in rows:
        r["ratio_to_lora"] = r["step_s"] / base
    return rows


def markdown(results: dict) -> str:
    info = results["info"]
    where = info["cuda"] or f"{info['threads']} CPU threads"
    allocator = info.get("allocator", "default")
    if info.get("thp_mem_alloc") == "1":
        allocator += ", huge pages for tensors >= 2 MB (THP_MEM_ALLOC_ENABLE=1)"
    host = f" on {info['host']}" if info.get("host") else ""
    lines = [f"Device: {info['device']} ({where}){host}, torch {info['torch']}, CPU allocator: {allocator}.", ""]
    if results["circuits"]:
        lines += [
            "| n | L | torch engine (mode) | default.qubit (rows timed) | lightning.qubit (rows timed)"
            " | vs default.qubit | vs lightning.qubit | products' GFLOP/s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in results["circuits"]:
            lines.append(
                f"| {c['n']} | {c['L']} | {c['torch_ms']:,.1f} ms ({c['mode']}) |"
                f" {c['default_qubit_ms']:,.0f} ms ({c['default_qubit_rows_timed']:,}) |"
                f" {c['lightning_qubit_ms']:,.0f} ms ({c['lightning_qubit_rows_timed']}) |"
                f" {c['speedup_vs_default_qubit']:.1f}x | {c['speedup_vs_lightning_qubit']:.0f}x |"
                f" {c.get('gflops_achieved', float('nan')):.0f} |"
            )
        roof = results.get("roofline")
        if roof:
            lines += [
                "",
                f"Ceilings measured in the same run: a plain [8,192 x 1,024] x [1,024 x 2,048] fp32 product"
                f" {roof['plain_gemm_gflops']:.0f} GFLOP/s, a streaming copy {roof['copy_gb_per_s']:.0f} GB/s"
                + (f"; assumed fp32 peak {peak:.0f} GFLOP/s." if (peak := roof["peak_gflops_assumed"]) else "."),
            ]
        lines.append("")
    if results["train_steps"]:
        if results.get("train_steps_from"):
            lines += [f"Training steps below: from {results['train_steps_from']}.", ""]
        lines += [
            "| adapter | trainable | step time | ratio to LoRA | peak memory | step memory over the loaded model |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in results["train_steps"]:
            lines.append(
                f"| {r['adapter']} | {r['trainable']:,} | {r['step_s']:.2f} s | {r['ratio_to_lora']:.2f} |"
                f" {r['peak_mb']:,.0f} MB | {r['step_extra_mb']:,.0f} MB |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rows for PennyLane and fewer steps")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-circuits", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument("--default-allocator", action="store_true", help="leave glibc's malloc thresholds as they are")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return train_step_child(args.child, args.device, args.steps)
    if args.device == "cpu" and not args.default_allocator:
        info_allocator = "retain freed memory (quantum_ft.utils.allocator)" if retain_freed_memory() else "default"
    else:
        info_allocator = "default"

    info = {
        "device": args.device,
        "host": describe_host(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "allocator": info_allocator,
        "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE"),
    }
    print(f"circuit simulation, forward + backward, {ROWS} rows, float32 ({info})", flush=True)
    circuits = []
    for n, layers in [] if args.skip_circuits else CIRCUITS:
        circuits.append(circuit_case(n, layers, args.device, args.quick))
        c = circuits[-1]
        print(
            f"  n={n:2d} L={layers:2d} torch({c['mode']}) {c['torch_ms']:9.1f} ms"
            f" | default.qubit {c['default_qubit_ms']:10.1f} ms"
            f" (x{c['speedup_vs_default_qubit']:.1f}) | lightning.qubit {c['lightning_qubit_ms']:10.1f} ms"
            f" (x{c['speedup_vs_lightning_qubit']:.1f})",
            flush=True,
        )
    roof = roofline(args.device)
    for c in circuits:  # the products' flops over the whole call's time: a lower bound on their own rate
        c["product_gflop"] = product_gflop(spec_of(c), c["mode"], ROWS)
        c["gflops_achieved"] = c["product_gflop"] / (c["torch_ms"] / 1e3)
    print(f"  roofline {roof}", flush=True)
    steps = [] if args.skip_train else train_steps(args.device, 1 if args.quick else args.steps)
    results = {"info": info, "circuits": circuits, "roofline": roof, "train_steps": steps}
    if args.skip_train and Path(args.out).exists():  # keep the earlier run's training steps, labelled as such
        earlier = json.loads(Path(args.out).read_text())
        results["train_steps"] = earlier.get("train_steps", [])
        results["train_steps_from"] = earlier.get("train_steps_from", "the 2026-11-21 run (this run used --skip-train)")
    Path(args.out).write_text(json.dumps(results, indent=2))
    Path(args.out).with_suffix(".md").write_text(markdown(results) + "\n")
    summary = {
        **{f"speedup_vs_default_qubit_n{c['n']}_L{c['L']}": c["speedup_vs_default_qubit"] for c in circuits},
        **{f"step_ratio_{r['adapter']}": round(r["ratio_to_lora"], 3) for r in steps if r["adapter"] != "lora"},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

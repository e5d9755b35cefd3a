"""The `qasm` evaluation task: how good are the circuits a model writes for held-out problems?

Three rows through one scorer (qasm/rewards.py, simulation of what was written):
  model      the model's completions (greedy, or `samples` draws each for pass@k)
  reference  the dataset's own circuits: must score 100% compile and correct (Agent-Q's evaluator scored its own
             references 7.7% correct: a qubit-order bug a row like this catches at once)
  random     the reference circuits with every angle redrawn uniformly in [-pi, pi) (`baseline_draws` per prompt):
             what the structure alone achieves
Metrics: compile rate, correct-bitstring rate, mean ground-state mass, the share with energy within 0.2 (relative:
(<H> - E_0) / (E_max - E_0) <= 0.2; and Agent-Q's absolute |<H> - <H>_reference| <= 0.2), mean JS divergence to
the reference, mean KL over compiled circuits and the share with KL < 0.1, each with a bootstrap 95% interval; per
problem class and per qubit count. Writes per-prompt scores (qasm_samples.jsonl, for paired comparisons between
runs) and a picture per example: the generated circuit drawn beside the histogram of generated vs reference
probabilities.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from quantum_ft.qasm.generate import load
from quantum_ft.qasm.prompts import CircuitTask
from quantum_ft.qasm.rewards import CircuitScore, CircuitScorer, ScorerSettings, extract_answer
from quantum_ft.utils.io import atomic_text
from quantum_ft.utils.modes import evaluating
from quantum_ft.utils.text import pad_with_mask, render_prompt

log = logging.getLogger(__name__)
_ANGLE = re.compile(r"\(\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*\)")
METRICS = ("compile", "correct", "ground_mass", "energy_within_0.2", "abs_energy_within_0.2", "js", "kl_below_0.1")


def prompts_of(settings: DictConfig) -> list[dict[str, Any]]:
    """The held-out prompt records, filtered as configured."""
    filters = OmegaConf.to_container(settings.task, resolve=True) if settings.get("task") else {}
    task = CircuitTask(mode="prompt", **filters)
    rows = [r for r in (task(rec) for rec in load(settings.path)) if r is not None]
    return rows[: settings.max_samples] if settings.get("max_samples") else rows


@torch.no_grad()
def generate(
    model: torch.nn.Module, tokenizer: Any, rows: list[dict[str, Any]], settings: DictConfig, progress: bool
) -> list[list[str]]:
    """`samples` completions per prompt (greedy when 1), decoded up to the end of turn."""
    device = next(model.parameters()).device
    k = int(settings.samples)
    sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p} if k > 1 else {}
    out: list[list[str]] = []
    batch = int(settings.batch_size)
    with evaluating(model), tqdm(total=len(rows), desc="qasm", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            ids = [tokenizer(render_prompt(tokenizer, r["prompt"]), add_special_tokens=False).input_ids for r in chunk]
            input_ids, mask = pad_with_mask(ids, tokenizer.pad_token_id, side="left")
            sequences = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=int(settings.max_new_tokens),
                num_return_sequences=k,
                pad_token_id=tokenizer.pad_token_id,
                **({"do_sample": False} | sampling),
            )
            texts = tokenizer.batch_decode(sequences[:, input_ids.shape[1] :], skip_special_tokens=True)
            out += [texts[i * k : (i + 1) * k] for i in range(len(chunk))]
            bar.update(len(chunk))
    return out


def reparameterised(circuit: str, rng: np.random.Generator) -> str:
    """The same circuit with every numeric gate angle redrawn uniformly in [-pi, pi)."""
    return _ANGLE.sub(lambda _: f"({rng.uniform(-math.pi, math.pi):.4f})", circuit)


def figures(score: CircuitScore) -> dict[str, float]:
    """One completion's evaluation figures (1/0 indicators and continuous values)."""
    ok = score.kind == "ok"
    abs_ok = ok and score.expectation is not None and score.reference_energy is not None
    return {
        "compile": score.compile,
        "correct": score.correct,
        "ground_mass": score.ground_mass,
        "energy_within_0.2": float(ok and score.energy >= 0.8),
        "abs_energy_within_0.2": float(abs_ok and abs(score.expectation - score.reference_energy) <= 0.2),
        "js": score.js,
        "kl_below_0.1": float(ok and score.kl is not None and score.kl < 0.1),
        "kl": score.kl if ok and score.kl is not None else float("nan"),
        "energy": score.energy,
    }


def bootstrap(values: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean (NaNs left out)."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(draws, values.size)).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(per_prompt: list[dict[str, float]]) -> dict[str, Any]:
    """Means (NaN-aware) with bootstrap intervals of a row's per-prompt figures."""
    if not per_prompt:
        return {"prompts": 0}
    out: dict[str, Any] = {"prompts": len(per_prompt)}
    for name in (*METRICS, "kl", "energy"):
        values = np.array([p[name] for p in per_prompt], dtype=np.float64)
        out[name] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else None
        if name in METRICS:
            out[f"{name}_ci95"] = bootstrap(values)
    return out


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys()
    return {
        k: float(np.nanmean([r[k] for r in rows])) if any(not math.isnan(r[k]) for r in rows) else float("nan")
        for k in keys
    }


def evaluate_qasm(
    model: torch.nn.Module, tokenizer: Any, settings: DictConfig, out_dir: Path, progress: bool = True
) -> dict[str, Any]:
    rows = prompts_of(settings)
    if not rows:
        raise ValueError(f"eval.qasm: no prompt in {settings.path} passes the filters {dict(settings.task or {})}.")
    scorer = CircuitScorer.shared(ScorerSettings(**OmegaConf.to_container(settings.scorer, resolve=True)))
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    completions = generate(model, tokenizer, rows, settings, progress)
    k = len(completions[0])

    flat = scorer.score(
        [c for group in completions for c in group],
        {n: [v for v in vals for _ in range(k)] for n, vals in columns.items()},
    )
    model_scores = [flat[i * k : (i + 1) * k] for i in range(len(rows))]
    reference_scores = scorer.score(columns["reference_circuit"], columns)
    rng = np.random.default_rng(int(settings.seed))
    draws = int(settings.baseline_draws)
    random_texts = [reparameterised(r["reference_circuit"], rng) for r in rows for _ in range(draws)]
    random_flat = scorer.score(
        random_texts, {n: [v for v in vals for _ in range(draws)] for n, vals in columns.items()}
    )

    model_rows = [_mean([figures(s) for s in group]) for group in model_scores]  # over the k samples
    random_rows = [_mean([figures(s) for s in random_flat[i * draws : (i + 1) * draws]]) for i in range(len(rows))]
    reference_rows = [figures(s) for s in reference_scores]
    result: dict[str, Any] = {
        "samples_per_prompt": k,
        "model": summarize(model_rows),
        "reference": summarize(reference_rows),
        "random_parameters": summarize(random_rows) | {"draws_per_prompt": draws},
    }
    if k > 1:
        result["model"][f"pass@{k}_correct"] = float(np.mean([any(s.correct for s in g) for g in model_scores]))
        result["model"][f"pass@{k}_compile"] = float(np.mean([any(s.compile for s in g) for g in model_scores]))
    result["verdicts"] = dict(sorted(_count(s.kind for g in model_scores for s in g).items()))
    result["by_class"] = _grouped(rows, model_rows, random_rows, "problem_type")
    result["by_qubits"] = _grouped(rows, model_rows, random_rows, "num_qubits")
    result["unscored"] = sum(s.kind == "unscored" for g in model_scores for s in g)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {"id": r["id"], "problem_type": r["problem_type"], "num_qubits": r["num_qubits"], **fig, "completions": c}
        )
        for r, fig, c in zip(rows, model_rows, completions)
    ]
    atomic_text(out_dir / "qasm_samples.jsonl", "\n".join(lines) + "\n")
    result["pictures"] = draw_examples(
        rows, completions, model_scores, out_dir / "qasm_examples", int(settings.pictures)
    )
    return result


def _count(kinds) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for kind in kinds:
        out[kind] += 1
    return out


def _grouped(rows, model_rows, random_rows, key: str) -> dict[str, Any]:
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r[key]].append(i)
    out = {}
    for name in sorted(groups):
        idx = groups[name]
        m = summarize([model_rows[i] for i in idx])
        rnd = summarize([random_rows[i] for i in idx])
        out[str(name)] = {
            "prompts": len(idx),
            **{n: m[n] for n in ("compile", "correct", "ground_mass", "energy_within_0.2")},
            "random_correct": rnd["correct"],
            "random_ground_mass": rnd["ground_mass"],
        }
    return out


def draw_examples(rows, completions, scores, folder: Path, count: int) -> list[str]:
    """The first `count` prompts: the generated circuit (qiskit's drawer) beside its histogram vs the reference."""
    if count <= 0:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from quantum_ft.qasm.verify import verify

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (row, texts, group) in enumerate(zip(rows[:count], completions, scores)):
        program = extract_answer(texts[0])
        verdict = verify(program)
        reference = verify(row["reference_circuit"])
        fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 2]})
        left.axis("off")
        if verdict.valid:
            import qiskit.qasm3

            circuit = qiskit.qasm3.loads(program)
            circuit.draw("mpl", ax=left, fold=40)
        else:
            left.text(0.0, 0.5, f"does not compile ({verdict.kind}):\n{verdict.reason}", wrap=True, va="center")
        n = row["num_qubits"]
        ref_p = reference.probabilities
        gen_p = verdict.probabilities if verdict.valid and verdict.num_qubits == n else np.zeros_like(ref_p)
        states = np.argsort(-(ref_p + gen_p), kind="stable")[:16]
        x = np.arange(len(states))
        right.bar(x - 0.2, ref_p[states], 0.4, label="reference")
        right.bar(x + 0.2, gen_p[states], 0.4, label="generated")
        right.set_xticks(
            x, ["".join(str((int(s) >> q) & 1) for q in range(n)) for s in states], rotation=90, fontsize=7
        )
        ground = set(row["ground_states"])
        for tick in right.get_xticklabels():
            if tick.get_text() in ground:
                tick.set_color("tab:green")
        right.set_ylabel("probability")
        right.set_title("bitstrings (qubit 0 first; ground states green)", fontsize=9)
        right.legend(fontsize=8)
        s = group[0]
        fig.suptitle(
            f"{row['problem_type']}, {n} qubits, {row['optimization_type']} p={row['num_layers']}: compile "
            f"{s.compile:.0f}, correct {s.correct:.0f}, ground mass {s.ground_mass:.2f}, energy {s.energy:.2f}",
            fontsize=10,
        )
        fig.tight_layout()
        path = folder / f"example_{i:02d}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path))
    return written


def headline(result: dict[str, Any]) -> str:
    m = result["model"]
    return (
        f"compile {m['compile']:.3f}, correct {m['correct']:.3f}, ground mass {m['ground_mass']:.3f} over "
        f"{m['prompts']} prompts (random parameters: correct {result['random_parameters']['correct']:.3f})"
    )


def _fmt(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def table(result: dict[str, Any]) -> list[str]:
    """Agent-Q's table layout, one row per scored set, then per class and per qubit count."""
    lines = [
        "",
        "| circuits | prompts | compile | correct bitstring | ground mass | energy within 0.2 (rel.) | "
        "abs. dE <= 0.2 (Agent-Q) | JS | KL < 0.1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("model", "reference", "random_parameters"):
        r = result[name]
        cells = [_fmt(r[m]) for m in METRICS]
        lines.append(f"| {name} | {r['prompts']} | " + " | ".join(cells) + " |")
    for key in (k for k in result["model"] if k.startswith("pass@")):
        lines.append(f"\n{key}: {result['model'][key]:.3f}")
    lines += [
        "",
        "Verdicts of the model's circuits: " + ", ".join(f"{k} {v}" for k, v in result["verdicts"].items()),
        "",
    ]
    for title, key in (("class", "by_class"), ("qubits", "by_qubits")):
        lines += [
            f"| {title} | prompts | compile | correct | ground mass | energy within 0.2 | random correct "
            "| random mass |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, g in result[key].items():
            cells = [
                g[m]
                for m in (
                    "compile",
                    "correct",
                    "ground_mass",
                    "energy_within_0.2",
                    "random_correct",
                    "random_ground_mass",
                )
            ]
            lines.append(f"| {name} | {g['prompts']} | " + " | ".join(_fmt(c) for c in cells) + " |")
        lines.append("")
    return lines

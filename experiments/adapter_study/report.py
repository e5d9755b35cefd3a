"""The adapter study's report, from the run directories and the journal of finished runs (runs.jsonl) alone.

    python experiments/adapter_study/report.py experiments/adapter_study/study   # runs.jsonl (+ runs/ if here)

Writes beside the runs: runs.jsonl (one line per finished run: arm, seed, rate, parameters, final and per-validation
losses, MMLU and the letters answered, tokens/s, peak memory; the driver adds each run as it finishes, and it is
committed), report.md (the table, the final losses per seed with their gain over the base, the paired comparisons
and the letters behind the MMLU accuracy), val_loss.png (mean validation loss per arm with a band of one standard
deviation over seeds, and a zoom on the second half of training with each seed's base taken out), paired.png (the
paired differences and their intervals) and sweep.png (each arm's loss against the rate). Intervals are 95%
Student-t intervals over seeds; paired comparisons take the difference per seed first (the same data split and
order), then its interval.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from scipy import stats

from quantum_ft.evaluation.harness import commonest_letter
from quantum_ft.utils.io import atomic_text
from quantum_ft.utils.plots import finish, label_panel, read_metric_series

PAIRS = [
    ("vqc", "vqc_classical"),  # does the circuit itself do anything?
    ("vqc", "lora_r4"),  # against LoRA with the same number of trainable parameters
    ("tq", "lora_r4"),
    ("vqc", "lora"),
    ("quanta", "lora"),
    ("vqc_reference", "vqc"),  # the demo's random up-map against the zero one
    ("tq_reference", "tq"),
]


def read_run(directory: Path) -> dict[str, Any] | None:
    """One finished run's figures, or None when it has not finished (no metrics.json)."""
    try:
        metrics = json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    phase, arm, seed, *rest = directory.name.split("-", 3)
    mmlu = mmlu_results(directory)
    csv = directory / "csv"
    tokens = [v for _, v in read_metric_series(csv, "train/tokens_per_s")]
    steps = [v for _, v in read_metric_series(csv, "train/resources/step_s")]
    rss = [v for _, v in read_metric_series(csv, "train/resources/rss_gb")]
    return {
        "name": directory.name,
        "phase": phase,
        "arm": arm,
        "seed": int(seed[1:]),
        "lr": float(rest[0][2:]) if rest else None,
        "trainable_params": metrics.get("trainable_params"),
        "val_loss_before": metrics.get("val/loss_before"),
        "val_loss": metrics.get("val/loss_after"),
        "mmlu": metrics.get("eval/mmlu/accuracy"),
        "mmlu_letters": mmlu.get("predicted_letters"),  # the letters the model answered, A-D
        "mmlu_key": mmlu.get("answer_letters"),  # the correct ones (runs evaluated since 2026-12-07 late)
        "steps": metrics.get("global_step"),
        "tokens_per_s": statistics.median(tokens[1:] or tokens) if tokens else None,  # the first step warms up
        "step_s": statistics.median(steps[1:] or steps) if steps else None,
        "peak_rss_gb": max(rss) if rss else None,
        "val_curve": read_metric_series(csv, "val/loss"),
        "wall_time_s": metrics.get("wall_time_s"),
        "host": metrics.get("host"),  # timings compare only on one kind of machine (absent before 2026-12-06)
    }


def mmlu_results(directory: Path) -> dict[str, Any]:
    """The run's MMLU results (eval/results.json), {} where it has none."""
    try:
        return json.loads((directory / "eval" / "results.json").read_text()).get("mmlu", {})
    except (OSError, ValueError):
        return {}


def read_journal(out: Path) -> dict[str, dict[str, Any]]:
    """runs.jsonl, the committed journal of finished runs: {run name: its figures}. It outlives the run directories
    (git-ignored), so a study resumed in a fresh clone skips what an earlier session finished."""
    try:
        lines = (out / "runs.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return {}
    runs = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            run = json.loads(line)
        except ValueError as error:
            where = f"{out / 'runs.jsonl'} line {number}"
            raise SystemExit(f"{where} is not JSON ({error}): fix or delete the line (its run is redone)") from None
        runs[run["name"]] = run
    return runs


def write_journal(out: Path, runs: dict[str, dict[str, Any]]) -> None:
    atomic_text(out / "runs.jsonl", "".join(json.dumps(runs[n], sort_keys=True) + "\n" for n in sorted(runs)))


def record(out: Path, directory: Path) -> dict[str, Any]:
    """Add one finished run to the journal (what the driver does after each run); its figures."""
    run = read_run(directory)
    if run is None:
        raise ValueError(f"{directory} has no metrics.json: the run has not finished")
    write_journal(out, read_journal(out) | {run["name"]: run})
    return run


def finished(out: Path) -> dict[str, dict[str, Any]]:
    """Every finished run by name: the journal, updated from the run directories that are here (they win on a
    clash); nothing written."""
    runs = read_journal(out)
    directories = sorted((out / "runs").iterdir()) if (out / "runs").is_dir() else []
    return runs | {r["name"]: r for d in directories if d.is_dir() and (r := read_run(d)) is not None}


def collect(out: Path) -> list[dict[str, Any]]:
    """finished(out), written back to the journal, sorted by name."""
    runs = finished(out)
    write_journal(out, runs)
    return [runs[n] for n in sorted(runs)]


def interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, std, half-width of the 95% t interval); std and half-width are nan for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    std = statistics.stdev(values)
    return mean, std, stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))


def fmt(values: list[float], digits: int = 4, half_width: bool = True) -> str:
    """mean ± std (95% half-width) of values; the mean alone for one value, a dash for none."""
    if not values:
        return "–"
    mean, std, half = interval(values)
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" + (f" (±{half:.{digits}f})" if half_width else "")


def mean_or_dash(values: list[float], spec: str) -> str:
    return format(statistics.fmean(values), spec) if values else "–"


def table(runs: list[dict[str, Any]]) -> str:
    by_arm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        if r["phase"] in ("final", "base"):
            by_arm[r["arm"]].append(r)
    lora_step = {r["seed"]: r for r in by_arm.get("lora", []) if r["step_s"]}
    lines = [
        "| arm | trainable params | lr | seeds | val loss: mean ± std (95% half-width) | MMLU | tokens/s"
        " | step time / LoRA's | peak RSS GB |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for arm, rs in by_arm.items():
        base = arm == "base"  # never trained: its loss is the one measured before training
        losses = [r["val_loss_before" if base else "val_loss"] for r in rs]
        ratios = [r["step_s"] / lora_step[r["seed"]]["step_s"] for r in rs if step_pair(r, lora_step.get(r["seed"]))]
        rss = [r["peak_rss_gb"] for r in rs if r["peak_rss_gb"]]
        cells = [
            arm,
            f"{0 if base else rs[0]['trainable_params']:,}",
            "–" if base else format(rs[0]["lr"], "g"),
            str(len(rs)),
            fmt([x for x in losses if x is not None]),
            fmt([r["mmlu"] for r in rs if r["mmlu"] is not None], 3),
            mean_or_dash([r["tokens_per_s"] for r in rs if r["tokens_per_s"]], ".0f"),
            mean_or_dash(ratios, ".2f"),
            format(max(rss), ".2f") if rss else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def final_values(runs: list[dict[str, Any]], key: str = "val_loss") -> dict[tuple[str, int], float]:
    """{(arm, seed): the final run's figure} for the final runs that have it."""
    return {(r["arm"], r["seed"]): r[key] for r in runs if r["phase"] == "final" and r.get(key) is not None}


def base_losses(runs: list[dict[str, Any]]) -> dict[int, float]:
    """{seed: the untrained base's validation loss on that seed's split}."""
    return {r["seed"]: r["val_loss_before"] for r in runs if r["phase"] == "base" and r["val_loss_before"] is not None}


def per_seed(runs: list[dict[str, Any]]) -> str:
    """The final validation loss of every arm on every seed, and each arm's gain over the untrained base of the same
    seed (mean ± std over seeds). The validation split follows the seed, so the base's loss moves with it (by
    hundredths); the gain takes that out, and its spread is what training itself varies by."""
    finals, base = final_values(runs), base_losses(runs)
    arms = list(dict.fromkeys(arm for arm, _ in sorted(finals)))
    if not arms:
        return "(no final run yet)"
    seeds = sorted({s for _, s in finals} | set(base))
    lines = ["| seed | " + " | ".join(arms) + " | base (untrained) |", "|---" + "|---:" * (len(arms) + 1) + "|"]
    for s in seeds:
        cells = [format(finals[a, s], ".4f") if (a, s) in finals else "–" for a in arms]
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {format(base[s], '.4f') if s in base else '–'} |")
    gains = [[base[s] - finals[a, s] for s in seeds if (a, s) in finals and s in base] for a in arms]
    cells = [fmt(g, half_width=False) for g in gains]
    lines.append("| below the base, mean ± std | " + " | ".join(cells) + " | – |")
    return "\n".join(lines)


def step_pair(run: dict[str, Any], lora: dict[str, Any] | None) -> bool:
    """Whether a run's step time compares with LoRA's of its seed: both timed, on the same kind of machine (a
    study spread over sessions may land on different ones; runs journaled before hosts were recorded count as
    one)."""
    return bool(run["step_s"] and lora and lora["step_s"] and run.get("host") == lora.get("host"))


def hosts(runs: list[dict[str, Any]]) -> str:
    """The machines the final runs ran on, with their counts."""
    counts: dict[str, int] = defaultdict(int)
    for r in runs:
        if r["phase"] == "final":
            counts[r.get("host") or "not recorded (journaled before 2026-12-06)"] += 1
    return "; ".join(f"{host}: {count} runs" for host, count in sorted(counts.items())) or "–"


def comparisons(runs: list[dict[str, Any]], key: str = "val_loss") -> list[tuple]:
    """Per pair in PAIRS with a seed in common: (a, b, seeds, mean difference a - b, low, high), the 95% interval of
    the per-seed differences; low and high None for one seed, or (a count such as MMLU's, up to float rounding) the
    same difference on every seed, whose zero spread is no interval."""
    finals = final_values(runs, key)
    out = []
    for a, b in PAIRS:
        seeds = sorted(s for (arm, s) in finals if arm == a and (b, s) in finals)
        if seeds:
            mean, _, half = interval([finals[(a, s)] - finals[(b, s)] for s in seeds])
            low, high = (mean - half, mean + half) if half > 1e-9 else (None, None)  # nan > x is False
            out.append((a, b, len(seeds), mean, low, high))
    return out


def paired(runs: list[dict[str, Any]], key: str = "val_loss", higher_is_better: bool = False) -> str:
    """The comparisons as a table (the validation loss, or MMLU accuracy with higher_is_better); a verdict only where
    the interval excludes zero. The last column, the interval's farthest end from zero, is what "no measurable
    difference" means in numbers: a difference larger than it is ruled out (at 95%), a smaller one is not."""
    lines = [
        "| comparison (a - b) | seeds | mean difference | 95% interval | verdict | \\|a - b\\| at most |",
        "|---|---:|---:|---|---|---:|",
    ]
    for a, b, seeds, mean, low, high in comparisons(runs, key):
        if low is None:
            why = "one seed" if seeds == 1 else "the same difference on every seed"
            lines.append(f"| {a} - {b} | {seeds} | {mean:+.4f} | – | {why}: no interval | – |")
            continue
        a_better, b_better = (low > 0, high < 0) if higher_is_better else (high < 0, low > 0)
        verdict = "a better" if a_better else "b better" if b_better else "no measurable difference"
        cells = f"{mean:+.4f} | [{low:+.4f}, {high:+.4f}] | {verdict} | {max(abs(low), abs(high)):.4f}"
        lines.append(f"| {a} - {b} | {seeds} | {cells} |")
    return "\n".join(lines)


def paired_plot(runs: list[dict[str, Any]], out_png: Path) -> Path:
    """The comparisons as a forest plot, one panel per figure (validation loss, MMLU): each difference a - b with its
    95% interval, zero marked; where there is no interval, the mean difference alone, hollow."""
    fig = Figure(figsize=(12, 4.8), dpi=120)
    panels = fig.subplots(1, 2, sharey=True)
    row = {pair: len(PAIRS) - 1 - i for i, pair in enumerate(PAIRS)}  # the first pair on top
    for ax, key in zip(panels, ("val_loss", "mmlu")):
        ax.axvline(0, color="black", linewidth=0.8, label="no difference")  # also a legend for an empty panel
        for hollow, label in ((False, "mean, 95% interval over seeds"), (True, "no interval (one seed, or no spread)")):
            shown = [(row[a, b], m, lo, hi) for a, b, _, m, lo, hi in comparisons(runs, key) if (lo is None) == hollow]
            if not shown:
                continue
            y, means, lows, highs = zip(*shown)
            errors = (
                None if hollow else [[m - lo for m, lo in zip(means, lows)], [hi - m for m, hi in zip(means, highs)]]
            )
            style = {"fmt": "o", "capsize": 4, "fillstyle": "none" if hollow else "full", "label": label}
            ax.errorbar(means, y, xerr=errors, **style)
        ax.set_yticks(sorted(row.values()), [f"{a} − {b}" for a, b in PAIRS][::-1])
        ax.set_ylim(-2, len(PAIRS) - 0.5)  # room below the last pair for the legend
    label_panel(panels[0], "a − b (negative: a lower)", "comparison", "Paired differences: final validation loss", 8)
    title = "Paired differences: MMLU accuracy"
    return finish(fig, panels[1], "a − b (positive: a higher)", "", title, out_png, legend_size=8)


def letters(runs: list[dict[str, Any]]) -> str:
    """What the MMLU accuracy is made of: per arm the letters answered (summed over its runs) against the correct
    ones. A small model's k-shot answers are mostly one or two letters, so its accuracy is close to the share of
    questions whose answer is that letter, and arms differ by which letter they lean to."""
    answered: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys("ABCD", 0))
    runs_with: dict[str, int] = defaultdict(int)
    for r in runs:
        if r["phase"] in ("final", "base") and r.get("mmlu_letters"):
            runs_with[r["arm"]] += 1
            for letter, count in r["mmlu_letters"].items():
                answered[r["arm"]][letter] += count
    if not answered:
        return "(no run recorded the letters it answered)"
    lines = ["| arm | runs | answered A | B | C | D |", "|---|---:|---:|---:|---:|---:|"]
    for arm, counts in answered.items():
        total = sum(counts.values())
        shares = " | ".join(f"{counts[x] / total:.0%}" for x in "ABCD")
        lines.append(f"| {arm} | {runs_with[arm]} | {shares} |")
    key = next((r["mmlu_key"] for r in runs if r.get("mmlu_key")), None)
    if key:
        total, (commonest, accuracy) = sum(key.values()), commonest_letter(key)
        spelled = ", ".join(f"{x} {key[x] / total:.0%}" for x in "ABCD")
        always = f"answering {commonest} every time scores {accuracy:.3f}"
        lines += ["", f"Correct answers: {spelled}; {always}."]
    return "\n".join(lines)


def sweep(runs: list[dict[str, Any]]) -> str:
    rows = sorted(((r["arm"], r["lr"], r["val_loss"]) for r in runs if r["phase"] == "sweep"), key=lambda x: x[:2])
    if not rows:
        return "(no sweep: one rate given)"
    lines = ["| arm | lr | val loss after the sweep's steps |", "|---|---:|---:|"]
    lines += [f"| {arm} | {lr:g} | {'failed' if loss is None else format(loss, '.4f')} |" for arm, lr, loss in rows]
    return "\n".join(lines)


def steps_done(curve: list[list[float]]) -> list[tuple[int, float]]:
    """A run's validation points as (optimiser steps done, loss). Lightning logs a validation inside training at the
    0-based index of the step just taken (49 after 50 steps); the one before training at 0 and the one after it at
    the step count (300), where it repeats the last validation inside training, which is dropped."""
    last = int(curve[-1][0])
    out = [(int(step) + (0 < step < last), loss) for step, loss in curve]
    return [p for i, p in enumerate(out) if not (i + 1 < len(out) and out[i + 1] == p)]


def curves(
    runs: list[dict[str, Any]], below_base: bool = False
) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """Per arm of the final runs: the validation steps (steps_done), the mean loss over seeds and its standard
    deviation (0 for one seed). With below_base, each run's loss minus the untrained base's on the same seed (runs
    of a seed without a base are left out): the seeds' validation splits differ, and this takes that spread out of
    the band."""
    base = base_losses(runs)
    points: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["phase"] == "final" and (not below_base or r["seed"] in base):
            for step, loss in steps_done(r["val_curve"]):
                points[r["arm"]][step].append(loss - base[r["seed"]] if below_base else loss)
    out = {}
    for arm, by_step in sorted(points.items()):
        steps = sorted(by_step)
        mean = [statistics.fmean(by_step[s]) for s in steps]
        std = [statistics.stdev(by_step[s]) if len(by_step[s]) > 1 else 0.0 for s in steps]
        out[arm] = (steps, mean, std)
    return out


def final_stretch(arm_curves: dict[str, tuple[list[int], list[float], list[float]]]) -> dict[str, tuple]:
    """What the zoomed panel shows: the second half of the steps, without the reference-init arms (the demo's
    random up-map starts far above the base loss, and on one axis with it the other arms' differences, a few
    thousandths, would be flat lines)."""
    last = max((steps[-1] for steps, _, _ in arm_curves.values()), default=0)
    out = {}
    for arm, (steps, mean, std) in arm_curves.items():
        if arm.endswith("_reference"):
            continue
        kept = [i for i, s in enumerate(steps) if s >= last / 2]
        out[arm] = tuple([seq[i] for i in kept] for seq in (steps, mean, std))
    return out


def plot(runs: list[dict[str, Any]], out_png: Path) -> Path:
    """Two panels of mean validation loss with a band of one standard deviation: every arm over every step with
    the untrained base, and final_stretch's zoom of the loss below the same seed's base, where the arms'
    differences are visible (the seeds' validation splits, which move every arm's loss alike, taken out)."""
    arm_curves = curves(runs)
    colours = {arm: f"C{i}" for i, arm in enumerate(arm_curves)}  # one colour per arm in both panels
    fig = Figure(figsize=(12, 4.8), dpi=120)
    whole, zoom = fig.subplots(1, 2)
    for ax, shown in ((whole, arm_curves), (zoom, final_stretch(curves(runs, below_base=True)))):
        for arm, (steps, mean, std) in shown.items():
            ax.plot(steps, mean, marker="o", markersize=3, label=arm, color=colours[arm])
            low, high = [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)]
            ax.fill_between(steps, low, high, alpha=0.15, color=colours[arm])
    if bases := base_losses(runs):
        whole.axhline(statistics.fmean(bases.values()), color="black", linestyle="--", label="untrained base")
    label_panel(whole, "optimiser step", "validation loss", "Validation loss per arm (mean ± 1 std over seeds)", 8)
    title = "Second half, minus the same seed's base (reference inits left out)"
    ylabel = "validation loss − untrained base's"
    return finish(fig, zoom, "optimiser step", ylabel, title, out_png, legend_size=8)


def sweep_plot(runs: list[dict[str, Any]], out_png: Path) -> dict[str, float]:
    """Each arm's validation loss after the sweep against the rate (log axis), the chosen rate (the lowest loss)
    ringed; failed rates are left out. Returns the chosen rate per arm."""
    curves: dict[str, dict[float, float]] = defaultdict(dict)
    for r in runs:
        if r["phase"] == "sweep" and r["val_loss"] is not None:
            curves[r["arm"]][r["lr"]] = r["val_loss"]
    fig = Figure(figsize=(8, 4.8), dpi=120)
    ax = fig.subplots()
    chosen = {}
    for arm, points in sorted(curves.items()):
        rates = sorted(points)
        (line,) = ax.plot(rates, [points[lr] for lr in rates], marker="o", markersize=3, label=arm)
        chosen[arm] = min(rates, key=points.get)
        ax.plot(chosen[arm], points[chosen[arm]], marker="o", markersize=10, fillstyle="none", color=line.get_color())
    ax.set_xscale("log")
    title = "Rate sweep: validation loss after the sweep's steps (seed 0; ringed: the rate chosen)"
    finish(fig, ax, "learning rate", "validation loss", title, out_png, legend_size=8)
    return chosen


def report(out: Path, runs: list[dict[str, Any]] | None = None) -> str:
    runs = collect(out) if runs is None else runs
    steps = (
        "Step time / LoRA's: the mean over seeds of the ratio to LoRA's run of the same seed on the same kind of "
        f"machine. Machines: {hosts(runs)}."
    )
    text = (
        f"## Final runs (seeds at each arm's chosen rate)\n\n{table(runs)}\n\n{steps}\n\n"
        f"## Final validation loss per seed\n\n{per_seed(runs)}\n\n"
        f"## Paired comparisons of the final validation loss (negative: a lower)\n\n{paired(runs)}\n\n"
        "|a - b| at most: the 95% interval's end farthest from zero; a larger difference is ruled out, a smaller one "
        'is not (what "no measurable difference" means in numbers).\n\n'
        "## Paired comparisons of MMLU accuracy (positive: a higher)\n\n"
        f"{paired(runs, 'mmlu', higher_is_better=True)}\n\n"
        f"## The letters behind the MMLU accuracy\n\n{letters(runs)}\n\n"
        f"## Learning-rate sweep\n\n{sweep(runs)}\n"
    )
    atomic_text(out / "report.md", text)
    if any(r["phase"] == "final" for r in runs):
        plot(runs, out / "val_loss.png")
        paired_plot(runs, out / "paired.png")
    if any(r["phase"] == "sweep" for r in runs):
        sweep_plot(runs, out / "sweep.png")
    print(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the study folder (runs.jsonl, and runs/ where the runs were made)")
    report(parser.parse_args().out)


if __name__ == "__main__":
    main()

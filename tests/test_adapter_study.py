"""experiments/adapter_study: the driver survives being killed mid-grid (finished runs are not repeated, even when
their run directories are gone, as in a fresh clone: the committed journal knows them; the interrupted one resumes
from its checkpoint; the table is complete), and the report's statistics are the textbook ones (hand-computed
Student-t intervals)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "experiments" / "adapter_study"
sys.path.insert(0, str(STUDY))

import report as study_report  # noqa: E402  (experiments/adapter_study/report.py)

TINY_GRID = [
    "--model=tiny",
    "--arms",
    "lora",
    "vqc",
    "--seeds=2",
    "--steps=4",
    "--lrs=1e-3",
    "--no-base",
    "--mmlu=0",
    "--val-size=8",
    "--val-every=2",
    "--ckpt-every=1",
    "--",
    "data.max_samples=48",
    "data.cutoff_len=96",
    "trainer.precision=32-true",
]


def start(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(STUDY / "study.py"), "--out", str(out), *TINY_GRID],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill takes the running job with it
    )


@pytest.mark.integration
def test_the_study_resumes_after_a_kill_mid_grid(tmp_path: Path) -> None:
    out = tmp_path / "study"
    runs = out / "runs"
    first, second = runs / "final-lora-s0-lr0.001", runs / "final-vqc-s0-lr0.001"
    driver = start(out)
    deadline = time.monotonic() + 240
    while not (second / "checkpoints" / "last.ckpt").exists():  # the second job is under way, past a checkpoint
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline, "the driver did not reach the second job in time"
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert (first / "metrics.json").exists() and not (second / "metrics.json").exists()
    journal = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["name"] for r in journal] == [first.name]  # journaled as it finished
    shutil.rmtree(first)  # as in a fresh clone: run directories are not committed, the journal is

    again = start(out)
    log, _ = again.communicate(timeout=300)
    assert again.returncode == 0, log
    assert not first.exists()  # finished (in the journal): not run again
    assert "] final-lora-s0-lr0.001" not in log and "] final-vqc-s0-lr0.001" in log  # only unfinished ones run
    assert "Resuming from" in (second / "driver.log").read_text()  # interrupted: resumed from its checkpoint
    lines = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted((r["arm"], r["seed"]) for r in lines) == [("lora", 0), ("lora", 1), ("vqc", 0), ("vqc", 1)]
    assert all(r["steps"] == 4 and r["val_loss"] is not None for r in lines)
    table = (out / "report.md").read_text()
    rows = [row for row in table.splitlines() if row.startswith("| lora |") or row.startswith("| vqc |")]
    assert len(rows) == 2 and all(row.split("|")[4].strip() == "2" for row in rows)  # both arms, both seeds
    assert "| vqc - lora | 2 |" in table
    assert (out / "val_loss.png").stat().st_size > 0


def test_intervals_and_paired_verdicts_by_hand() -> None:
    mean, std, half = study_report.interval([1.0, 1.2, 1.1])
    assert mean == pytest.approx(1.1) and std == pytest.approx(0.1)
    assert half == pytest.approx(4.302652729911275 * 0.1 / math.sqrt(3))  # t(0.975, 2 df) x std / sqrt(n)

    def run(arm: str, seed: int, loss: float) -> dict:
        return {"phase": "final", "arm": arm, "seed": seed, "val_loss": loss}

    clear = [run("vqc", s, 1.0 + s / 10) for s in range(3)] + [
        run("lora", s, 1.1 + s / 10 + 0.001 * s) for s in range(3)
    ]
    assert "| vqc - lora | 3 | -0.1010 | [-0.1035, -0.0985] | a better | 0.1035 |" in study_report.paired(clear)
    mixed = [run("vqc", s, 1.0) for s in range(3)] + [run("lora", s, 1.0 + d) for s, d in enumerate([0.1, -0.1, 0.02])]
    # differences -0.1, +0.1, -0.02: mean -0.0067, std 0.1007, half-width 4.3027 x 0.1007 / sqrt(3) = 0.2501
    row = "| vqc - lora | 3 | -0.0067 | [-0.2567, +0.2434] | no measurable difference | 0.2567 |"
    assert row in study_report.paired(mixed)  # a difference above 0.2567 is ruled out, one below it is not
    # MMLU: higher is better, so the same clearly negative differences now favour b
    for r in clear:
        r["mmlu"] = r.pop("val_loss")
    assert "| vqc - lora | 3 | -0.1010 | [-0.1035, -0.0985] | b better | 0.1035 |" in study_report.paired(
        clear, "mmlu", higher_is_better=True
    )
    # accuracies are counts over questions: two more right answers on every seed is no spread, not a proof
    same = [run("vqc", 0, 0.35), run("vqc", 1, 0.34), run("lora", 0, 0.34), run("lora", 1, 0.33)]  # 0.01 +- 1e-17
    row = "| vqc - lora | 2 | +0.0100 | – | the same difference on every seed: no interval | – |"
    assert row in study_report.paired(same)


def test_the_forest_plot_draws_every_comparison_with_seeds_in_common(tmp_path: Path) -> None:
    """vqc - lora over seeds 0 and 1 (differences -0.1 and +0.1: mean 0, interval +-12.706 x 0.1414 / sqrt(2)),
    quanta - lora on seed 0 alone (no interval); pairs with no seed in common are left out."""

    def run(arm: str, seed: int, loss: float) -> dict:
        return {"phase": "final", "arm": arm, "seed": seed, "val_loss": loss, "mmlu": 0.3}

    runs = [run("vqc", 0, 1.5), run("vqc", 1, 1.7), run("lora", 0, 1.6), run("lora", 1, 1.6), run("quanta", 0, 1.62)]
    rows = study_report.comparisons(runs)
    assert [r[:3] for r in rows] == [("vqc", "lora", 2), ("quanta", "lora", 1)]
    half = 12.706204736174707 * math.sqrt(0.02) / math.sqrt(2)
    assert rows[0][3:] == pytest.approx((0.0, -half, half), abs=1e-12)
    assert rows[1][3] == pytest.approx(0.02) and rows[1][4:] == (None, None)
    assert study_report.comparisons(runs, "mmlu")[0][4:] == (None, None)  # the same MMLU on every seed: no spread
    assert study_report.paired_plot(runs, tmp_path / "paired.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_letters_table_shows_what_the_mmlu_accuracy_is_made_of() -> None:
    """Two lora runs answered A 10 + 30 and C 190 + 170 times of 400: 10% and 90%; the key (A 48, B 56, C 67, D 29
    of 200) puts always-C at 67 / 200 = 0.335; base's run has no letters recorded and is left out."""

    def run(arm: str, seed: int, answered: dict | None, key: dict | None = None) -> dict:
        return {"phase": "final", "arm": arm, "seed": seed, "mmlu_letters": answered, "mmlu_key": key}

    key = {"A": 48, "B": 56, "C": 67, "D": 29}
    runs = [
        run("lora", 0, {"A": 10, "B": 0, "C": 190, "D": 0}),
        run("lora", 1, {"A": 30, "B": 0, "C": 170, "D": 0}, key),
        {**run("base", 0, None), "phase": "base"},
    ]
    text = study_report.letters(runs)
    assert "| lora | 2 | 10% | 0% | 90% | 0% |" in text and "| base |" not in text
    assert "Correct answers: A 24%, B 28%, C 34%, D 14%; answering C every time scores 0.335." in text


def test_the_per_seed_table_takes_each_seeds_base_out() -> None:
    """Bases 1.7 and 1.6 (the split follows the seed), lora 1.5 and 1.42: gains 0.2 and 0.18, mean 0.19, std
    0.0141; vqc has seed 0 only (its gain alone, no std); a final run without a loss (failed) is left out."""

    def run(arm: str, seed: int, loss: float | None, phase: str = "final") -> dict:
        return {"phase": phase, "arm": arm, "seed": seed, "val_loss": loss, "val_loss_before": loss}

    runs = [run("base", 0, 1.7, "base"), run("base", 1, 1.6, "base"), run("lora", 0, 1.5), run("lora", 1, 1.42)]
    runs += [run("vqc", 0, 1.55), run("vqc", 1, None)]
    lines = study_report.per_seed(runs).splitlines()
    assert lines[0] == "| seed | lora | vqc | base (untrained) |"
    assert lines[2:] == [
        "| 0 | 1.5000 | 1.5500 | 1.7000 |",
        "| 1 | 1.4200 | – | 1.6000 |",
        "| below the base, mean ± std | 0.1900 ± 0.0141 | 0.1500 | – |",
    ]
    assert study_report.per_seed([run("base", 0, 1.7, "base")]) == "(no final run yet)"


def test_step_time_ratios_pair_runs_of_one_seed_on_one_machine() -> None:
    """vqc's step time over LoRA's: seed 0 (host A) 3.0 / 2.0, seed 1 (host B) 4.0 / 4.0; seed 2's vqc ran on
    another machine than its LoRA run and seed 3's has no LoRA run, so neither counts: (1.5 + 1.0) / 2."""

    def run(arm: str, seed: int, step: float, host: str) -> dict:
        return {
            "phase": "final",
            "arm": arm,
            "seed": seed,
            "step_s": step,
            "host": host,
            "val_loss": 1.0,
            "val_loss_before": 1.5,
            "mmlu": None,
            "tokens_per_s": 100.0,
            "peak_rss_gb": 1.0,
            "trainable_params": 10,
            "lr": 1e-3,
        }

    runs = [run("lora", 0, 2.0, "A"), run("vqc", 0, 3.0, "A"), run("lora", 1, 4.0, "B"), run("vqc", 1, 4.0, "B")]
    runs += [run("lora", 2, 1.0, "A"), run("vqc", 2, 9.0, "B"), run("vqc", 3, 9.0, "A")]
    vqc = next(line for line in study_report.table(runs).splitlines() if line.startswith("| vqc |"))
    assert vqc.split(" | ")[7] == "1.25"
    assert study_report.hosts(runs) == "A: 4 runs; B: 3 runs"


def test_the_sweep_plot_rings_each_arms_lowest_loss_and_skips_failed_rates(tmp_path: Path) -> None:
    def run(arm: str, lr: float, loss: float | None) -> dict:
        return {"phase": "sweep", "arm": arm, "seed": 0, "lr": lr, "val_loss": loss}

    runs = [run("lora", 1e-3, 1.62), run("lora", 3e-3, 1.61), run("lora", 1e-2, 1.65)]
    runs += [run("vqc", 1e-3, 1.64), run("vqc", 1e-2, 1.617), run("vqc", 3e-2, None)]  # 3e-2 diverged
    assert study_report.sweep_plot(runs, tmp_path / "sweep.png") == {"lora": 3e-3, "vqc": 1e-2}
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [tmp_path / "sweep.png"]  # written through a temporary file, renamed


def test_the_loss_plot_averages_seeds_and_zooms_in_without_the_reference_arms(tmp_path: Path) -> None:
    def run(arm: str, seed: int, curve: list[float]) -> dict:  # as journaled: Lightning's steps, the last repeated
        logged = list(zip([0, 99, 199, 299, 300], [*curve, curve[-1]]))
        return {"phase": "final", "arm": arm, "seed": seed, "val_curve": logged}

    assert study_report.steps_done([[0, 1.7], [49, 1.6], [99, 1.5], [100, 1.5]]) == [(0, 1.7), (50, 1.6), (100, 1.5)]

    runs = [run("vqc", 0, [1.7, 1.64, 1.61, 1.60]), run("vqc", 1, [1.7, 1.62, 1.59, 1.58])]
    runs += [run("vqc_reference", 0, [3.6, 2.0, 1.7, 1.65]), run("lora", 0, [1.7, 1.63, 1.6, 1.59])]
    runs.append({"phase": "base", "arm": "base", "seed": 0, "val_loss_before": 1.7, "val_curve": []})
    arm_curves = study_report.curves(runs)
    steps, mean, std = arm_curves["vqc"]
    assert steps == [0, 100, 200, 300] and mean == pytest.approx([1.7, 1.63, 1.60, 1.59])
    assert std == pytest.approx([0.0, 0.02 / math.sqrt(2), 0.02 / math.sqrt(2), 0.02 / math.sqrt(2)])
    assert arm_curves["lora"][2] == [0.0] * 4  # one seed: no band
    zoom = study_report.final_stretch(arm_curves)
    assert sorted(zoom) == ["lora", "vqc"]  # the reference-init arm starts far above: left out of the zoom
    assert zoom["vqc"] == ([200, 300], pytest.approx([1.60, 1.59]), pytest.approx([0.02 / math.sqrt(2)] * 2))
    # below the same seed's base: seed 1's split puts its base at 1.68, 0.02 under seed 0's, and so are its vqc
    # losses from step 100 on: below their bases the two seeds agree there (no spread) and differ at the start;
    # seed 2 has no base and is left out
    runs.append({"phase": "base", "arm": "base", "seed": 1, "val_loss_before": 1.68, "val_curve": []})
    runs.append(run("vqc", 2, [1.0, 1.0, 1.0, 1.0]))
    steps, mean, std = study_report.curves(runs, below_base=True)["vqc"]
    assert mean == pytest.approx([0.01, -0.06, -0.09, -0.10])
    assert std == pytest.approx([0.02 / math.sqrt(2), 0.0, 0.0, 0.0], abs=1e-12)
    assert study_report.plot(runs, tmp_path / "val_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_journal_keeps_runs_whose_directories_are_gone_and_names_a_bad_line(tmp_path: Path) -> None:
    kept = {"name": "final-vqc-s0-lr0.001", "phase": "final", "arm": "vqc", "seed": 0, "val_loss": 1.5}
    (tmp_path / "runs.jsonl").write_text(json.dumps(kept) + "\n")
    assert study_report.collect(tmp_path) == [kept]  # no runs/ here: the journal alone
    (tmp_path / "runs.jsonl").write_text(json.dumps(kept) + "\n{half a line")
    with pytest.raises(SystemExit, match=r"runs.jsonl line 2 is not JSON .*fix or delete the line"):
        study_report.read_journal(tmp_path)


def test_rates_beyond_an_edge_are_tried_until_the_best_is_inside(tmp_path: Path) -> None:
    import study  # experiments/adapter_study/study.py

    assert [study.next_rate(lr, up) for lr, up in [(1e-3, True), (3e-3, True), (1e-4, False), (3e-5, False)]] == [
        3e-3,
        1e-2,
        3e-5,
        1e-5,
    ]
    args = study.parse(["--out", str(tmp_path), "--arms", "lora", "vqc", "vqc_reference"])

    def journal(losses: dict[str, dict[float, float | None]]) -> list[str]:
        runs = {
            study.run_name("sweep", arm, 0, lr): {
                "name": study.run_name("sweep", arm, 0, lr),
                "phase": "sweep",
                "arm": arm,
                "seed": 0,
                "lr": lr,
                "val_loss": loss,
            }
            for arm, by_lr in losses.items()
            for lr, loss in by_lr.items()
        }
        study_report.write_journal(tmp_path, runs)
        return [job.name for job in study.edge_jobs(args, tmp_path)]

    grid = {1e-4: 1.8, 3e-4: 1.7, 1e-3: 1.65}
    assert journal({"lora": grid | {3e-3: 1.60}, "vqc": grid}) == ["sweep-lora-s0-lr0.01"]  # vqc: grid unfinished
    assert journal({"lora": grid | {3e-3: 1.60, 1e-2: 1.62}}) == []  # best inside now
    assert journal({"lora": grid | {3e-3: 1.60, 1e-2: 1.59}}) == ["sweep-lora-s0-lr0.03"]
    assert journal({"lora": grid | {3e-3: 1.60, 1e-2: 1.59, 3e-2: 1.5}}) == []  # two beyond the grid: enough
    assert journal({"lora": {1e-4: 1.5, 3e-4: 1.7, 1e-3: 1.8, 3e-3: 1.9}}) == ["sweep-lora-s0-lr3e-05"]
    assert journal({"lora": grid | {3e-3: 1.60, 1e-2: None}}) == []  # failed (diverged): infinite, not the best
    assert study.choose_rates(study.parse(["--out", str(tmp_path), "--arms", "lora"]), tmp_path) == {"lora": 3e-3}


@pytest.mark.integration
def test_a_failed_sweep_run_is_journaled_and_the_study_goes_on(tmp_path: Path) -> None:
    import study  # experiments/adapter_study/study.py

    args = study.parse(["--out", str(tmp_path), "--model=tiny", "--", "model=no_such_model"])  # fails at once
    sweep = study.Job("sweep-lora-s0-lr0.01", "sweep", "lora", 0, None, 1)
    study.run_jobs([sweep], args, tmp_path)
    failed = study_report.read_journal(tmp_path)["sweep-lora-s0-lr0.01"]
    assert failed["val_loss"] is None and "failed (exit 1)" in failed["failed"]
    assert study.sweep_losses("lora", study_report.read_journal(tmp_path)) == {None: math.inf}
    final = study.Job("final-lora-s0-lr0.01", "final", "lora", 0, None, 1)
    with pytest.raises(SystemExit, match="final-lora-s0-lr0.01 failed"):
        study.run_jobs([final], args, tmp_path)


def test_a_dry_run_lists_the_jobs_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import study  # experiments/adapter_study/study.py

    out = tmp_path / "study"
    study.main(["--out", str(out), "--dry-run", *TINY_GRID[:-4]])
    assert not out.exists()
    out.mkdir()
    done = {"name": "sweep-lora-s0-lr0.001", "phase": "sweep", "arm": "lora", "seed": 0, "lr": 1e-3, "val_loss": 1.5}
    study_report.write_journal(out, {done["name"]: done})
    before = (out / "runs.jsonl").read_bytes()
    study.main(["--out", str(out), "--dry-run", "--arms", "lora", "vqc", "--lrs", "1e-3", "3e-3"])
    listed = capsys.readouterr().out
    assert "done  sweep-lora-s0-lr0.001" in listed and "todo  sweep-vqc-s0-lr0.003" in listed
    assert sorted(p.name for p in out.iterdir()) == ["runs.jsonl"] and (out / "runs.jsonl").read_bytes() == before
    # the sweep done, each arm's best rate inside what it tried: the final runs are listed at the chosen rates
    losses = {1e-3: 1.6, 3e-3: 1.5, 1e-2: 1.7}
    runs = {
        study.run_name("sweep", arm, 0, lr): {"phase": "sweep", "arm": arm, "seed": 0, "lr": lr, "val_loss": loss}
        for arm in ("lora", "vqc")
        for lr, loss in losses.items()
    }
    runs["final-vqc-s1-lr0.003"] = {"phase": "final", "arm": "vqc", "seed": 1, "lr": 3e-3, "val_loss": 1.4}
    study_report.write_journal(out, {name: run | {"name": name} for name, run in runs.items()})
    study.main(["--out", str(out), "--dry-run", "--arms", "lora", "vqc", "--lrs", "1e-3", "3e-3", "1e-2", "--no-base"])
    listed = capsys.readouterr().out
    assert "todo  final-lora-s0-lr0.003" in listed and "done  final-vqc-s1-lr0.003" in listed
    assert "1 of 6 final runs done" in listed and not (out / "rates.json").exists()

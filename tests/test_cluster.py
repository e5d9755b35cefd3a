"""Sweeps and cluster submission: the cluster group, the launchers, preemption, the multirun summary.

The SLURM tests run against the real single-node cluster that launchers/local_slurm/start.sh starts (`.ci/run` does,
as root). Where no cluster answers they are skipped, unless QFT_REQUIRE_SLURM=1 (set by CI) makes that a failure.
Every job is the real command line (`python -m quantum_ft.train -m ...`), as a user types it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from quantum_ft.cluster.geometry import geometry_problems
from quantum_ft.cluster.summary import write_summary
from quantum_ft.utils.config import compose_config, conf_dir
from tests.helpers import TINY

REPO = Path(__file__).resolve().parents[1]
# CPU jobs of one CPU each: the local cluster has two.
SLURM_CPU = ["cluster=slurm", "cluster.gpus_per_node=0", "cluster.cpus_per_task=1", "cluster.timeout_min=20"]


def compose_with_hydra(overrides: list[str]):
    return compose_config("train", overrides, hydra=True)


def slurm_answers() -> bool:
    if not shutil.which("sinfo"):
        return False
    probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    return probe.returncode == 0 and any(s in probe.stdout for s in ("idle", "mix", "alloc"))


@pytest.fixture(scope="module")
def slurm() -> None:
    if slurm_answers():
        return
    reason = "no SLURM cluster answers here: start one with `sudo launchers/local_slurm/start.sh`"
    if os.environ.get("QFT_REQUIRE_SLURM") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def sweep(*overrides: str, sweep_dir: Path, env: dict[str, str] | None = None, wait: bool = True, timeout: int = 600):
    """`python -m quantum_ft.train -m <overrides>` writing into sweep_dir; returns the finished process (or the
    running one when wait=False)."""
    cmd = [sys.executable, "-m", "quantum_ft.train", "-m", *TINY, *overrides, f"hydra.sweep.dir={sweep_dir}"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if not wait:
        log = open(sweep_dir.parent / f"{sweep_dir.name}.log", "w")  # noqa: SIM115 - the caller's process owns it
        return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT, text=True)
    done = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    return done


def metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def submitted_job_ids(sweep_dir: Path) -> list[str]:
    """SLURM ids of the sweep's jobs, `<array>_<task>`, from submitit's folders."""
    return sorted(p.name for p in (sweep_dir / ".submitit").glob("*_*") if p.is_dir())


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll `predicate`; fail at once, with the log's tail, if the process it waits on has already ended."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log else ""
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


# ---------------------------------------------------------------- configuration, no cluster needed


@pytest.mark.parametrize(
    "preset,nodes,devices,mem",
    [("slurm", 1, 1, None), ("slurm_1node_6gpu", 1, 6, 400), ("slurm_4node_8gpu", 4, 8, 800)],
)
def test_cluster_block_sets_launcher_and_trainer(preset: str, nodes: int, devices: int, mem: int | None) -> None:
    cfg = compose_with_hydra([f"cluster={preset}"])
    launcher, trainer = cfg.hydra.launcher, cfg.trainer
    assert launcher._target_ == "hydra_plugins.quantum_ft_launchers.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (nodes, devices, devices)
    assert (trainer.num_nodes, trainer.devices, launcher.mem_gb) == (nodes, devices, mem)
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0  # requeue on time limit
    assert geometry_problems(cfg, OmegaConf.to_container(launcher, resolve=True)) == []
    moved = compose_with_hydra([f"cluster={preset}", "cluster.devices=3", "cluster.num_nodes=2"])
    assert (moved.hydra.launcher.tasks_per_node, moved.trainer.devices, moved.hydra.launcher.nodes) == (3, 3, 2)


def test_local_clusters_choose_their_launchers() -> None:
    assert compose_with_hydra([]).hydra.launcher._target_.endswith("BasicLauncher")
    local = compose_with_hydra(["cluster=submitit_local", "cluster.devices=2"]).hydra.launcher
    assert local._target_ == "hydra_plugins.quantum_ft_launchers.LocalLauncher" and local.tasks_per_node == 2


@pytest.mark.parametrize(
    "overrides,problem",
    [
        (["hydra.launcher.tasks_per_node=4"], "trainer.devices=1 but hydra.launcher.tasks_per_node=4"),
        (["trainer.num_nodes=2"], "trainer.num_nodes=2 but hydra.launcher.nodes=1"),
        (["trainer.devices=auto"], "trainer.devices='auto'"),
        (["trainer.accelerator=gpu", "cluster.gpus_per_node=0"], "1 device(s) per node but 0 GPU(s)"),
        (["trainer.accelerator=cpu"], "trainer.accelerator=cpu but the job would hold 1 GPU(s)"),
    ],
)
def test_geometry_mismatches_are_named(overrides: list[str], problem: str) -> None:
    cfg = compose_with_hydra(["cluster=slurm", *overrides])
    problems = geometry_problems(cfg, OmegaConf.to_container(cfg.hydra.launcher, resolve=True))
    assert len(problems) == 1 and problem in problems[0]


def test_summary_lists_every_job_and_the_best(tmp_path: Path) -> None:
    for job, overrides, loss in [("0", ["adapter=lora", "seed=1"], 2.5), ("1", ["adapter=vqc", "seed=1"], 2.25)]:
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra/overrides.yaml").write_text(yaml.safe_dump(overrides))
        (tmp_path / job / "metrics.json").write_text(json.dumps({"val/loss_after": loss, "global_step": 7}))
    (tmp_path / "2/.hydra").mkdir(parents=True)  # a job that died before writing metrics
    (tmp_path / "2/.hydra/overrides.yaml").write_text(yaml.safe_dump(["adapter=quanta", "seed=1"]))
    text = write_summary(tmp_path, "val/loss_after").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "job" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["0", "1 **best**", "2"]
    assert "`adapter=vqc`" in rows[1] and "2.2500" in rows[1] and "failed" in rows[2]
    assert "Every job: `seed=1`" in text and "Best (min val/loss_after): job 1" in text
    table = (tmp_path / "summary.csv").read_text().splitlines()
    assert table[0].startswith("job,overrides,status") and len(table) == 4


# ---------------------------------------------------------------- through the real SLURM cluster


@pytest.mark.cluster
def test_slurm_sweep_over_two_adapters(slurm, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    done = sweep(*SLURM_CPU, "trainer=cpu", "adapter=lora,vqc", sweep_dir=out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [metrics(out / j)["adapter"] for j in ("0", "1")] == ["lora", "vqc"]
    assert all(metrics(out / j)["global_step"] == 4 for j in ("0", "1"))
    jobs = submitted_job_ids(out)
    assert len(jobs) == 2 and len({j.split("_")[0] for j in jobs}) == 1  # one job array of two tasks

    def states() -> list[str]:
        acct = subprocess.run(
            ["sacct", "-n", "-X", "-j", ",".join(jobs), "-o", "State"], capture_output=True, text=True
        )
        return acct.stdout.split()

    # submitit hands back a job's result as soon as the job wrote it; SLURM's accounting marks the job COMPLETED
    # a moment later, once its process has exited
    wait_for(lambda: "RUNNING" not in states() and "COMPLETING" not in states(), 60, "SLURM to account both jobs")
    assert states() == ["COMPLETED", "COMPLETED"]
    summary = (out / "summary.md").read_text()
    assert "`adapter=lora`" in summary and "`adapter=vqc`" in summary and "**best**" in summary


@pytest.mark.cluster
def test_slurm_two_task_ddp_job(slurm, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    done = sweep(*SLURM_CPU, "cluster.devices=2", "trainer=ddp", "trainer.accelerator=cpu", sweep_dir=out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert metrics(out / "0")["global_step"] == 4
    logs = "".join(p.read_text() for p in (out / ".submitit").rglob("*.out"))
    assert "MEMBER: 1/2" in logs and "MEMBER: 2/2" in logs  # two ranks in one process group


@pytest.mark.cluster
def test_geometry_mismatch_is_refused_before_submission(slurm, tmp_path: Path) -> None:
    out = tmp_path / "refused"
    before = subprocess.run(["sacct", "-n", "-X", "-a", "-o", "JobID"], capture_output=True, text=True).stdout
    done = sweep(*SLURM_CPU, "hydra.launcher.tasks_per_node=2", sweep_dir=out)
    assert done.returncode != 0
    assert "Nothing was submitted" in done.stderr and "tasks_per_node=2" in done.stderr
    after = subprocess.run(["sacct", "-n", "-X", "-a", "-o", "JobID"], capture_output=True, text=True).stdout
    assert after == before
    assert sorted(p.name for p in out.iterdir()) == ["multirun.yaml"]  # Hydra's record of the sweep, nothing else


@pytest.mark.cluster
def test_preempted_job_requeues_and_finishes_like_an_uninterrupted_one(slurm, tmp_path: Path) -> None:
    """USR2 to job 0 mid-training: it saves last.ckpt, submitit requeues it, the new run resumes in the same
    directory and ends at the same step with the same losses as job 1, which ran through."""
    out = tmp_path / "preempt"
    steps = ["trainer.max_steps=40", "trainer.val_check_interval=20"]
    steps += ["callbacks.model_checkpoint.every_n_train_steps=5"]
    proc = sweep(*SLURM_CPU, "trainer=cpu", *steps, "+run=preempted,straight", sweep_dir=out, wait=False)
    try:
        wait_for(lambda: any((out / "0/checkpoints").glob("step*.ckpt")), 300, "job 0 to reach step 5")
        array = submitted_job_ids(out)[0].split("_")[0]
        subprocess.run(["scancel", "--signal=USR2", f"{array}_0"], check=True)
        assert proc.wait(timeout=600) == 0, (out.parent / "preempt.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    preempted, straight = metrics(out / "0"), metrics(out / "1")
    assert preempted["global_step"] == straight["global_step"] == 40
    assert preempted["train/loss"] == pytest.approx(straight["train/loss"], rel=1e-6)
    assert preempted["val/loss_after"] == pytest.approx(straight["val/loss_after"], rel=1e-6)
    log = (out / "0/train.log").read_text()
    assert "Saved" in log and "Requeued job" in log and "Resuming from" in log
    assert len(list((out / "0/csv").glob("version_*"))) == 2  # two runs, one output directory


@pytest.mark.cluster
def test_config_edited_after_submission_does_not_reach_the_queued_job(slurm, tmp_path: Path) -> None:
    """The job waits behind a job holding both CPUs; meanwhile conf/ is edited; the job runs the frozen copy."""
    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    out = tmp_path / "frozen"
    blocker = subprocess.run(
        ["sbatch", "--parsable", "-c", "2", "-o", "/dev/null", "--wrap", "sleep 300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        proc = sweep(*SLURM_CPU, "trainer=cpu", sweep_dir=out, env={"QUANTUM_FT_CONF_DIR": str(conf)}, wait=False)
        submitted = lambda: any((out / ".submitit").glob("*"))  # noqa: E731
        wait_for(submitted, 120, "the sweep to be submitted", proc, out.parent / "frozen.log")
        train_yaml = conf / "train.yaml"
        train_yaml.write_text(train_yaml.read_text().replace("seed: 42", "seed: 7"))
    finally:
        subprocess.run(["scancel", blocker], check=True)
    assert proc.wait(timeout=600) == 0, (out.parent / "frozen.log").read_text()[-3000:]
    assert OmegaConf.load(out / "0/config.yaml").seed == 42
    assert OmegaConf.load(conf / "train.yaml").seed == 7  # the edit did happen, after submission
    assert f"quantum_ft train from {out / '.snapshot/src/quantum_ft'}" in (out / "0/train.log").read_text()


# ---------------------------------------------------------------- submitit_local: the same, without a cluster


@pytest.mark.integration
def test_submitit_local_sweep_and_ddp(tmp_path: Path) -> None:
    out = tmp_path / "local"
    done = sweep("cluster=submitit_local", "adapter=lora,vqc", sweep_dir=out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [metrics(out / j)["adapter"] for j in ("0", "1")] == ["lora", "vqc"]
    assert "**best**" in (out / "summary.md").read_text()

    ddp = tmp_path / "local_ddp"
    done = sweep("cluster=submitit_local", "cluster.devices=2", "trainer=ddp", sweep_dir=ddp)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = "".join(p.read_text() for p in (ddp / ".submitit").rglob("*.out"))
    assert "MEMBER: 2/2" in logs and metrics(ddp / "0")["global_step"] == 4


@pytest.mark.integration
def test_multi_process_job_in_a_local_multirun_is_refused(tmp_path: Path) -> None:
    """Lightning would re-run the whole `-m` command line for the second process (Hydra #2231)."""
    done = sweep("cluster.devices=2", "trainer=ddp", sweep_dir=tmp_path / "refused")
    assert done.returncode != 0 and "cluster=submitit_local" in done.stderr
    assert not (tmp_path / "refused/0/metrics.json").exists()


@pytest.mark.integration
def test_basic_sweep_matches_submitted_jobs(tmp_path: Path) -> None:
    """The default cluster (local, basic launcher) runs the same jobs in turn, with the same results."""
    out = tmp_path / "basic"
    done = sweep("adapter=lora,vqc", sweep_dir=out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [metrics(out / j)["adapter"] for j in ("0", "1")] == ["lora", "vqc"]
    assert (out / "summary.md").is_file() and not (out / ".snapshot").exists()


@pytest.mark.integration
def test_optuna_study_over_lr_and_rank(tmp_path: Path) -> None:
    out = tmp_path / "optuna"
    done = sweep("hparams_search=lora_optuna", "hydra.sweeper.n_trials=3", sweep_dir=out)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = [metrics(out / j) for j in ("0", "1", "2")]
    assert all(t["adapter"] == "lora" and t["global_step"] == 4 for t in trials)
    for j in ("0", "1", "2"):  # each trial got a sampled lr and rank
        sampled = [o.split("=")[0] for o in yaml.safe_load((out / j / ".hydra/overrides.yaml").read_text())]
        assert {"optimizer.lr", "adapter.r"} <= set(sampled)
    best = yaml.safe_load((out / "optimization_results.yaml").read_text())["best_value"]
    assert best == pytest.approx(min(t["val/loss_after"] for t in trials))
    assert "**best**" in (out / "summary.md").read_text()


@pytest.mark.cluster
def test_sbatch_template_for_users_outside_hydra(slurm, tmp_path: Path) -> None:
    """launchers/sbatch/train.sbatch, submitted by hand with its GPU shape overridden for the CPU cluster."""
    cmd = ["sbatch", "--parsable", "--wait", f"--chdir={tmp_path}", f"--export=ALL,QFT_VENV={sys.prefix}"]
    cmd += ["--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1", "--mem=2G", "--time=10"]
    done = subprocess.run(
        [*cmd, str(REPO / "launchers/sbatch/train.sbatch"), *TINY, "trainer=cpu"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    job = done.stdout.strip()
    assert done.returncode == 0, (tmp_path / f"quantum_ft-{job}.out").read_text()[-3000:]
    assert metrics(tmp_path / f"logs/sbatch/quantum_ft-{job}")["global_step"] == 4

"""DiLoCo on torch.distributed (gloo, 2 worker processes on CPU), pinned against plain-loop references.

The runs go through the real command line (`python -m quantum_ft.train ... cluster.devices=2`, Lightning
launching one process per worker), as users run it; forking workers from the test process is unsafe once
torch's thread pool exists."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from transformers import AutoModelForCausalLM

from quantum_ft.data.sampler import ResumableBatchSampler
from quantum_ft.train import train
from quantum_ft.utils.plots import read_metric_series
from tests.helpers import assert_resume_matches, compose_train

pytestmark = pytest.mark.integration  # every run goes through the command line, with worker processes

# A very small NanoGPT in float64, so equal algorithms agree to rounding.
BASE = [
    "model=nanogpt_small",
    "model.block_size=8",
    "model.n_embd=16",
    "model.n_layer=1",
    "model.n_head=2",
    "model.dtype=float64",
    "trainer.precision=64-true",
    "trainer.accelerator=cpu",
    "adapter=none",
    "data=tiny_shakespeare",
    "data.batch_size=4",
    "data.val_windows=8",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "validate_before=false",
    "validate_after=false",
    "trainer.gradient_clip_val=null",
    "trainer.val_check_interval=1000",
    "stage.scheduler=constant",
    "stage.warmup_ratio=0",
]
DILOCO = ["stage=diloco", "distributed.callbacks.diloco.comm_dtype=float64"]
ROOT = Path(__file__).resolve().parents[1]


def run(tmp: Path, *overrides: str, expect_failure: bool = False):
    """Train through the CLI; returns the composed config (for the references) and the process result."""
    cmd = [sys.executable, "-m", "quantum_ft.train", *BASE, *overrides, f"hydra.run.dir={tmp}"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if expect_failure:
        assert result.returncode != 0, "the run was expected to fail"
    else:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return compose_train([*BASE, *overrides], tmp), result


def final_params(out: Path) -> dict[str, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(out / "artifact", dtype=torch.float64)
    return {n: p.detach() for n, p in model.named_parameters()}


def reference_setup(cfg):
    """The same initial model and the same per-rank batches the workers see."""
    model = instantiate(cfg.model).load_model()
    data = instantiate(cfg.data)
    data.setup("fit")

    def batches(rank: int, world: int) -> list[torch.Tensor]:
        sampler = ResumableBatchSampler(
            len(data.train_set), cfg.data.batch_size, True, cfg.seed, rank, world, drop_last=True
        )
        return [torch.stack([data.train_set[i] for i in idx]) for idx in sampler]

    return model, batches


def loss_grads(model, ids: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def assert_same(params: dict[str, torch.Tensor], model) -> None:
    for name, p in model.named_parameters():
        torch.testing.assert_close(params[name], p.detach(), atol=1e-10, rtol=0, msg=name)


def test_tau_1_with_sgd_is_synchronous_data_parallel_sgd(tmp_path: Path) -> None:
    cfg, _ = run(
        tmp_path,
        *DILOCO,
        "cluster.devices=2",
        "distributed.callbacks.diloco.tau=1",
        "distributed.callbacks.diloco.outer_lr=1.0",
        "distributed.callbacks.diloco.outer_momentum=0.0",
        "distributed.callbacks.diloco.nesterov=false",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "trainer.max_steps=3",
    )
    model, batches = reference_setup(cfg)
    shards = [batches(r, 2) for r in range(2)]
    for step in range(3):
        grads = [loss_grads(model, shards[r][step]) for r in range(2)]
        with torch.no_grad():
            for p, g0, g1 in zip(model.parameters(), *grads):
                p -= 0.1 * (g0 + g1) / 2
    assert_same(final_params(tmp_path), model)


def test_one_worker_outer_sgd_lr_1_is_the_inner_optimiser(tmp_path: Path) -> None:
    common = ["optimizer.lr=3e-3", "trainer.max_steps=6"]
    run(tmp_path / "plain", "stage=causal_lm", *common)
    run(
        tmp_path / "diloco",
        *DILOCO,
        "cluster.devices=1",
        "distributed.callbacks.diloco.tau=2",
        "distributed.callbacks.diloco.outer_lr=1.0",
        "distributed.callbacks.diloco.outer_momentum=0.0",
        "distributed.callbacks.diloco.nesterov=false",
        *common,
    )
    plain, diloco = final_params(tmp_path / "plain"), final_params(tmp_path / "diloco")
    for name in plain:
        torch.testing.assert_close(diloco[name], plain[name], atol=1e-10, rtol=0, msg=name)


def simulate_diloco(cfg, workers: int, tau: int, steps: int, lr: float, outer_lr: float, momentum: float):
    """The algorithm as a plain single-process loop: the reference the distributed run must equal."""
    model, batches = reference_setup(cfg)
    local = [copy.deepcopy(model) for _ in range(workers)]
    inner = [torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.999)) for m in local]
    global_params = [p.detach().clone() for p in model.parameters()]
    outer = torch.optim.SGD(global_params, lr=outer_lr, momentum=momentum, nesterov=True)
    shards = [batches(r, workers) for r in range(workers)]
    for step in range(1, steps + 1):
        for r in range(workers):
            loss_grads(local[r], shards[r][step - 1])
            inner[r].step()
        if step % tau == 0:
            with torch.no_grad():
                for i, g in enumerate(global_params):
                    g.grad = sum(g - list(m.parameters())[i] for m in local) / workers
                outer.step()
                for m in local:
                    for p, g in zip(m.parameters(), global_params):
                        p.copy_(g)
    return local[0]


DILOCO_2x3 = [
    *DILOCO,
    "cluster.devices=2",
    "distributed.callbacks.diloco.tau=3",
    "distributed.callbacks.diloco.outer_lr=0.7",
    "distributed.callbacks.diloco.outer_momentum=0.9",
    "optimizer.lr=3e-3",
]


def test_two_workers_adamw_nesterov_equal_the_single_process_simulation(tmp_path: Path) -> None:
    cfg, _ = run(tmp_path, *DILOCO_2x3, "trainer.max_steps=6")
    reference = simulate_diloco(cfg, workers=2, tau=3, steps=6, lr=3e-3, outer_lr=0.7, momentum=0.9)
    assert_same(final_params(tmp_path), reference)
    # one all-reduce per trained tensor per outer step, and their payload
    n_tensors = len(list(reference.parameters()))
    calls = read_metric_series(tmp_path / "csv", "comm/all_reduces")
    assert calls[-1][1] == 2 * n_tensors
    payload = read_metric_series(tmp_path / "csv", "comm/bytes")[-1][1]
    assert payload == 2 * sum(p.numel() * 8 for p in reference.parameters())  # comm_dtype=float64: 8 bytes
    assert read_metric_series(tmp_path / "csv", "diloco/outer_step")[-1][1] == 2


def test_resume_in_the_middle_of_an_outer_loop_reproduces_the_run(tmp_path: Path) -> None:
    common = [*DILOCO_2x3, "trainer.max_steps=8", "callbacks.model_checkpoint.every_n_train_steps=2"]
    crashes, rank_files_after_crash = [], []

    def train_once(out: Path, extra: list[str]) -> None:
        _, result = run(out, *common, *extra, expect_failure=bool(extra))
        crashes.append("simulated crash" in result.stdout + result.stderr)
        if extra:
            rank_files_after_crash.extend(sorted(p.name for p in (out / "checkpoints/diloco").iterdir()))

    # crash after step 5, checkpoint at 4: resumed between outer steps 3 and 6
    assert_resume_matches(train_once, tmp_path, crash_step=5, steps=8)
    assert crashes == [False, True, False]
    # the crashed run left each rank's state at its last checkpoint (step 4); the resume read it
    assert rank_files_after_crash == ["rank0-step2.pt", "rank0-step4.pt", "rank1-step2.pt", "rank1-step4.pt"]
    assert sorted(p.name for p in (tmp_path / "straight/checkpoints/diloco").iterdir()) == [
        "rank0-step6.pt",
        "rank0-step8.pt",
        "rank1-step6.pt",
        "rank1-step8.pt",
    ]  # the two newest per rank
    straight, resumed = final_params(tmp_path / "straight"), final_params(tmp_path / "resumed")
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=1e-10, rtol=0, msg=name)


def test_ddp_baseline_counts_every_gradient_every_step(tmp_path: Path) -> None:
    cfg, _ = run(tmp_path, "stage=ddp", "cluster.devices=2", "trainer.max_steps=3", "optimizer.lr=3e-3")
    model = instantiate(cfg.model).load_model()
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert read_metric_series(tmp_path / "csv", "comm/bytes")[-1][1] == 3 * grad_bytes


def test_diloco_without_its_strategy_is_refused(tmp_path: Path) -> None:
    cfg = compose_train(
        [*BASE, "stage=causal_lm", "+callbacks.diloco._target_=quantum_ft.callbacks.DiLoCo", "trainer.max_steps=1"],
        tmp_path,
    )
    with pytest.raises(ValueError, match="DiLoCoStrategy"):
        train(cfg)

"""Every config file composes, resolves and names real classes; unknown options list the choices."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from hydra.errors import MissingConfigException
from hydra.utils import get_class, get_method
from omegaconf import OmegaConf

from quantum_ft.utils.config import conf_dir
from tests.helpers import compose_train

GROUPS = [
    "model",
    "adapter",
    "stage",
    "optimizer",
    "data",
    "cluster",
    "distributed",
    "trainer",
    "logger",
    "callbacks",
    "debug",
]
DATA_NEEDS = {
    "files": ["data.datasets=[{path: x.json}]"],
    "hub": ["data.datasets=[{name: x}]"],
    "tiny_shakespeare": ["model=nanogpt_small"],
    "enwik8": ["model=nanogpt_medium"],
    "text_file": ["model=nanogpt_small", "data.path=x.txt"],
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def assert_targets_importable(node) -> None:
    if OmegaConf.is_dict(node):
        if "_target_" in node:
            target = node["_target_"]
            try:
                get_class(target)
            except Exception:
                get_method(target)
        for key in node:
            if key != "hydra":
                assert_targets_importable(node[key])
    elif OmegaConf.is_list(node):
        for item in node:
            assert_targets_importable(item)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group: str, option: str) -> None:
    cfg = compose_train(
        [f"{group}={option}", *DATA_NEEDS.get(option, [])] if group == "data" else [f"{group}={option}"]
    )
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert_targets_importable(cfg)


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_composes(name: str) -> None:
    cfg = compose_train([f"+experiment={name}"])
    OmegaConf.resolve(cfg)
    assert_targets_importable(cfg)
    assert cfg.task_name == name


def test_no_experiment_entry_in_defaults() -> None:
    """`+experiment=NAME` works only while the primary config does not list `experiment`."""
    text = (conf_dir() / "train.yaml").read_text()
    assert "experiment" not in OmegaConf.create(text).get("defaults", [])


def test_seed_settings_survive_composition() -> None:
    qwen = compose_train(["+experiment=qwen_lora"])
    assert (qwen.data.cutoff_len, qwen.data.batch_size, qwen.trainer.accumulate_grad_batches) == (1024, 1, 8)
    assert (qwen.optimizer.lr, qwen.stage.warmup_steps, qwen.trainer.max_epochs) == (5e-5, 20, 3)
    assert list(qwen.adapter.target_modules) == ["q_proj", "v_proj"]
    llama = compose_train(["+experiment=llama_qlora"])
    assert (llama.adapter.r, llama.adapter.alpha, llama.adapter.dropout) == (16, 32, 0.05)
    assert len(llama.adapter.target_modules) == 7 and llama.stage.warmup_ratio == 0.03
    assert llama.optimizer._target_.endswith("PagedAdamW8bit") and llama.stage.gradient_checkpointing
    for name in ("phi4_qlora", "phi4_qlora_cpu"):  # the quantum training agent's recipe, on phi-4 and its CPU twin
        agent = compose_train([f"+experiment={name}"])
        assert (agent.adapter.r, agent.adapter.alpha, agent.adapter.dropout, agent.optimizer.lr) == (8, 32, 0.1, 2e-4)
        assert agent.adapter._target_.endswith("QLoraAdapter") and agent.adapter.quant_type == "nf4"
        assert agent.data.batch_size * agent.trainer.accumulate_grad_batches == 32
    phi4 = compose_train(["+experiment=phi4_qlora"])
    assert phi4.model.repo_id == "microsoft/phi-4" and phi4.trainer.max_epochs == 10
    assert phi4.callbacks.model_checkpoint.every_n_train_steps == 1000 and phi4.trainer.precision == "bf16-mixed"


def test_unknown_option_lists_the_choices() -> None:
    with pytest.raises(MissingConfigException) as err:
        compose_train(["adapter=lorra"])
    message = str(err.value)
    assert "lorra" in message and "lora" in message and "qlora" in message


def test_cluster_geometry_feeds_the_trainer() -> None:
    cfg = compose_train(["cluster.devices=2", "cluster.num_nodes=3"])
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (2, 3)


def test_stage_chooses_the_distributed_option_and_diloco_settings_live_in_one_place() -> None:
    plain = compose_train([])
    assert plain.trainer.strategy == "auto" and not plain.distributed.callbacks
    diloco = compose_train(["stage=diloco", "distributed.callbacks.diloco.tau=7"])
    assert diloco.trainer.strategy._target_ == "quantum_ft.distributed.DiLoCoStrategy"
    assert diloco.distributed.callbacks.diloco.tau == 7 and diloco.stage._target_.endswith("SFTModule")
    assert set(diloco.distributed.callbacks) == {"diloco", "communication"} and "diloco" not in diloco.callbacks
    ddp = compose_train(["stage=ddp"])
    assert ddp.trainer.strategy._target_ == "quantum_ft.distributed.MeteredDDPStrategy"
    assert set(ddp.distributed.callbacks) == {"communication"}
    # the DDP baseline of an experiment inherits nothing of DiLoCo
    baseline = compose_train(["+experiment=nanogpt_small_ddp"])
    assert "diloco" not in baseline.distributed.callbacks and baseline.trainer.max_steps == 5000


def test_optimized_metric_follows_the_stage() -> None:
    assert (compose_train([]).optimized_metric, compose_train([]).optimized_mode) == ("val/loss_after", "min")
    grpo = compose_train(["stage=grpo", "data=rl_prompts"])
    assert (grpo.optimized_metric, grpo.optimized_mode) == ("val/reward_after", "max")


ROOMS = {  # config group -> where its project classes live
    "model": "quantum_ft.models.",
    "adapter": "quantum_ft.adapters.",
    "stage": "quantum_ft.stages.",
    "data": ("quantum_ft.data.", "quantum_ft.qasm."),  # the circuit task's record transform lives with its data
    "distributed": ("quantum_ft.distributed.", "quantum_ft.callbacks."),
    "callbacks": "quantum_ft.callbacks.",
    "logger": "quantum_ft.loggers.",
    "trainer": "quantum_ft.distributed.",
}


@pytest.mark.parametrize("group", sorted(ROOMS))
def test_each_group_builds_classes_of_its_own_room(group: str) -> None:
    """The configs of a group name project classes only from the room of the code that matches it."""
    for option in options(group):
        text = (conf_dir() / group / f"{option}.yaml").read_text()
        targets = [line.split(":", 1)[1].strip() for line in text.splitlines() if "_target_:" in line]
        ours = [t for t in targets if t.startswith("quantum_ft.")]
        assert all(t.startswith(ROOMS[group]) for t in ours), (option, ours)


def test_a_users_config_directory_joins_through_the_search_path(tmp_path) -> None:
    """README: your own configs live in a directory of yours, added with hydra.searchpath."""
    (tmp_path / "experiment").mkdir()
    yaml = "# @package _global_\ntask_name: mine\noptimizer:\n  lr: 0.123\n"
    (tmp_path / "experiment" / "mine.yaml").write_text(yaml)
    cfg = compose_train([f"hydra.searchpath=[file://{tmp_path}]", "+experiment=mine"])
    assert (cfg.task_name, cfg.optimizer.lr, cfg.model.name) == ("mine", 0.123, "SmolLM2-135M-Instruct")


@pytest.mark.integration
def test_the_entry_point_reads_the_directory_quantum_ft_conf_dir_names(tmp_path) -> None:
    """A sweep's frozen snapshot (and a user's edited copy) reaches `hydra.main` through $QUANTUM_FT_CONF_DIR."""
    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    (conf / "train.yaml").write_text((conf / "train.yaml").read_text().replace("seed: 42", "seed: 7"))
    env = {**os.environ, "QUANTUM_FT_CONF_DIR": str(conf)}
    done = subprocess.run(
        [sys.executable, "-m", "quantum_ft.train", "--cfg", "job", "--package", "seed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "7"  # --package seed prints the bare value

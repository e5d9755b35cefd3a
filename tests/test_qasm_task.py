"""The circuit-writing task end to end: records -> SFT conversations and GRPO prompts, a GRPO run with the circuit
rewards (one pool for the run), SFT then GRPO through init_from, and the qasm evaluation (its reference row must
score 100%)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from quantum_ft.data.encode import IGNORE_INDEX
from quantum_ft.evaluation.qasm_task import evaluate_qasm, figures, reparameterised, summarize
from quantum_ft.qasm.generate import load
from quantum_ft.qasm.prompts import TEMPLATES, CircuitTask, describe_graph
from quantum_ft.qasm.rewards import CircuitScorer, ScorerSettings
from quantum_ft.stages.rewards import THINK_ANSWER
from quantum_ft.train import train
from quantum_ft.utils.config import ConfigError, resource
from quantum_ft.utils.pool import WorkerPool
from tests.helpers import TINY, compose_train

TRAIN = resource("qasm/train.jsonl.gz")
SMALL = ["data.transform.max_circuit_chars=700"]  # short circuits: 3-qubit QAOA and small VQE
# TINY without what the qasm data modules do not take (their validation split is the dataset's own)
QASM_TINY = [o for o in TINY if not o.startswith(("data.val_size", "data.cutoff_len"))]
GRPO_QASM = [
    "+experiment=smollm2_grpo_qasm",
    "model=tiny",
    *SMALL,
    "data.max_samples=8",
    "stage.max_new_tokens=8",
    "stage.group_size=2",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "eval.tasks=[]",
    "logger=csv",
    "ckpt_path=null",
]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return load(TRAIN)


def test_sft_conversation_states_the_task_and_replies_with_the_circuit(records) -> None:
    rec = records[0]
    chat = CircuitTask(mode="sft")(rec)["messages"]
    assert [m["role"] for m in chat] == ["system", "user", "assistant"]
    user = chat[1]["content"]
    assert f"{rec['number_of_qubits']} qubits" in user and str(rec["number_of_layers"]) in user
    assert rec["problem_type"].replace("_", " ") in user and describe_graph(rec) in user
    assert chat[2]["content"] == rec["circuit_with_params"].strip()


def test_five_templates_are_used_and_each_record_keeps_its_own(records) -> None:
    task = CircuitTask(mode="sft")
    prompts = [task(r)["messages"][1]["content"] for r in records[:200]]
    starts = {next(i for i, t in enumerate(TEMPLATES) if p.startswith(t.split("{")[0])) for p in prompts}
    assert len(TEMPLATES) >= 5 and starts == set(range(len(TEMPLATES)))
    assert prompts == [task(r)["messages"][1]["content"] for r in records[:200]]  # deterministic


def test_graph_description_names_every_edge_and_weight(records) -> None:
    rec = next(r for r in records if r["problem_type"] == "max_cut")
    text = describe_graph(rec)
    for edge in json.loads(rec["graph"])["edges"]:
        label = f"{edge['source']}-{edge['target']}"
        assert label in text
        if edge.get("weight", 1) != 1:
            assert f"{label} (weight {edge['weight']:g})" in text


def test_tags_wrap_the_reply_and_the_prompt_asks_for_them(records) -> None:
    chat = CircuitTask(mode="sft", tags=True)(records[0])["messages"]
    assert "<answer></answer>" in chat[1]["content"]
    m = re.match(THINK_ANSWER, chat[2]["content"])
    assert m is not None and m.group(1).strip() == records[0]["circuit_with_params"].strip()


def test_filters_keep_exactly_the_matching_records(records) -> None:
    task = CircuitTask(classes=["max_cut", "min_cut"], qubits=[4, 5], layers=[1], ansatz=["qaoa"])
    kept = [r for r in records if task(r) is not None]
    expected = [
        r
        for r in records
        if r["problem_type"] in ("max_cut", "min_cut")
        and r["number_of_qubits"] in (4, 5)
        and r["number_of_layers"] == 1
        and r["optimization_type"] == "qaoa"
    ]
    assert kept == expected and kept
    with pytest.raises(ValueError, match="steiner"):
        CircuitTask(classes=["steiner"])


def test_the_label_mask_teaches_the_end_of_turn_token(tmp_path: Path) -> None:
    """Agent-Q rendered with continue_final_message: its model never learned to stop. Ours does."""
    cfg = compose_train([*QASM_TINY, "data=qasm_sft", *SMALL, "data.cache_dir=null"], tmp_path / "run")
    tokenizer = instantiate(cfg.model).load_tokenizer()
    dm = instantiate(cfg.data, tokenizer=tokenizer)
    dm.setup("fit")
    assert dm.stats.val_samples == len(
        [r for r in load(resource("qasm/val.jsonl.gz")) if len(r["circuit_with_params"]) <= 700]
    )
    sample = dm.train_set[0]
    labelled = [t for t in sample.labels if t != IGNORE_INDEX]
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in labelled and tokenizer.decode(labelled).strip().endswith("<|im_end|>")
    assert "OPENQASM 3.0;" in tokenizer.decode(labelled)


def test_prompt_records_carry_the_reward_columns(tmp_path: Path) -> None:
    cfg = compose_train([*QASM_TINY, "data=qasm_prompts", *SMALL], tmp_path / "run")
    dm = instantiate(cfg.data, tokenizer=instantiate(cfg.model).load_tokenizer())
    dm.setup("fit")
    batch = dm.collate(dm.train_set[:2])
    for column in ("num_qubits", "hamiltonian", "ground_states", "reference_circuit", "tags", "problem_type"):
        assert len(batch["columns"][column]) == 2


def test_a_dataset_without_the_reward_columns_fails_at_start(tmp_path: Path) -> None:
    overrides = [o for o in GRPO_QASM if not o.startswith("data.transform")]
    cfg = compose_train([*overrides, "data=rl_prompts", "~data.transform", "data.val_size=1"], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"reward 'format' needs the prompt columns \['num_qubits'"):
        train(cfg)


def test_grpo_with_the_circuit_rewards_runs_on_one_pool_then_chains_from_its_adapter(tmp_path: Path) -> None:
    pools = WorkerPool.pools_started
    settings = ScorerSettings()
    CircuitScorer._shared.pop(settings, None)  # a fresh run in this process: its own pool
    metrics = train(compose_train([*GRPO_QASM, "adapter.r=4"], tmp_path / "first"))
    assert WorkerPool.pools_started == pools + 1  # created once for the run, not per step or per reward
    for name in ("compile", "energy", "distribution", "correct", "format", "ground_mass", "circuit_length"):
        value = metrics[f"train/rewards/{name}"]
        assert 0.0 <= value <= 1.0
    assert 0.0 <= metrics["train/reward_wait_share"] <= 1.0

    # init_from: the second run starts from the first's trained adapter, trainable, and records it
    from safetensors.torch import load_file

    from quantum_ft.models.build import build_model

    cfg = compose_train([*GRPO_QASM, f"init_from={tmp_path / 'first'}"], tmp_path / "second")
    built = build_model(cfg)
    saved = load_file(tmp_path / "first" / "artifact" / "adapter_model.safetensors")
    state = {k: v for k, v in built.model.state_dict().items() if "lora_" in k}
    name = next(k for k in saved if "lora_B" in k)
    match = next(k for k in state if k.replace(".default", "").endswith(name.split("base_model.", 1)[-1]))
    assert torch.equal(state[match], saved[name]) and saved[name].abs().sum() > 0
    assert any(p.requires_grad for p in built.model.parameters())
    train(compose_train([*GRPO_QASM, "trainer.max_steps=1", f"init_from={tmp_path / 'first'}"], tmp_path / "chained"))
    assert OmegaConf.load(tmp_path / "chained" / "config.yaml").adapter.r == 4  # what it trained, not the default 8
    with pytest.raises(ConfigError, match="adapter"):
        build_model(compose_train([*GRPO_QASM, "adapter=vqc", f"init_from={tmp_path / 'first'}"], tmp_path / "x"))
    with pytest.raises(ConfigError, match="not a finished training run"):
        build_model(compose_train([*GRPO_QASM, f"init_from={tmp_path}"], tmp_path / "y"))


def test_reference_row_scores_every_shipped_test_circuit_correct() -> None:
    """The dataset's own circuits through the evaluation's scorer: 100% compile and correct (Agent-Q's: 7.7%)."""
    rows = [CircuitTask(mode="prompt")(r) for r in load(resource("qasm/test.jsonl.gz"))]
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    scores = CircuitScorer.shared(ScorerSettings()).score(columns["reference_circuit"], columns)
    summary = summarize([figures(s) for s in scores])
    assert summary["prompts"] == 106 and summary["compile"] == 1.0 and summary["correct"] == 1.0
    assert summary["kl_below_0.1"] == 1.0 and summary["js"] == pytest.approx(0.0, abs=1e-9)


def test_random_reparameterisation_changes_only_the_angles() -> None:
    import numpy as np

    text = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nrz(0.5) q[0];\ncx q[0], q[1];\nrx(-1.25e-1) q[1];\n'
    out = reparameterised(text, np.random.default_rng(0))
    assert re.sub(r"\([^)]*\)", "()", out) == re.sub(r"\([^)]*\)", "()", text) and out != text


def test_qasm_evaluation_writes_its_tables_and_pictures(tmp_path: Path) -> None:
    cfg = compose_train(
        [
            *TINY,
            "eval.tasks=[qasm]",
            "eval.qasm.task.max_circuit_chars=700",
            "eval.qasm.max_samples=3",
            "eval.qasm.max_new_tokens=4",
            "eval.qasm.samples=2",
            "eval.qasm.baseline_draws=2",
            "eval.qasm.pictures=1",
        ],
        tmp_path,
    )
    model = instantiate(cfg.model)
    result = evaluate_qasm(model.load_model(), model.load_tokenizer(), cfg.eval.qasm, tmp_path, progress=False)
    assert result["reference"]["correct"] == 1.0 and result["model"]["prompts"] == 3
    assert result["model"]["compile"] == 0.0 and "pass@2_correct" in result["model"]
    assert Path(result["pictures"][0]).is_file()
    lines = (tmp_path / "qasm_samples.jsonl").read_text().splitlines()
    assert len(lines) == 3 and len(json.loads(lines[0])["completions"]) == 2

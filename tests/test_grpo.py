"""The GRPO stage: prompt data, rewards by hand, the step's gradient against a plain per-sequence loop, learning,
and a whole run through `train`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from quantum_ft.data.formats import DataFormatError
from quantum_ft.data.prompts import Prompt, PromptDataModule, prompt_messages
from quantum_ft.stages.grpo import GRPOModule, completion_mask
from quantum_ft.stages.grpo_objective import group_advantages
from quantum_ft.stages.rewards import ContainsReference, Diversity, EndsWithEOS, TagFormat, TargetLength
from quantum_ft.train import train
from quantum_ft.utils.plots import read_metric_series
from tests.helpers import assert_resume_matches, compose_train, until_crash

GRPO_TINY = [
    "model=tiny",
    "stage=grpo",
    "data=rl_prompts",
    "stage.max_new_tokens=8",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
    "callbacks.sample_generations.max_new_tokens=4",
    "logger=csv",
    "trainer.precision=32-true",
]


# ---------------------------------------------------------------- data
def test_prompt_messages_from_each_record_shape() -> None:
    messages, columns = prompt_messages({"prompt": "2+2=", "reference": "4", "graph": [1, 2]})
    assert messages == [{"role": "user", "content": "2+2="}] and columns == {"reference": "4", "graph": [1, 2]}
    messages, columns = prompt_messages({"instruction": "Add", "input": "2 and 2", "output": "4"})
    assert messages == [{"role": "user", "content": "Add\n\n2 and 2"}] and columns["reference"] == "4"
    messages, _ = prompt_messages({"instruction": "Name a colour."})  # no reply: a prompt-only alpaca record
    assert messages == [{"role": "user", "content": "Name a colour."}]
    with pytest.raises(DataFormatError, match="end with a user message"):
        prompt_messages({"prompt": [{"role": "assistant", "content": "hi"}]})
    with pytest.raises(DataFormatError, match="'prompt' must be"):
        prompt_messages({"prompt": 3})


def test_prompt_batches_are_left_padded_with_their_columns(smol_tokenizer) -> None:
    data = PromptDataModule(smol_tokenizer, [{"path": "unused.json"}])
    batch = data.collate([Prompt([5, 6, 7], "a", {"x": 1}), Prompt([8], "b", {})])
    pad = smol_tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 7], [pad, pad, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["prompts"] == ["a", "b"] and batch["columns"] == {"x": [1, None]}


def test_prompt_datamodule_renders_chat_and_splits(tmp_path: Path, smol_tokenizer) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "answer": i}) + "\n" for i in range(6)))
    cfg = compose_train(["stage=grpo", "data=rl_prompts", f"data.datasets=[{{path: {path}}}]", "data.val_size=2"])
    dm = instantiate(cfg.data, tokenizer=smol_tokenizer)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (4, 2)
    p = dm.train_set[0]
    rendered = smol_tokenizer.decode(p.input_ids)
    assert rendered.endswith("<|im_start|>assistant\n") and f"{p.text}<|im_end|>" in rendered
    assert p.columns["answer"] == int(p.text[1:])


# ---------------------------------------------------------------- rewards and masks
def test_rewards_by_hand() -> None:
    completions = ["a b a b", "x" * 10, ""]
    assert TargetLength(target=10)(["p"] * 3, completions) == pytest.approx([0.7, 1.0, 0.0])
    assert Diversity()(["p"] * 3, completions) == pytest.approx([0.5, 1.0, 0.0])
    assert EndsWithEOS()(["p"] * 2, ["a", "b"], finished=[True, False]) == [1.0, 0.0]
    assert TagFormat()(["p"] * 2, ["<think>hm</think>\n<answer>4</answer>", "<answer>4</answer>"]) == [1.0, 0.0]
    assert ContainsReference()(["p"] * 3, ["It is  PARIS.", "Lyon", "x"], reference=["paris", "Paris", None]) == [
        1.0,
        0.0,
        None,
    ]


def test_completion_mask_stops_after_first_eos() -> None:
    mask, finished = completion_mask(torch.tensor([[4, 2, 9, 2], [4, 5, 6, 7]]), eos_token_id=2)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]] and finished == [True, False]


# ---------------------------------------------------------------- the step
def _module(*overrides: str) -> tuple[GRPOModule, dict]:
    cfg = compose_train([*GRPO_TINY, *overrides])
    source, adapter = instantiate(cfg.model), instantiate(cfg.adapter)
    tokenizer = source.load_tokenizer()
    dm = instantiate(cfg.data, tokenizer=tokenizer)
    dm.setup("fit")
    model = adapter.apply(source.load_model())
    module = instantiate(cfg.stage, model=model, tokenizer=tokenizer, optimizer=instantiate(cfg.optimizer))
    batch = dm.collate(dm.train_set[:2])  # prompts of different lengths
    return module, batch


def test_step_gradient_matches_a_plain_loop_over_unpadded_sequences() -> None:
    """With num_iterations = 1 the ratio is 1 and -J's gradient is -1/N sum_i A_i / |o_i| sum_t grad log pi(o_it):
    recomputed here one sequence at a time, without padding, position ids or masks."""
    torch.manual_seed(0)
    module, batch = _module("stage.beta=0", "stage.group_size=3", "stage.temperature=1.0")
    trained = [p for p in module.model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in trained:  # LoRA's B starts at 0: make the adapter matter
            p.add_(torch.randn_like(p) * 0.2)
    module.model.train()
    for m in module.model.modules():  # no dropout: both computations must see the same function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0

    rollouts = {}
    rollout = module.rollout

    def keep(*args, **kwargs):
        rollouts["out"] = rollout(*args, **kwargs)
        return rollouts["out"]

    module.rollout = keep
    module.log = lambda *a, **k: None
    loss = module.training_step(batch, 0)
    loss.backward()
    got = [p.grad.clone() for p in trained]
    module.model.zero_grad()

    out = rollouts["out"]
    assert len(set(out["reward"].tolist())) > 1, "all rewards equal: the test would compare zeros"
    advantages = group_advantages(out["reward"], 3)
    total = 0.0
    for i, (completion, mask) in enumerate(zip(out["completion"], out["mask"])):
        prompt = batch["input_ids"][i // 3][batch["attention_mask"][i // 3].bool()]
        tokens = completion[: int(mask.sum())]
        logits = module.model(input_ids=torch.cat([prompt, tokens])[None]).logits[0, len(prompt) - 1 : -1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, tokens[:, None]).sum()
        total = total - advantages[i] * logp / len(tokens)
    (total / len(out["completion"])).backward()
    for g, p in zip(got, trained):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


def _no_dropout(module: GRPOModule) -> None:
    for m in module.model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def test_completion_only_logits_give_the_full_forwards_logprobs() -> None:
    """logits_to_keep: the LM head on the completion positions only, same log-probs as the whole sequence's."""
    torch.manual_seed(0)
    module, batch = _module("stage.group_size=2")
    assert module.keeps_logits  # the tiny Llama (and every Hugging Face causal LM) takes logits_to_keep
    _no_dropout(module)
    out = module.rollout(batch, 2)
    kept = module.token_logprobs(module.model, batch, out["completion"], out["mask"])
    module.keeps_logits = False
    full = module.token_logprobs(module.model, batch, out["completion"], out["mask"])
    torch.testing.assert_close(kept, full, rtol=0, atol=1e-6)


def _steps(module: GRPOModule, batch: dict, steps: int, lr: float) -> list[dict[str, float]]:
    """`steps` training steps on the same batch with SGD, what each logged, and how many times it sampled."""
    optimizer = torch.optim.SGD([p for p in module.model.parameters() if p.requires_grad], lr=lr)
    generated = []
    generate = module.generate_batch
    module.generate_batch = lambda b: (generated.append(1), generate(b))
    history: list[dict[str, float]] = []
    module.log = lambda name, value, **k: history[-1].__setitem__(name, float(value))
    for _ in range(steps):
        history.append({})
        optimizer.zero_grad()
        module.training_step(batch, 0).backward()
        optimizer.step()
        history[-1]["generations"] = len(generated)
    return history


def test_num_iterations_reuses_rollouts_and_the_clip_acts() -> None:
    """num_iterations = 2: one generation for two updates; on the second the policy has moved from the one that
    sampled, so ratios leave [1 - eps, 1 + eps] and train/clip_fraction is non-zero. With 1 it is always 0."""
    torch.manual_seed(0)
    module, batch = _module("stage.beta=0", "stage.num_iterations=2", "stage.epsilon=0.01", "stage.temperature=1.0")
    _no_dropout(module)
    steps = _steps(module, batch, 4, lr=2.0)
    assert [s["generations"] for s in steps] == [1, 1, 2, 2]
    assert steps[0]["train/clip_fraction"] == 0.0  # the sampling policy is still the trained one
    assert steps[1]["train/clip_fraction"] > 0.0
    assert steps[1]["train/reward"] == steps[0]["train/reward"]  # the same rollouts
    torch.manual_seed(0)
    module, batch = _module("stage.beta=0", "stage.epsilon=0.01", "stage.temperature=1.0")
    steps = _steps(module, batch, 2, lr=2.0)
    assert [s["generations"] for s in steps] == [1, 2] and all(s["train/clip_fraction"] == 0.0 for s in steps)


# The SGD rate each adapter needs to move the policy past epsilon in one step: quanTA's gates get gradients about a
# tenth of LoRA's (a product of near-orthogonal factors), full fine-tuning moves every weight.
# qlora runs on bitsandbytes' CPU backend here (float32 compute), on CUDA elsewhere.
ADAPTER_LR = {"lora": 2.0, "qlora": 2.0, "vqc": 2.0, "tq": 2.0, "quanta": 20.0, "none": 0.05}


@pytest.mark.parametrize("adapter", list(ADAPTER_LR))
def test_every_adapter_trains_under_rollout_reuse_with_kl(adapter: str) -> None:
    """The at-scale paths (a generation batch reused for 2 updates, old log-probs, the KL reference, dapo, the LM
    head on completion positions) with each adapter: finite losses, the reference is what the adapter offers
    (adapter off, or a frozen copy for full fine-tuning), the trained tensors move and on the reused rollouts the
    clip acts."""
    torch.manual_seed(0)
    options = ["stage.beta=0.04", "stage.num_iterations=2", "stage.epsilon=0.01"]
    if adapter == "qlora":
        options.append("adapter.compute_dtype=float32")
    module, batch = _module(f"adapter={adapter}", *options, "stage.temperature=1.0")
    _no_dropout(module)
    assert module.keeps_logits
    assert (module.reference_model is None) == (adapter != "none")
    before = {n: p.detach().clone() for n, p in module.model.named_parameters() if p.requires_grad}
    steps = _steps(module, batch, 2, lr=ADAPTER_LR[adapter])
    assert [s["generations"] for s in steps] == [1, 1]
    assert all(torch.isfinite(torch.tensor([s["train/loss"], s["train/kl"]])).all() for s in steps)
    moved = [n for n, p in module.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert moved, f"{adapter}: no trained tensor moved"
    assert steps[1]["train/clip_fraction"] > 0.0, f"{adapter}: the policy did not move off the sampling one"


def test_steps_per_generation_splits_one_generation_batch_over_steps() -> None:
    torch.manual_seed(0)
    module, batch = _module("stage.steps_per_generation=2", "stage.group_size=2")
    steps = _steps(module, batch, 2, lr=0.1)
    assert [s["generations"] for s in steps] == [1, 1]
    assert [part["rows"] for part in module.buffer] == [[0, 1], [1, 2]]  # a prompt each, two groups of 2
    assert all(len(part["reward"]) == 2 for part in module.buffer)


@pytest.mark.parametrize("top_k", [None, 5])
def test_top_k_null_samples_the_whole_vocabulary_and_a_value_cuts_it(top_k: int | None) -> None:
    """transformers fills an unset top_k with 50: null must still mean no cut. 256 first tokens at temperature 5
    from the tiny model's near-flat distribution, ranked by its logits."""
    from quantum_ft.rollout import sample_completions

    torch.manual_seed(0)
    value = "null" if top_k is None else top_k
    module, batch = _module(
        f"stage.top_k={value}", "stage.temperature=5.0", "stage.top_p=1.0", "stage.max_new_tokens=1"
    )
    keep = batch["attention_mask"][0].bool()
    prompt = {"input_ids": batch["input_ids"][0][keep][None], "attention_mask": batch["attention_mask"][0][keep][None]}
    tokens = sample_completions(module.model, prompt, seed=0, **module.generation_settings(256))[:, 0]
    with torch.no_grad():
        logits = module.model(**prompt).logits[0, -1]
    ranks = (logits[None, :] > logits[tokens][:, None]).sum(1)
    if top_k is None:
        assert ranks.max() >= 50
    else:
        assert ranks.max() < top_k


def test_truncated_completions_can_be_left_out_of_the_loss() -> None:
    torch.manual_seed(0)
    module, batch = _module("stage.mask_truncated_completions=true", "stage.max_new_tokens=3")
    module.log = lambda *a, **k: None
    module.training_step(batch, 0)
    part = module.buffer[0]
    assert not part["finished"].all(), "every completion ended within 3 tokens: nothing to mask"
    assert (part["loss_mask"][~part["finished"]] == 0).all()
    assert torch.equal(part["loss_mask"][part["finished"]], part["mask"][part["finished"]])


def test_kl_is_zero_at_start_and_grows_with_training() -> None:
    torch.manual_seed(0)
    module, batch = _module("stage.beta=0.1")
    logged = {}
    module.log = lambda name, value, **k: logged.__setitem__(name, float(value))
    module.training_step(batch, 0)
    assert logged["train/kl"] == pytest.approx(0.0, abs=1e-10)  # LoRA starts as the identity: policy = reference
    with torch.no_grad():
        for p in module.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    module.training_step(batch, 0)
    assert logged["train/kl"] > 1e-4


def test_full_finetune_with_kl_uses_a_frozen_copy() -> None:
    module, batch = _module("adapter=none", "stage.beta=0.1")
    assert module.reference_model is not None
    assert not any(p.requires_grad for p in module.reference_model.parameters())
    module.log = lambda *a, **k: None
    reference = {n: p.clone() for n, p in module.reference_model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in module.model.parameters() if p.requires_grad], lr=1.0)
    module.training_step(batch, 0).backward()
    assert all(p.grad is None for p in module.reference_model.parameters())  # nothing flows into the copy
    optimizer.step()
    for name, p in module.reference_model.named_parameters():
        assert torch.equal(p, reference[name]), name  # the policy moved, the reference did not
    moved = [n for n, p in module.model.named_parameters() if not torch.equal(p, reference[n])]
    assert moved, "the policy did not move either"


def test_bad_reward_weights_are_refused() -> None:
    with pytest.raises(InstantiationException, match="not in stage.rewards"):
        _module("+stage.reward_weights.typo=1.0")


@pytest.mark.integration  # several end-to-end runs compared with each other
def test_grpo_raises_the_reward_it_is_given(tmp_path: Path) -> None:
    """A reward a random model earns half of by chance and can learn in a few steps: the share of completion tokens
    in the lower half of the vocabulary. Mean training reward must rise well above its start."""
    cfg = compose_train(
        [
            *(o for o in GRPO_TINY if not o.startswith("callbacks.")),
            "trainer.max_steps=25",
            "trainer.val_check_interval=25",
            "stage.max_new_tokens=6",
            "stage.group_size=8",
            "stage.beta=0",
            "stage.temperature=1.0",
            "stage.top_p=1.0",
            "stage.top_k=50",
            "adapter=none",
            "optimizer.lr=1e-3",
            "~stage.rewards",
            "~stage.reward_weights",
            "+stage.rewards.token._target_=tests.test_grpo.TokenShare",
            "validate_before=false",
            "validate_after=false",
            "callbacks=none",
            "ckpt_path=null",
        ],
        tmp_path / "run",
    )
    train(cfg)
    assert (tmp_path / "run" / "reward_curve.png").is_file()
    rewards = [
        float(r["train/reward"])
        for r in __import__("csv").DictReader((next((tmp_path / "run" / "csv").rglob("metrics.csv"))).open())
        if r.get("train/reward")
    ]
    assert len(rewards) == 25
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.2


class TokenShare:
    """Share of completion tokens whose id is below half of SmolLM2's vocabulary (49,152)."""

    def __call__(self, prompts, completions, completion_ids, **_):
        return [sum(t < 24_576 for t in ids) / max(len(ids), 1) for ids in completion_ids]


def test_a_run_logs_its_step_time_split_and_completion_tables(tmp_path: Path) -> None:
    overrides = [o for o in GRPO_TINY if o != "logger=csv"]
    extra = ["callbacks.completions_table.every_n_steps=1", "stage.num_iterations=2", "trainer.max_steps=3"]
    train(compose_train([*overrides, *extra], tmp_path))
    table = list(__import__("csv").DictReader((tmp_path / "completions.csv").open()))
    assert [r["step"] for r in table] == ["1"] * 4 + ["3"] * 4  # a prompt's 4 completions, when freshly sampled
    assert {"prompt", "completion", "reward", "length", "eos", "diversity"} <= set(table[0])
    events = b"".join(p.read_bytes() for p in (tmp_path / "tensorboard").rglob("events.out.tfevents*"))
    assert b"train/completions" in events
    generate = read_metric_series(tmp_path / "csv", "train/time/generate_s")
    assert generate[0][1] > 0 and generate[1][1] == 0 < generate[2][1]  # step 2 reuses step 1's rollouts
    assert all(v > 0 for _, v in read_metric_series(tmp_path / "csv", "train/time/update_s"))


@pytest.mark.integration  # Lightning starts a second process
def test_grpo_under_ddp_with_the_global_token_loss(tmp_path: Path) -> None:
    """trainer=ddp on CPU (gloo): each rank samples its own prompts' groups, dapo counts every rank's tokens (an
    all-reduce inside the step), rollouts are reused; too small a validation set for 2 ranks is refused clearly."""
    cmd = [sys.executable, "-m", "quantum_ft.train", *GRPO_TINY, "cluster.devices=2", "trainer=ddp"]
    cmd += ["stage.loss_type=dapo", "stage.num_iterations=2"]
    refused = subprocess.run([*cmd, f"hydra.run.dir={tmp_path / 'refused'}"], capture_output=True, text=True)
    assert refused.returncode != 0 and "fewer than the 2 processes" in refused.stderr
    done = subprocess.run([*cmd, "data.val_size=2", f"hydra.run.dir={tmp_path}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["train/reward"] > 0


@pytest.mark.integration  # Lightning starts a second process
def test_ddp_update_equals_one_process_with_the_global_batch(tmp_path: Path) -> None:
    """2 ranks of 1 prompt each against 1 process of 2 prompts: the same prompts a step (the sampler's interleaved
    shards), the same completions (a rollout engine seeded by prompt text), so dapo's token count over both ranks
    and DDP's gradient mean must give the one process's weights after 2 steps (one of them off-policy, clip and KL
    on) to 1e-5."""
    from safetensors.torch import load_file

    common = [
        *(o for o in GRPO_TINY if not o.startswith(("callbacks.", "trainer.val_check"))),
        "+stage.rollout._target_=tests.helpers.rollouts.PromptSeededRollouts",
        "stage.loss_type=dapo",
        "stage.num_iterations=2",
        "stage.beta=0.04",
        "stage.epsilon=0.05",
        "stage.temperature=1.0",
        "adapter.dropout=0",
        "optimizer=sgd",
        "optimizer.lr=2.0",
        "trainer.limit_val_batches=0",
        "data.val_size=2",
        "validate_before=false",
        "validate_after=false",
        "callbacks=none",
    ]
    runs = {"single": ["data.batch_size=2"], "ddp": ["data.batch_size=1", "trainer=ddp", "cluster.devices=2"]}
    weights = {}
    for name, extra in runs.items():
        cmd = [sys.executable, "-m", "quantum_ft.train", *common, *extra, f"hydra.run.dir={tmp_path / name}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        weights[name] = load_file(tmp_path / name / "artifact" / "adapter_model.safetensors")
    assert weights["single"].keys() == weights["ddp"].keys()
    lora_b = [k for k in weights["single"] if "lora_B" in k]
    assert lora_b and max(weights["single"][k].abs().max() for k in lora_b) > 1e-2  # B starts at 0: it moved
    for key, value in weights["single"].items():
        torch.testing.assert_close(weights["ddp"][key], value, atol=1e-5, rtol=0, msg=key)


@pytest.mark.integration  # several end-to-end runs compared with each other
@pytest.mark.parametrize(
    ("crash_step", "reuse"),
    [
        (3, []),
        (5, []),
        (3, ["stage.num_iterations=2", "stage.steps_per_generation=2"]),
        (3, ["stage.num_iterations=2", "stage.steps_per_generation=2", "rollout=ray", "stage.rollout.cpus=2"]),
    ],
)
def test_interrupted_grpo_run_resumes_to_the_same_rollouts(
    tmp_path: Path, crash_step: int, reuse: list, no_ray_left: None
) -> None:
    """Crash after step 3 or 5 (checkpoints every 2 steps, 4 prompts an epoch), resume from step 2 or 4 (the end of
    epoch 0): the sampled groups (each step seeded by run seed, rank and step) and so the per-step rewards and
    losses equal an uninterrupted run's. With rollout reuse (a generation batch of 2 prompts for 4 steps) the
    checkpoint at step 2 falls mid-cycle: the resumed run trains on the saved rollouts."""
    common = [
        *GRPO_TINY,
        *reuse,
        "trainer.max_steps=7",
        "trainer.val_check_interval=3",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "stage.beta=0.04",
        "adapter.dropout=0.1",
    ]

    run = until_crash(lambda out, extra: train(compose_train([*common, *extra], out)))
    metrics = ("train/reward", "train/loss", "train/completion_tokens")
    assert_resume_matches(run, tmp_path, crash_step, steps=7, metrics=metrics)


# ---------------------------------------------------------------- rollouts on Ray actors
@pytest.mark.integration  # a local Ray: its processes and two actors
def test_ray_actors_sample_the_in_process_rollouts_and_survive_a_dead_actor(no_ray_left: None) -> None:
    """rollout=ray with 2 local actors: the same completions as sampling in the trainer's process for the same
    seeds, the trained tensors sent to both (their bytes counted), and a killed actor restarted with its slice
    re-run, giving the same completions again."""
    ray = pytest.importorskip("ray")
    from quantum_ft.rollout.ray_actors import RayRollouts

    torch.manual_seed(0)
    module, batch = _module("stage.steps_per_generation=2", "stage.group_size=3", "stage.temperature=1.0")
    with torch.no_grad():  # trained tensors that differ from the ones the actors start with
        for p in module.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)

    def completions() -> list[torch.Tensor]:
        torch.manual_seed(1)  # the step's stream, from which the slices' seeds are drawn
        module.generate_batch(batch)
        return [part["completion"] for part in module.buffer]

    local = completions()
    engine = RayRollouts(actors=2, cpus=2)
    module.rollout_engine = engine
    try:
        remote = completions()
        assert len(remote) == 2 and all(torch.equal(a, b) for a, b in zip(local, remote))
        trained = sum(p.numel() * p.element_size() for p in module.model.parameters() if p.requires_grad)
        assert engine.weight_bytes == 2 * trained
        first = ray.get(engine.actors[0].pid.remote())
        ray.kill(engine.actors[0], no_restart=False)  # Ray restarts it (max_restarts)
        again = completions()
        assert all(torch.equal(a, b) for a, b in zip(local, again))
        assert ray.get(engine.actors[0].pid.remote()) != first  # a new process did the work
    finally:
        engine.close()
    assert not ray.is_initialized()  # the Ray it started is gone with it


@pytest.fixture
def no_ray_left() -> Iterator[None]:
    """A run interrupted on purpose ends without its teardown: the local Ray it started must not outlive the test
    (the CLI's process exit ends it)."""
    yield
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()

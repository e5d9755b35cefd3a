"""End-to-end training on the tiny model: each adapter, checkpoints, resume, artifact, export, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from quantum_ft.models.base import ModelUnavailableError
from quantum_ft.models.build import from_checkpoint
from quantum_ft.train import train
from quantum_ft.utils.config import ConfigError
from quantum_ft.utils.plots import read_metric_series
from tests.conftest import copy_run
from tests.helpers import assert_resume_matches

PREFIX = {"lora": "lora_", "qlora": "lora_", "vqc": "vqc_", "tq": "tq_", "quanta": "quanta_"}
ADAPTERS = ["none", "lora", "qlora", "vqc", "tq", "quanta"]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_each_adapter_trains_a_few_steps(trained_run, adapter: str) -> None:
    cfg, metrics = trained_run(adapter)
    out = Path(cfg.paths.output_dir)
    assert math.isfinite(metrics["val/loss_before"]) and math.isfinite(metrics["val/loss_after"])
    assert metrics["val/loss_after"] < metrics["val/loss_before"]
    assert (out / "artifact" / "quantum_ft_config.yaml").is_file() and (out / "loss_curve.png").is_file()
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    keys = set(ckpt["state_dict"])
    assert ckpt["global_step"] == 4 and "optimizer_states" in ckpt and "lr_schedulers" in ckpt
    if adapter == "none":
        assert "model.model.embed_tokens.weight" in keys
    else:  # only what is trained, on q_proj and v_proj of both layers
        assert keys and all(PREFIX[adapter] in k for k in keys)
        assert {k.split(".layers.")[1].split(".")[0] for k in keys} == {"0", "1"}
        assert {k.split("self_attn.")[1].split(".")[0] for k in keys} == {"q_proj", "v_proj"}
    assert len(read_metric_series(out / "csv", "train/loss")) == 4
    assert len(read_metric_series(out / "csv", "train/tokens_per_s")) == 4


@pytest.mark.integration  # several end-to-end runs compared with each other
@pytest.mark.parametrize("crash_step", [7, 11, 13])
def test_resumed_run_logs_the_same_losses(train_until_crash, tmp_path: Path, crash_step: int) -> None:
    """Crash after step 7, 11 or 13 (checkpoints every 2 steps; 10 batches an epoch), resume from step 6 (epoch 0),
    10 (the last batch of epoch 0: the next epoch's DataLoader iterator draws random numbers before step 11) or 12
    (epoch 1), finish: the per-step losses (dropout 0.2) in the CSV logs equal those of an uninterrupted run."""
    run = train_until_crash(
        "trainer.max_steps=14",
        "data.max_samples=28",
        "data.batch_size=2",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "adapter.dropout=0.2",
        "trainer.val_check_interval=5",
    )
    assert_resume_matches(run, tmp_path, crash_step, steps=14)


@pytest.mark.integration  # several end-to-end runs compared with each other
def test_vqc_run_resumes_from_its_checkpoint(train_until_crash, tmp_path: Path) -> None:
    run = train_until_crash("adapter=vqc", "trainer.max_steps=6", "callbacks.model_checkpoint.every_n_train_steps=2")
    assert_resume_matches(run, tmp_path, crash_step=3, steps=6, checkpoint_step=2)


@pytest.mark.parametrize("adapter", ["lora", "quanta"])
def test_artifact_loads_with_peft_and_export_keeps_logits(trained_run, tmp_path: Path, adapter: str) -> None:
    from hydra.utils import instantiate
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from quantum_ft.export import export

    cfg, _ = trained_run(adapter)
    out = Path(cfg.paths.output_dir)
    source = instantiate(cfg.model)
    tokenizer = source.load_tokenizer()
    ids = tokenizer(["The capital of France is", "Hello there"], return_tensors="pt", padding=True)
    with torch.no_grad():
        base_logits = source.load_model()(**ids).logits
        adapted = PeftModel.from_pretrained(source.load_model(), out / "artifact").eval()
        adapted_logits = adapted(**ids).logits
        merged = AutoModelForCausalLM.from_pretrained(export(out, tmp_path / "merged")).eval()
        merged_logits = merged(**ids).logits
    assert not torch.allclose(adapted_logits, base_logits, atol=1e-4), "training changed nothing"
    assert not any("lora" in n for n, _ in merged.named_parameters())
    # folding the fp32 update into W agrees with the unmerged adapter to float rounding
    torch.testing.assert_close(merged_logits, adapted_logits, atol=1e-5, rtol=1e-5)


def test_qlora_forward_backward_on_cpu(tiny_cfg) -> None:
    from bitsandbytes.nn import Linear4bit
    from hydra.utils import instantiate

    cfg = tiny_cfg("adapter=qlora", "adapter.compute_dtype=float32")
    source, adapter = instantiate(cfg.model), instantiate(cfg.adapter)
    full = source.load_model()
    model = adapter.apply(source.load_model(quantization_config=adapter.quantization_config()))
    assert sum(isinstance(m, Linear4bit) for m in model.modules()) == 2 * 7
    ids = torch.randint(0, 1000, (2, 16))
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n and g is not None and torch.isfinite(g).all() for n, g in grads.items())
    with torch.no_grad():
        reference = full(input_ids=ids).logits
    # NF4 keeps the function close: typical logit error is a few hundredths on this model
    assert (out.logits.detach() - reference).abs().mean() < 0.1


def test_ckpt_path_pointing_at_nothing(tiny_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="points at nothing"):
        train(tiny_cfg(f"ckpt_path={tmp_path}/missing.ckpt"))
    with pytest.raises(ConfigError, match="ckpt_path=last"):
        train(tiny_cfg("ckpt_path=last"))


def test_a_checkpoint_that_carries_code_is_refused(trained_run, tmp_path: Path) -> None:
    """Checkpoints load weights-only: a pickle that would run code when unpickled is refused, and nothing runs."""
    import pickle

    cfg, _ = trained_run("lora")
    run = copy_run(cfg, tmp_path / "run")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    ckpt["extra"] = Payload()
    torch.save(ckpt, run / "checkpoints/last.ckpt", pickle_module=pickle)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run)
        cfg.trainer.max_steps = 5
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train(cfg)
    assert not marker.exists()


def test_a_resumed_run_shows_no_library_noise_and_a_fresh_run_in_a_used_directory_is_warned(
    trained_run, tmp_path: Path
) -> None:
    """Lightning warns at every resume that the checkpoint directory is not empty (resuming there is the design) and,
    wherever an srun binary exists, that srun was not used: both silenced by their text. Started afresh
    (ckpt_path=null) in a directory with checkpoints, a run is still warned that it may overwrite them."""
    import warnings

    cfg, _ = trained_run("lora")
    run = copy_run(cfg, tmp_path / "run")
    with open_dict(cfg):
        cfg.paths.output_dir = str(run)
        cfg.trainer.max_steps = 5

    def messages(config) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(config)
        return [str(w.message) for w in caught]

    resumed = messages(cfg)
    assert len(read_metric_series(run / "csv", "train/loss")) == 5  # it resumed: the 4 steps trained and a fifth
    assert not [m for m in resumed if "exists and is not empty" in m or "`srun`" in m]
    with open_dict(cfg):
        cfg.ckpt_path, cfg.trainer.max_steps, cfg.validate_before = None, 1, False  # the warning comes at setup
    assert any("exists and is not empty" in m for m in messages(cfg))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
@pytest.mark.parametrize(
    "override",
    [
        "optimizer=paged_adamw_8bit",
        "trainer.precision=16-mixed",
        "trainer.accelerator=gpu",
        "trainer=fsdp",
        "trainer=deepspeed",
    ],
)
def test_cuda_only_options_are_refused_without_cuda(tiny_cfg, override: str) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        train(tiny_cfg(override))


def test_hub_model_offline_fails_fast_and_clearly(tiny_cfg, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cfg = tiny_cfg("model=qwen2_5_0_5b")
    with open_dict(cfg):
        cfg.model.repo_id = "Qwen/Qwen2.5-0.5B"
    with pytest.raises(ModelUnavailableError) as err:
        train(cfg)
    message = str(err.value)
    assert "Qwen/Qwen2.5-0.5B" in message and "model.local_path" in message and "HF_HOME" in message


def test_local_path_that_is_not_a_model(tiny_cfg, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        train(tiny_cfg("model=qwen2_5_0_5b", f"model.local_path={tmp_path}"))


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_chat_one_shot_uses_the_trained_adapter(trained_run, capsys, adapter: str) -> None:
    """Every adapter type: the chat command rebuilds the run's model and answers as it does."""
    from quantum_ft.chat import main as chat
    from quantum_ft.chat import reply

    cfg, _ = trained_run(adapter)
    built = from_checkpoint(Path(cfg.paths.output_dir))
    expected = reply(built.model.eval(), built.tokenizer, [{"role": "user", "content": "Hi"}], 6, stream=False)
    capsys.readouterr()
    chat([cfg.paths.output_dir, "--prompt", "Hi", "--max-new-tokens", "6"])
    assert capsys.readouterr().out.strip() == expected


class RecordSteps(L.Callback):
    """Gradient norm after each optimiser step (Lightning zeroes gradients only before the next one) and how often
    the first decoder layer's attention ran forward in each training batch."""

    def __init__(self) -> None:
        self.grad_norms: list[float] = []
        self.layer_calls = 0
        self.calls_per_batch: list[int] = []
        self._last_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        # a pre-hook inside the checkpointed forward (the recompute stops once it has what backward needs)
        attention = pl_module.model.get_base_model().model.layers[0].self_attn
        attention.register_forward_pre_hook(lambda *_: setattr(self, "layer_calls", self.layer_calls + 1))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.layer_calls = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.calls_per_batch.append(self.layer_calls)
        if trainer.global_step > self._last_step:  # an optimiser step happened: gradients are the clipped ones
            self._last_step = trainer.global_step
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def test_bf16_accumulation_clipping_and_checkpointing_take_effect(tiny_cfg) -> None:
    cfg = tiny_cfg(
        "trainer.precision=bf16-mixed",
        "trainer.accumulate_grad_batches=2",
        "trainer.gradient_clip_val=1e-3",
        "stage.gradient_checkpointing=true",
        "trainer.max_steps=3",
        "optimizer.lr=1e-2",
    )
    from quantum_ft.train import build, finalize, fit

    run = build(cfg)
    recorder = RecordSteps()
    run.trainer.callbacks.append(recorder)
    fit(run)
    metrics = finalize(run)
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3  # 6 batches, 2 per optimiser step
    assert len(recorder.grad_norms) == 3 and max(recorder.grad_norms) <= 1e-3 * 1.01  # clipped to the limit
    # activation checkpointing: each layer's forward runs again in the backward pass
    assert recorder.calls_per_batch == [2] * 6
    assert math.isfinite(metrics["val/loss_after"])


def test_vqc_export_is_refused_with_the_reason(trained_run, tmp_path: Path) -> None:
    from quantum_ft.export import export

    cfg, _ = trained_run("vqc")
    with pytest.raises(TypeError, match="non-linear"):
        export(cfg.paths.output_dir, tmp_path / "merged")


def test_chat_interactive_keeps_history(trained_run, capsys, monkeypatch) -> None:
    from quantum_ft.chat import main as chat

    cfg, _ = trained_run("lora")
    lines = iter(["Hello", "/reset", "", "What now?", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    capsys.readouterr()
    chat([cfg.paths.output_dir, "--max-new-tokens", "3"])
    out = capsys.readouterr().out
    assert out.startswith("Chat (") and out.count("bot> ") == 2


def test_optimized_metric_defaults_to_the_stage_monitor_and_a_missing_one_names_the_rest(trained_run) -> None:
    from quantum_ft.train import optimized_value

    cfg, metrics = trained_run("lora")
    assert cfg.optimized_metric == "val/loss_after" and cfg.optimized_mode == "min"
    assert optimized_value(cfg, metrics, required=True) == metrics["val/loss_after"]
    with open_dict(cfg):
        cfg.optimized_metric = "val/accuracy"
    with pytest.raises(ConfigError, match="val/accuracy was not measured.*val/loss_after"):
        optimized_value(cfg, metrics, required=True)
    assert optimized_value(cfg, metrics, required=False) is None

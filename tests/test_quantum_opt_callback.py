"""callbacks/quantum_opt.py: units by layer, the statistics by hand, freezing that keeps every optimiser state and
skips the backward below the lowest unit still training, decisions logged and journaled, exact resume with units
frozen, and the fallback when the chosen solver cannot answer."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

from quantum_ft.callbacks.quantum_opt import QuantumOpt, budget_count, layer_units, unit_statistics
from quantum_ft.quantum_opt import reset_fallback_warnings
from quantum_ft.train import build, finalize, fit
from quantum_ft.utils.config import ConfigError
from quantum_ft.utils.plots import read_metric_series
from tests.helpers import assert_resume_matches, tiny_model

FOUR_LAYERS = ["model.num_hidden_layers=4", "validate_before=false", "eval.tasks=[]", "adapter.dropout=0.0"]
EVERY_3 = ["callbacks.quantum_opt.every=3", "callbacks.quantum_opt.layers_per_unit=1", "callbacks.quantum_opt.budget=2"]


def test_units_are_whole_layers() -> None:
    names = [
        f"base_model.model.model.layers.{i}.self_attn.{m}.lora_{ab}.default.weight"
        for i in range(4)
        for m in "qv"
        for ab in "AB"
    ]
    units = layer_units(names, 2)
    assert [len(u) for u in units] == [8, 8] and all(".layers.0." in n or ".layers.1." in n for n in units[0])
    with pytest.raises(ConfigError, match=r"does not divide the model's 4 layers .*choose one of \[1, 2, 4\]"):
        layer_units(names, 3)
    with pytest.raises(ConfigError, match="belongs to no layer"):
        layer_units([*names, "base_model.model.lm_head.weight"], 1)
    assert budget_count(0.5, 10) == 5 and budget_count(3, 10) == 3
    with pytest.raises(ConfigError, match="keep 1 to 10"):
        budget_count(11, 10)


def test_statistics_by_hand() -> None:
    g = [torch.tensor([1.0, -2.0]), torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.0])]
    d = [torch.tensor([0.1, 0.1]), torch.tensor([0.2, 0.2]), torch.tensor([0.3, -0.3])]
    importance, similarity = unit_statistics(g, d)
    np.testing.assert_allclose(importance, [0.1 + 0.2, 0.2 + 0.4, 0.15])
    np.testing.assert_allclose(similarity, [[0, 1, 0], [1, 0, 0], [0, 0, 0]], atol=1e-12)  # parallel, orthogonal


def lora_tiny(layers: int = 4) -> torch.nn.Module:
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, init_lora_weights=False)
    return get_peft_model(tiny_model(num_hidden_layers=layers), config).train()


def test_freezing_keeps_every_optimiser_state_and_skips_the_backward_below() -> None:
    model = lora_tiny()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    named = dict(model.named_parameters())
    units = [[named[n] for n in group] for group in layer_units(names, 1)]
    optimizer = torch.optim.AdamW([named[n] for n in names], lr=1e-2)
    ids = torch.randint(0, 1000, (2, 9), generator=torch.Generator().manual_seed(0))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()

    step()
    callback = QuantumOpt(every=2, layers_per_unit=1, budget=2)
    callback.units = units
    state = {id(p): {k: v.clone() for k, v in optimizer.state[p].items()} for p in optimizer.state}
    callback.apply([False, False, True, True])  # layers 0 and 1 frozen
    # the freeze itself touches no optimiser state, kept or frozen
    for p, s in optimizer.state.items():
        for k, v in s.items():
            assert torch.equal(v, state[id(p)][k])
    needs_grad: dict[int, bool] = {}  # autograd runs backward only through outputs that require a gradient
    for i, layer in enumerate(model.get_base_model().model.layers):
        layer.register_forward_hook(lambda m, args, out, i=i: needs_grad.__setitem__(i, out[0].requires_grad))
    frozen_before = [p.detach().clone() for u in units[:2] for p in u]
    step()
    assert needs_grad == {0: False, 1: False, 2: True, 3: True}  # no backward at all through the bottom layers
    assert all(torch.equal(p, b) for p, b in zip((p for u in units[:2] for p in u), frozen_before))
    for p in (p for u in units[:2] for p in u):  # their Adam state waits, untouched (step count included)
        assert torch.equal(optimizer.state[p]["step"], state[id(p)]["step"])
    for p in (p for u in units[2:] for p in u):
        assert optimizer.state[p]["step"] == state[id(p)]["step"] + 1
    callback.apply([True] * 4)
    step()
    for p in (p for u in units[:2] for p in u):
        assert optimizer.state[p]["step"] == state[id(p)]["step"] + 1  # resumed from the state it kept


def test_decisions_are_logged_and_the_budget_holds(tiny_cfg, tmp_path: Path, caplog) -> None:
    overrides = [*FOUR_LAYERS, "+quantum_opt=qaoa", *EVERY_3, "trainer.max_steps=7"]
    with caplog.at_level(logging.INFO, logger="quantum_ft.callbacks.quantum_opt"):
        run = build(tiny_cfg(*overrides, output_dir=tmp_path / "run"))
        fit(run)
        finalize(run)
    records = [json.loads(x) for x in (tmp_path / "run/quantum_opt.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 4, 7]  # after the probe steps 0, 3, 6
    assert all(len(r["chosen"]) == 2 and r["units"] == 4 and r["solver"] == "qaoa-engine" for r in records)
    assert all(not r["fell_back"] and 0.0 <= r["approximation_ratio"] <= 1.0 for r in records)
    assert len([m for m in caplog.messages if m.startswith("quantum_opt at step")]) == 3
    fraction = [v for _, v in read_metric_series(tmp_path / "run/csv", "quantum_opt/trainable_fraction")]
    assert fraction[0] == 1.0 and fraction[1] == pytest.approx(0.5)  # the probe trains all, then 2 of 4 units
    assert read_metric_series(tmp_path / "run/csv", "quantum_opt/backward_s")


def test_an_unreachable_solver_falls_back_once(tiny_cfg, tmp_path: Path, caplog, monkeypatch) -> None:
    monkeypatch.delenv("DWAVE_API_TOKEN", raising=False)
    reset_fallback_warnings()
    overrides = [*FOUR_LAYERS, "+quantum_opt=cloud", *EVERY_3, "trainer.max_steps=7"]
    with caplog.at_level(logging.WARNING, logger="quantum_ft.quantum_opt"):
        run = build(tiny_cfg(*overrides, output_dir=tmp_path / "run"))
        fit(run)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "fallback" in r.getMessage()]
    assert len(warnings) == 1 and "cloud-dwave-leap" in warnings[0]
    records = [json.loads(x) for x in (tmp_path / "run/quantum_opt.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["fell_back"] and r["solver"] == "exact" for r in records)


@pytest.mark.integration  # two runs compared
@pytest.mark.parametrize("strategy", ["exact", "random"])
def test_a_run_with_frozen_units_resumes_exactly(train_until_crash, tmp_path: Path, strategy: str) -> None:
    run = train_until_crash(
        *FOUR_LAYERS,
        f"+quantum_opt={strategy}",
        *EVERY_3,
        "trainer.max_steps=8",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "trainer.val_check_interval=4",
    )
    metrics = ("train/loss", "quantum_opt/trainable_fraction")
    assert_resume_matches(run, tmp_path, crash_step=5, steps=8, metrics=metrics)  # checkpoint at 4: mid-window

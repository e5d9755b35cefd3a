"""stage.use_liger_kernel: what is decided on each device, and the clear refusals. (Patching itself needs CUDA and
Triton: not testable on the CPU machines CI runs on.)"""

from __future__ import annotations

import importlib.util
import logging

import pytest
import torch

from quantum_ft.stages.kernels import liger_decision
from quantum_ft.utils.config import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
LIGER = importlib.util.find_spec("liger_kernel") is not None


@pytest.mark.parametrize("setting", ["auto", "AUTO", True, "true"])
def test_liger_is_never_patched_into_a_cpu_run(setting) -> None:
    if str(setting).lower() == "true":
        with pytest.raises(ConfigError, match="Triton kernels for CUDA.*auto"):
            liger_decision(setting, CPU)
    else:
        patch, why = liger_decision(setting, CPU)
        assert not patch and "trains on cpu" in why


@pytest.mark.skipif(LIGER, reason="checks the machine without liger-kernel")
def test_liger_without_the_package() -> None:
    patch, why = liger_decision("auto", CUDA)
    assert not patch and "pip install liger-kernel" in why
    with pytest.raises(ConfigError, match="pip install liger-kernel"):
        liger_decision("true", CUDA)


def test_liger_off_and_bad_values() -> None:
    assert liger_decision(False, CUDA) == (False, "stage.use_liger_kernel=false")
    with pytest.raises(ConfigError, match="choose auto, true or false"):
        liger_decision("sometimes", CPU)


def test_a_cpu_run_says_which_kernels_it_uses_once(tiny_cfg, caplog) -> None:
    """Once a run, though setup comes for the validation before training and again for the fit."""
    from quantum_ft.train import build, fit

    run = build(tiny_cfg("trainer.max_steps=1", "validate_before=true"))
    with caplog.at_level(logging.INFO, logger="quantum_ft.stages.sft"):
        fit(run)
    assert run.module.kernels.startswith("torch (") and "trains on cpu" in run.module.kernels
    assert [r.getMessage() for r in caplog.records].count(f"Kernels: {run.module.kernels}") == 1

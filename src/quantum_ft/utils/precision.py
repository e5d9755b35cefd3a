"""`trainer.precision=auto`: the fastest precision that is exact enough, for the hardware the run is on.

bf16-mixed (weights and optimiser state in float32, matrix products in bfloat16 under autocast) where the device
multiplies bf16 natively: a CUDA GPU that supports it, or a CPU with AMX or AVX-512 BF16 instructions, on which
oneDNN runs bf16 GEMMs at up to twice the float32 rate. Everything else trains in float32. fp16 autocast is never
chosen by itself: it needs loss scaling and overflows where bf16 does not, so it stays an explicit choice.
The choice and its reason go into the run's log and metrics.json; the loss stays within a tested tolerance of
float32 (tests/test_precision.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from quantum_ft.utils.host import CPUINFO, first_cpu

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The instruction-set flags of the first CPU listed (Linux); empty where there is no /proc/cpuinfo."""
    return set(first_cpu(cpuinfo).get("flags", "").split())


def choose_precision(
    requested: str, accelerator: str = "auto", flags: set[str] | None = None, cuda: bool | None = None
) -> tuple[str, str]:
    """(Lightning precision, why). `requested` other than "auto" is kept as it is."""
    if requested != "auto":
        return requested, "set by trainer.precision"
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda and accelerator in {"auto", "gpu", "cuda"}:
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"auto: {name} computes in bf16"
        return "32-true", f"auto: {name} has no bf16 (trainer.precision=16-mixed is faster, with loss scaling)"
    found = sorted((cpu_flags() if flags is None else flags) & set(CPU_BF16_FLAGS))
    if found:
        return "bf16-mixed", f"auto: the CPU has {' and '.join(found)} (native bf16 matrix products)"
    return "32-true", "auto: no bf16 hardware (no CUDA bf16, no amx_bf16 / avx512_bf16 on the CPU)"

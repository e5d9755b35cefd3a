"""What machine a run ran on, in one line for its metrics.json: timings (tokens/s, step time) compare only between
runs on the same kind of machine, and a study spread over sessions may land on different ones."""

from __future__ import annotations

import os
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")


def first_cpu(cpuinfo: Path = CPUINFO) -> dict[str, str]:
    """The fields of the first processor listed in /proc/cpuinfo (Linux); empty where there is none."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def describe_host(cpuinfo: Path = CPUINFO) -> str:
    """e.g. "AMD EPYC (family 25, model 17), 2 CPUs" (+ ", CUDA: <device name>" where torch sees a GPU)."""
    cpu = first_cpu(cpuinfo)
    name = cpu.get("model name", "unknown CPU")
    if "cpu family" in cpu and "model" in cpu:
        name += f" (family {cpu['cpu family']}, model {cpu['model']})"
    text = f"{name}, {os.cpu_count()} CPUs"
    if torch.cuda.is_available():
        text += f", CUDA: {torch.cuda.get_device_name()}"
    return text

"""Keep freed memory in the process on glibc (Linux) instead of handing it back to the kernel after every tensor.

glibc serves an allocation above its mmap threshold (128 KiB, raised dynamically up to 32 MiB) with a fresh
mmap, and trims the heap top above 128 KiB: every large tensor a CPU step creates then costs a page fault per
4 KiB page when it is first written, and the kernel zeroes each page. On the 2-core machine that was 15-40% of
the circuit engine's forward + backward (experiments/adapter_benchmark). Raising both thresholds lets freed
blocks be reused, as the CUDA caching allocator does on GPUs. The cost: memory freed by the process stays
resident until it exits (the peak is unchanged). Not applied to training yet: its effect on an LLM step and on
peak RSS has not been measured (experiments/sft_vs_trl is where to measure it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc malloc.h
LARGEST = 2**31 - 1  # mallopt takes an int


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False (and nothing changed) where the C library
    is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("retain_freed_memory: no glibc mallopt here (%s); allocator left as it is", name)
        return False
    return all(
        mallopt(p, v) == 1
        for p, v in [(M_MMAP_THRESHOLD, LARGEST), (M_TRIM_THRESHOLD, LARGEST), (M_TOP_PAD, 64 * 2**20)]
    )

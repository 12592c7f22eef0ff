"""Keep glibc from handing large freed blocks back to the kernel between batches.

A CPU forward pass allocates activations of tens of MB per batch; by default glibc returns such blocks to the
kernel on free, so the next batch page-faults them in again and a third of a scan's time is spent in the
kernel (docs/design.md, "CPU batch size and the allocator"). Raising malloc's mmap and trim thresholds keeps
them in the process, so CPU scans run faster (see benchmarks). Process-wide, so only the CLI (and the benchmark,
for every method alike) calls it; a library user decides for their own process.
"""

from __future__ import annotations

import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3


def tune_allocator() -> bool:
    """Raise glibc's mmap threshold to its maximum (32 MiB) and keep up to 1 GiB of freed memory.

    Returns whether the settings were applied (False off Linux or without glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        applied = [
            libc.mallopt(M_MMAP_THRESHOLD, 32 << 20),
            libc.mallopt(M_TRIM_THRESHOLD, 1 << 30),
            libc.mallopt(M_TOP_PAD, 256 << 20),
        ]
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return all(v == 1 for v in applied)

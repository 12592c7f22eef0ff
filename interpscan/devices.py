"""The device a scan runs on, from the ``device`` option: below both the engine's process group (distributed.py) and the
choices made for the user (decisions.py), which need it; and the host memory a scan can still take. torch is
imported when a device is resolved, not with the module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError, opt
from .files import env_size

if TYPE_CHECKING:
    import torch


def resolve_device(text: str) -> torch.device:
    """The device: ``auto`` picks the first CUDA device when there is one, else the CPU.

    Raises:
        UsageError: a device that is not there, or not a CPU or CUDA device.
    """
    import torch

    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise UsageError(f"{opt('device')} {text!r} is not a device", hint="use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{opt('device', text)}: no CUDA device is available", hint=f"use {opt('device', 'cpu')}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(
                f"{opt('device', text)}: only {torch.cuda.device_count()} CUDA device(s)",
                hint=f"use {opt('device', 'cuda:0')}",
            )
    elif dev.type != "cpu":
        raise UsageError(f"{opt('device', text)}: only cpu and cuda are supported", hint=f"use {opt('device', 'cpu')}")
    return dev


MEMORY_ENV = "INTERPSCAN_MAX_MEMORY"  # the host memory a scan may count on, when less than the system offers


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """What the container's memory limit (cgroup v2) leaves: /proc/meminfo shows the host's, not the limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def _rlimit_available() -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) leaves of this process's address space."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return soft - pages * os.sysconf("SC_PAGE_SIZE")


def host_memory_available() -> int | None:
    """Bytes of host memory this process can still allocate: the least of what the system has available, what a
    container's limit and ``ulimit -v`` leave, and INTERPSCAN_MAX_MEMORY; None where none of them is known.

    Raises:
        UsageError: INTERPSCAN_MAX_MEMORY is not a size.
    """
    limits = (_meminfo_available(), _cgroup_available(), _rlimit_available(), env_size(MEMORY_ENV, -1))
    known = [max(value, 0) for value in limits if value is not None and value != -1]
    return min(known) if known else None

"""The device a scan runs on, from the ``device`` option: below both the engine's process group (distributed.py) and the
choices made for the user (decisions.py), which need it. torch is imported when a device is resolved, not with
the module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UsageError, opt

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

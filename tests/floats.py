"""Float comparisons in float32 steps, and the machine a number was computed on.

A float32 result moves by a few units in the last place between CPUs (AVX-512, AVX2, ARM pick different kernels
and summation orders), between memory layouts, and between two code paths that compute the same thing. So a
float32 number compared with one from another code path or another machine is compared at a few float32 steps
(relative), never below one, with an absolute floor for values near 0 (a barrier height, a difference of two
losses, is near 0 while the losses it came from are not). Exact comparisons are kept for bytes, and for the same
code run twice in one process (resume against uninterrupted).
"""

from __future__ import annotations

import os
import platform
from typing import Any

import pytest

STEP = 2.0**-23  # float32's machine epsilon: the spacing of float32 numbers at 1.0 (1.19e-7)
STEPS = 8  # the default: room for a different summation order (layout, CPU), measured at 1-3 steps


def tol32(steps: float = STEPS, scale: float = 1.0) -> dict[str, float]:
    """``rtol`` and ``atol`` of ``steps`` float32 steps, for torch.testing.assert_close, numpy's assert_allclose
    and pandas' assert_frame_equal / assert_series_equal.

    Args:
        steps: how many float32 steps apart two results may be, relative (at least 1).
        scale: the size of the numbers a compared value was computed from (losses of order 1: 1.0); the absolute
            floor is ``steps`` steps at that size, so a value near 0 computed from larger ones (a difference of
            two losses) is not held to a relative tolerance it cannot meet. 0: relative only.
    """
    assert steps >= 1, "below one float32 step, another CPU fails the comparison"
    return {"rtol": steps * STEP, "atol": steps * STEP * scale}


def approx32(expected: Any, steps: float = STEPS, scale: float = 1.0) -> Any:
    """``pytest.approx(expected)`` at ``steps`` float32 steps (see tol32): for numbers, lists, dicts, arrays."""
    t = tol32(steps, scale)
    return pytest.approx(expected, rel=t["rtol"], abs=t["atol"])


def this_machine() -> dict[str, str]:
    """What decides a float32 result's last bits here: the CPU model, the instruction set torch's kernels use
    (and the oneDNN / ATen overrides that lower it), the platform and torch's version."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    overrides = " ".join(
        f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if k in os.environ
    )
    return {
        "cpu": model,
        "isa": torch.backends.cpu.get_cpu_capability() + (f" ({overrides})" if overrides else ""),
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": torch.__version__,
    }

"""The allocator setting the CLI applies (interpscan/allocator.py)."""

from __future__ import annotations

import platform
import sys

import pytest

from interpscan.allocator import tune_allocator


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only"
)
def test_glibc_accepts_the_thresholds() -> None:
    assert tune_allocator() is True

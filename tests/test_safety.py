"""Untrusted files: no code path unpickles freely, and no byte string makes the loader fail with anything but
an InterpscanError."""

from __future__ import annotations

import ast
import contextlib
import io
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

import interpscan
from interpscan.checkpoints import load_checkpoint
from interpscan.errors import InterpscanError

PACKAGE = Path(interpscan.__file__).parent


def _calls(name: str) -> list[tuple[str, ast.Call]]:
    """Every call of ``name`` (e.g. "torch.load") in the package, with the file it is in."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                found.append((path.name, node))
    return found


def test_torch_load_is_always_weights_only_unless_unsafe_pickle_is_asked_for() -> None:
    calls = _calls("torch.load")
    assert calls, "the scan found no torch.load call: the test would prove nothing"
    for where, call in calls:
        kwargs = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert kwargs.get("weights_only") in ("True", "not unsafe_pickle"), f"{where}: {ast.unparse(call)}"


def test_numpy_never_unpickles_and_pickle_is_never_called_bare() -> None:
    for where, call in _calls("np.load"):
        kwargs = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert kwargs.get("allow_pickle") == "False", f"{where}: {ast.unparse(call)}"
    for name in ("pickle.load", "pickle.loads", "torch.serialization.load"):
        assert _calls(name) == [], f"{name} is called directly"


def _valid_files() -> dict[str, bytes]:
    torch.manual_seed(0)
    state = {"conv.weight": torch.randn(4, 1, 3, 3), "conv.bias": torch.randn(4), "steps": torch.tensor(3)}
    buf = io.BytesIO()
    torch.save({"state_dict": state, "epoch": 1}, buf)
    legacy = io.BytesIO()
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    return {"zip": buf.getvalue(), "legacy": legacy.getvalue(), "safetensors": save(state)}


VALID = _valid_files()


def _load(data: bytes, suffix: str) -> None:
    fd, name = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        with contextlib.suppress(InterpscanError):  # the only acceptable failure
            load_checkpoint(name)
    finally:
        os.unlink(name)


@settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(VALID)),
    cut=st.integers(min_value=0, max_value=4096),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=6),
    suffix=st.sampled_from([".pt", ".safetensors", ".bin", ".npz"]),
)
def test_fuzz_mutated_checkpoints_raise_only_interpscan_errors(
    kind: str, cut: int, flips: list[tuple[int, int]], suffix: str
) -> None:
    """Truncations and byte flips of real checkpoints: loaded, or refused with an InterpscanError — never a
    traceback (run under warnings-as-errors, so a leaked warning fails too)."""
    data = bytearray(VALID[kind])
    for pos, value in flips:
        data[pos % len(data)] = value
    _load(bytes(data[: max(len(data) - cut, 0)] if cut else data), suffix)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data: bytes) -> None:
    _load(data, ".pt")


@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_unmutated_files_load(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    path.write_bytes(VALID[kind])
    assert load_checkpoint(path).tensors["conv.bias"].shape == (4,)

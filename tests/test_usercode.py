"""The user's own code (interpscan/usercode.py): a function that calls sys.exit, or a module that does while it is
imported, ends in one error line like any other exception — never in interpscan exiting silently."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from interpscan.engine.forward import forward_fn
from interpscan.errors import DataError, ModelError, RunError, UsageError
from interpscan.usercode import ExitCalled, load_callable, no_exit

CODE = """
import sys


def make(width: int = 3, *, depth: int = 2):
    sys.exit(0)


def fine(a, b=1):
    return a + b
"""


def test_sys_exit_becomes_an_exception() -> None:
    def leave() -> None:
        raise SystemExit(3)

    with pytest.raises(ExitCalled, match=r"it called sys\.exit\(3\) instead of returning") as exc:
        no_exit(leave)()
    assert exc.value.code == 3
    assert isinstance(exc.value.__cause__, SystemExit)


def test_a_loaded_function_keeps_its_signature(tmp_path: Path) -> None:
    (tmp_path / "code.py").write_text(CODE)
    make = load_callable(f"{tmp_path / 'code.py'}:make", option="model", error=ModelError)
    assert list(inspect.signature(make).parameters) == ["width", "depth"]  # factory_parameters reads it
    with pytest.raises(ExitCalled, match=r"sys\.exit\(0\)"):
        make()
    assert load_callable(f"{tmp_path / 'code.py'}:fine", option="loss", error=UsageError)(2) == 3


@pytest.mark.parametrize("call", ["sys.exit()", "sys.exit('bye')", "exit(2)"])
def test_a_module_that_exits_while_imported(tmp_path: Path, call: str) -> None:
    (tmp_path / "script.py").write_text(f"import sys\n{call}\n\ndef make():\n    return 1\n")
    with pytest.raises(DataError, match=r"importing .*script\.py failed: ExitCalled: it called sys\.exit\("):
        load_callable(f"{tmp_path / 'script.py'}:make", option="data")


def test_a_python_file_that_is_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "make.py")  # importing it would wait for a writer
    with pytest.raises(UsageError, match=r"make\.py is a named pipe \(FIFO\), not a regular Python file"):
        load_callable(f"{tmp_path / 'make.py'}:fn", option="loss", error=UsageError)


class Quits(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise SystemExit(0)


def test_a_forward_pass_that_exits() -> None:
    with pytest.raises(RunError) as exc:
        forward_fn(Quits())(torch.zeros(2, 3))
    assert exc.value.message == (
        "the model's forward pass failed on inputs of shape [2, 3] (float32): ExitCalled: it called sys.exit(0) "
        "instead of returning"
    )
    assert exc.value.exit_code == 1

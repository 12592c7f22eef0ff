"""Shared fixtures: tiny models and data, and the plain reference evaluation every engine test compares to."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# One torch thread per test process, and in the processes tests start: `make test` fills the cores with xdist
# workers instead, and two OpenMP threads on a busy core spin waiting for each other (on a loaded 2-core machine a
# 41-point scan of tiny batches took 17 minutes with two threads, 18 s with one). An OMP_NUM_THREADS given wins.
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


class TinyMLP(nn.Module):
    """No batch norm, with dropout (which must be off during evaluation)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(48, 16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.relu(self.fc1(x.flatten(1)))))


class TinyConvBN(nn.Module):
    """Conv + BatchNorm2d + dropout + a BatchNorm1d head: every BN policy matters here."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(6 * 4, 8)
        self.bn1d = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.adaptive_avg_pool2d(torch.relu(self.bn(self.conv(x))), 2).flatten(1)
        h = torch.relu(self.bn1d(self.fc1(self.drop(h))))
        return self.fc2(h)


def make_state(model: nn.Module, seed: int, stats: bool = True) -> dict[str, torch.Tensor]:
    """A random state for ``model``: fresh weights and, for BN, non-trivial running statistics."""
    torch.manual_seed(seed)
    m = copy.deepcopy(model)
    for p in m.parameters():
        nn.init.normal_(p, std=0.5)
    for mod in m.modules():
        if isinstance(mod, _BatchNorm) and stats:
            assert mod.running_mean is not None
            assert mod.running_var is not None
            mod.running_mean.normal_(0, 0.3)
            mod.running_var.uniform_(0.5, 2.0)
            mod.num_batches_tracked.fill_(seed + 7)
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def reference_curve(
    model: nn.Module,
    start: dict[str, torch.Tensor],
    end: dict[str, torch.Tensor],
    coefficients: Sequence[dict[str, float]],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    policy: str,
    calibration: torch.Tensor | None = None,
    calibration_batch_size: int = 16,
    batch_size: int = 32,
) -> list[tuple[float, float, float]]:
    """The plain loop peers use, done right: build each point's state dict by hand, ``load_state_dict``,
    set up batch norm per the policy, evaluate. Returns (mean loss, loss standard error, accuracy) per point.

    ``coefficients`` gives each point's interpolation coefficient per floating tensor name.
    """
    out = []
    for coef in coefficients:
        m = copy.deepcopy(model)
        state = {}
        for k, s in start.items():
            e = end[k]
            state[k] = s + coef[k] * (e - s) if s.is_floating_point() else e.clone()
        m.load_state_dict(state)
        m.eval()
        bns = [mod for mod in m.modules() if isinstance(mod, _BatchNorm)]
        if policy == "recompute":
            assert calibration is not None
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None  # cumulative moving average
                bn.train()
            with torch.no_grad():
                for lo in range(0, len(calibration), calibration_batch_size):
                    m(calibration[lo : lo + calibration_batch_size])
            m.eval()
        elif policy == "batch":
            for bn in bns:
                bn.train()
                bn.momentum = 0.0  # train-mode normalization; running statistics stay as they are
        losses, correct = [], 0
        with torch.no_grad():
            for lo in range(0, len(x), batch_size):
                logits = m(x[lo : lo + batch_size])
                losses.append(F.cross_entropy(logits, y[lo : lo + batch_size], reduction="none"))
                correct += int((logits.argmax(1) == y[lo : lo + batch_size]).sum())
        per_sample = torch.cat(losses).double()
        se = float(per_sample.std() / len(per_sample) ** 0.5)
        out.append((float(per_sample.mean()), se, correct / len(x)))
    return out


def run_cli_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run ``interpscan ARGS`` in-process through the real entry point; return (exit code, stdout, stderr)."""
    from interpscan.cli import main

    monkeypatch.setattr(sys, "argv", ["interpscan", *args])
    monkeypatch.delenv("INTERPSCAN_DEBUG", raising=False)
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Like run_cli_output, without stdout: (exit code, stderr)."""
    code, _, err = run_cli_output(monkeypatch, capsys, *args)
    return code, err


@pytest.fixture
def ckpts(tmp_path: Path) -> tuple[Path, Path]:
    """Two cnn checkpoints (width 4, batch norm) in different layouts: a plain state dict and a DDP-wrapped dict."""
    from interpscan.models import build_model, parse_model_spec

    spec = parse_model_spec("cnn", {"width": 4})
    torch.manual_seed(0)
    a, b = build_model(spec), build_model(spec)
    torch.save(a.state_dict(), tmp_path / "init.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in b.state_dict().items()}}, tmp_path / "final.pt")
    return tmp_path / "init.pt", tmp_path / "final.pt"


@pytest.fixture
def image_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """70 evaluation images (not a multiple of the batch size), 5 classes, and 50 calibration images."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(70, 3, 4, 4, generator=gen)
    y = torch.randint(0, 5, (70,), generator=gen)
    calib = torch.randn(50, 3, 4, 4, generator=gen) * 1.5 + 0.2
    return x, y, calib


ENGINE_OPTIONS = (
    "policy",
    "strategy",
    "device",
    "batch_size",
    "calibration_batch_size",
    "chunk_size",
    "dtype",
    "memory_format",
)


def run_engine(model, start, end, points, splits, **kw):  # type: ignore[no-untyped-def]
    """``scan_points`` with the EngineOptions fields given as keywords beside the others (calibration, resume, …)."""
    from interpscan.engine import EngineOptions, scan_points

    options = EngineOptions(**{k: kw.pop(k) for k in ENGINE_OPTIONS if k in kw})
    return scan_points(model, start, end, points, splits, options, **kw)


def slow_main(seconds: float) -> str:
    """A script running the real CLI (arguments after ``-c SCRIPT``) with every (point, batch) slowed by
    ``seconds``, so that a signal always lands mid-scan however fast the machine is: a test never races the
    scan's end."""
    return f"""
import signal, sys, time
# a job started in the background by a shell without job control (`make test &` in a script) inherits SIGINT
# ignored, and Python keeps it so: the tests that send SIGINT want it heard
signal.signal(signal.SIGINT, signal.default_int_handler)
import interpscan.engine.core as engine
accumulate = engine._accumulate
def slow(*args, **kwargs):
    time.sleep({seconds})
    return accumulate(*args, **kwargs)
engine._accumulate = slow
from interpscan.cli import main
sys.argv = ["interpscan", *sys.argv[1:]]
main()
"""

"""Channels-last: when ``auto`` picks it, that it gives the contiguous numbers (batch statistics included), and
that a model which cannot take it runs contiguous with the reason said."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyConvBN, TinyMLP, make_state, run_cli, run_engine
from torch import nn

from interpscan.data import Split, Stream
from interpscan.decisions import batch_statistics, choose_memory_format
from interpscan.engine import Point
from interpscan.engine.plan import prepare, relayout
from interpscan.errors import UsageError
from interpscan.options import BNPolicy, MemoryFormat, Strategy

AUTO, CPU = MemoryFormat.AUTO, torch.device("cpu")


class ViewHead(nn.Module):
    """A classic CNN head that ``.view``s a convolution's spatial output: impossible on a channels-last tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.view(h.size(0), -1))  # type: ignore[no-any-return]


class Pooled(nn.Module):
    """Conv, BN, max-pool, conv, BN: the layers channels-last changes, at a size where BN sums are long."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        h = torch.relu(self.bn2(self.conv2(h)))
        return self.fc(h.mean((2, 3)))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("model", "device", "strategy", "expected"),
    [
        (TinyConvBN(), "cpu", Strategy.SEQUENTIAL, MemoryFormat.CHANNELS_LAST),
        (TinyConvBN(), "cpu", Strategy.PREFIX, MemoryFormat.CHANNELS_LAST),
        (TinyConvBN(), "cpu", Strategy.BATCHED, MemoryFormat.CONTIGUOUS),
        (TinyConvBN(), "cuda", Strategy.PREFIX_BATCHED, MemoryFormat.CONTIGUOUS),
        (TinyConvBN(), "cuda", Strategy.SEQUENTIAL, MemoryFormat.CONTIGUOUS),
        (TinyMLP(), "cpu", Strategy.SEQUENTIAL, MemoryFormat.CONTIGUOUS),
    ],
)
def test_auto_picks_channels_last_for_conv_nets_looped_on_cpu(model, device, strategy, expected) -> None:  # type: ignore[no-untyped-def]
    decision = choose_memory_format(AUTO, device=torch.device(device), strategy=strategy, model=model)
    assert decision.value is expected
    assert decision.reason.startswith("auto")


def test_auto_stays_contiguous_where_evaluation_computes_batch_statistics() -> None:
    model = TinyConvBN()
    assert not batch_statistics(model, BNPolicy.RECOMPUTE)
    assert batch_statistics(model, BNPolicy.BATCH)
    untracked = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    assert batch_statistics(untracked, BNPolicy.INTERPOLATE)
    decision = choose_memory_format(AUTO, device=CPU, strategy=Strategy.SEQUENTIAL, model=model, batch_stats=True)
    assert decision.value is MemoryFormat.CONTIGUOUS
    assert "batch statistics" in decision.reason


def test_auto_leaves_torchscript_contiguous() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates torch.jit.script
        scripted = torch.jit.script(TinyConvBN().eval())
    decision = choose_memory_format(AUTO, device=CPU, strategy=Strategy.SEQUENTIAL, model=scripted)
    assert decision.value is MemoryFormat.CONTIGUOUS
    assert "TorchScript" in decision.reason


def test_channels_last_with_vmap_is_refused() -> None:
    with pytest.raises(UsageError, match="memory_format='channels-last' applies to the strategies that loop"):
        choose_memory_format(MemoryFormat.CHANNELS_LAST, device=CPU, strategy=Strategy.BATCHED, model=TinyConvBN())
    with pytest.raises(UsageError, match="'channels-last' applies"):
        run_engine(TinyConvBN(), {}, {}, [], [], strategy="batched", memory_format="channels-last")


def test_batch_statistics_are_as_precise_as_contiguous() -> None:
    """A channels-last batch's statistics computed by PyTorch's CPU kernel are off by ~3e-5 relative; the
    plan's hooks compute them on a contiguous copy: float64 is the truth, 1e-6 the bar."""
    torch.manual_seed(0)
    model = Pooled()
    plan = prepare(model, model.state_dict(), model.state_dict(), BNPolicy.RECOMPUTE, CPU)
    relayout(plan, torch.channels_last)
    x = torch.randn(256, 3, 32, 32) * 3 + 1
    reference = copy.deepcopy(model).double().train()
    for m in (plan.model, reference):
        for bn in (m.bn1, m.bn2):
            bn.reset_running_stats()
            bn.momentum = None
    plan.model.bn1.train(), plan.model.bn2.train()
    with torch.no_grad():
        out = plan.model(x)
        expected = reference(x.double())
    assert plan.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    for ours, truth in ((plan.model.bn1, reference.bn1), (plan.model.bn2, reference.bn2)):
        torch.testing.assert_close(ours.running_mean.double(), truth.running_mean, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ours.running_var.double(), truth.running_var, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    relayout(plan, torch.contiguous_format)
    assert not plan.hooks
    assert plan.model.conv2.weight.is_contiguous()


@pytest.mark.parametrize("strategy", ["sequential", "prefix"])
@pytest.mark.parametrize("policy", ["interpolate", "recompute", "batch"])
def test_channels_last_gives_the_contiguous_numbers(policy: str, strategy: str) -> None:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 3, 16, 16, generator=gen), torch.randint(0, 5, (96,), generator=gen)
    calib = torch.randn(200, 3, 16, 16, generator=gen) * 2 + 0.5
    model = Pooled().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    moving = frozenset(k for k in start if k.startswith(("conv2", "bn2")))
    points = [Point("all", a) for a in (0.0, 0.3, 0.7, 1.0)] + [Point("g", a, moving, 1.0) for a in (0.0, 0.5)]
    runs = {
        fmt: run_engine(
            model,
            start,
            end,
            points,
            [Split("test", x, y, None)],
            policy=policy,
            strategy=strategy,
            memory_format=fmt,
            calibration=calib,
            batch_size=32,
            calibration_batch_size=64,
        )
        for fmt in ("contiguous", "channels-last")
    }
    (plain, plain_report), (nhwc, nhwc_report) = runs["contiguous"], runs["channels-last"]
    assert (plain_report.memory_format, nhwc_report.memory_format) == ("contiguous", "channels-last")
    for a, b in zip(plain, nhwc, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=1e-6)
        assert b.accuracy == a.accuracy
    assert model.conv1.weight.is_contiguous()  # the caller's model is untouched


def test_a_model_that_cannot_take_channels_last_runs_contiguous(image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = ViewHead().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    points = [Point("all", a) for a in (0.0, 0.5, 1.0)]
    split = [Split("test", x, y, None)]
    plain, _ = run_engine(model, start, end, points, split, memory_format="contiguous")
    results, report = run_engine(model, start, end, points, split, memory_format="channels-last")
    assert report.memory_format == "contiguous"
    assert report.memory_format_note is not None
    assert report.memory_format_note.startswith("ran contiguous: the forward pass fails on channels-last tensors")
    assert "view" in report.memory_format_note
    assert [r.loss for r in results] == [r.loss for r in plain]


def test_data_that_only_streams_runs_contiguous(image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    stream = Stream("test", [(x[:40], y[:40]), (x[40:], y[40:])])
    results, report = run_engine(model, start, end, [Point("all", 0.5)], [stream], memory_format="channels-last")
    assert report.memory_format == "contiguous"
    assert report.memory_format_note is not None
    assert "the data streams" in report.memory_format_note
    assert results[0].n == 70


def test_run_json_records_the_layout_and_why(monkeypatch, capsys, ckpts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    init, final = ckpts
    common = (str(init), str(final), "-m", "cnn", "-d", "fashion-mnist-small", "--samples", "64", "--bn-samples", "64")
    common += ("--alphas", "3")
    common += ("--bootstrap", "0", "--no-html", "--device", "cpu")
    manifests = {}
    for fmt in ("auto", "contiguous"):
        code, err = run_cli(
            monkeypatch,
            capsys,
            "run",
            *common,
            "--memory-format",
            fmt,
            "--out",
            str(tmp_path / fmt),
        )
        assert code == 0, err
        manifests[fmt] = json.loads((tmp_path / fmt / "run.json").read_text())
    auto, plain = manifests["auto"], manifests["contiguous"]
    assert auto["memory_format"] == "channels-last"
    assert auto["memory_format_reason"].startswith("auto on CPU with 2-D convolutions")
    assert auto["memory_format_note"] is None
    assert (plain["memory_format"], plain["memory_format_reason"]) == ("contiguous", "requested")
    code, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        "--data",
        "fashion-mnist-small",
        *common,
        "--strategy",
        "batched",
        "--memory-format",
        "channels-last",
    )
    assert code == 2
    assert "error: --memory-format channels-last applies to the strategies that loop over points" in err

"""Batches as a stream: the engine on DataLoaders, Datasets and plain iterables gives the numbers of resident
tensors; named inputs of several integer tensors reach the model as keyword arguments, untouched; outputs that
carry ``logits`` are scored; and only the model's own errors become one-line RunErrors."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyConvBN, make_state, reference_curve, run_engine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from interpscan.data.batches import Split, Stream, Take, as_batch, as_splits, default_splits
from interpscan.engine import Point, Snapshot
from interpscan.errors import DataError, RunError, UsageError

ALPHAS = [0.0, 0.3, 1.0, 1.4]
STRATEGIES = ["sequential", "batched", "prefix", "prefix-batched"]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("policy", ["interpolate", "recompute", "batch"])
@pytest.mark.parametrize("kind", ["loader", "dataset", "list"])
def test_a_stream_gives_the_numbers_of_resident_tensors(kind: str, policy: str, strategy: str, image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, calib = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    points = [Point("all", a) for a in ALPHAS]
    source: Any = {
        "loader": DataLoader(TensorDataset(x, y), batch_size=32),
        "dataset": TensorDataset(x, y),  # batched by the engine with its batch size
        "list": [(x[i : i + 32], y[i : i + 32]) for i in range(0, len(x), 32)],
    }[kind]
    calibration = Stream("train", DataLoader(TensorDataset(calib, torch.zeros(len(calib))), batch_size=16))
    kw = {"policy": policy, "strategy": strategy, "batch_size": 32, "calibration_batch_size": 16}
    streamed, report = run_engine(model, start, end, points, [Stream("test", source)], calibration=calibration, **kw)
    resident, _ = run_engine(model, start, end, points, [Split("test", x, y, None)], calibration=calib, **kw)
    for a, b in zip(streamed, resident, strict=True):
        assert (a.loss, a.loss_se, a.accuracy, a.n) == (b.loss, b.loss_se, b.accuracy, b.n)
    assert report.calibration_batches == (4 if policy == "recompute" else 0)  # ceil(50 / 16)
    expected = reference_curve(
        model, start, end, [dict.fromkeys(start, a) for a in ALPHAS], x, y, policy=policy, calibration=calib
    )
    for r, (loss, _, acc) in zip(streamed, expected, strict=True):
        assert r.loss == pytest.approx(loss, rel=1e-5, abs=1e-6)
        assert r.accuracy == pytest.approx(acc, abs=1e-12)


def test_progress_total_is_unknown_for_an_iterable_without_length(image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = TinyConvBN().eval()
    state = make_state(model, 1)
    seen: list[tuple[int, int | None]] = []
    gen = ((x[i : i + 32], y[i : i + 32]) for i in range(0, len(x), 32))
    results, _ = run_engine(
        model, state, state, [Point("all", 0.0)], [Stream("test", gen)], progress=lambda *a: seen.append(a)
    )
    assert results[0].n == 70
    assert seen == [(1, None)] * 3  # one point, three batches, total unknown
    with pytest.raises(DataError, match="nothing to evaluate on the test split: it is empty"):
        run_engine(model, state, state, [Point("all", 0.0)], [Stream("test", gen)])  # read to its end already
    again = ((x[i : i + 32], y[i : i + 32]) for i in range(0, len(x), 32))
    with pytest.raises(UsageError, match="one-shot iterator and was read already"):
        run_engine(model, state, state, [Point("all", 0.0)], [Stream("test", again)] * 2)


# ------------------------------------------------------------------------------------- named, integer inputs


@dataclass
class Output:
    """What a Hugging Face model returns: an object carrying logits (and more)."""

    logits: torch.Tensor
    hidden: torch.Tensor


class TinyTextNet(nn.Module):
    """Token ids and an attention mask in, an object with logits out: a masked mean of embeddings, then a head."""

    def __init__(self, vocab: int = 20, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Output:
        assert input_ids.dtype == torch.int64, "token ids must arrive as integers"
        h = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        pooled = h.sum(1) / attention_mask.sum(1, keepdim=True).clamp(min=1)
        return Output(self.head(self.norm(pooled)), pooled)


def _text_data(n: int = 45) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 20, (n, 7), generator=gen)
    lengths = torch.randint(2, 8, (n,), generator=gen)
    mask = (torch.arange(7)[None] < lengths[:, None]).long()
    return {"input_ids": ids, "attention_mask": mask}, torch.randint(0, 3, (n,), generator=gen)


def _reference(model: nn.Module, start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float) -> float:
    net = TinyTextNet()
    net.load_state_dict({k: torch.lerp(start[k], end[k], alpha) for k in start})
    inputs, y = _text_data()
    with torch.no_grad():
        return float(F.cross_entropy(net(**inputs).logits, y))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("as_dicts", [False, True])
def test_named_integer_inputs_and_logits_outputs(strategy: str, as_dicts: bool) -> None:
    model = TinyTextNet().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    inputs, y = _text_data()
    if as_dicts:  # the Hugging Face way: one dict per batch, targets under "labels"
        source: Any = [
            {**{k: v[i : i + 16] for k, v in inputs.items()}, "labels": y[i : i + 16]} for i in range(0, len(y), 16)
        ]
        split: Any = Stream("test", source)
    else:
        split = Split("test", inputs, y, None)
    points = [Point("all", a) for a in ALPHAS]
    results, report = run_engine(model, start, end, points, [split], strategy=strategy, batch_size=16)
    for r in results:
        assert r.loss == pytest.approx(_reference(model, start, end, r.point.alpha), rel=1e-5)
        assert r.n == 45
    if strategy == "prefix":  # the traced graph takes one tensor: named inputs run sequential, and say so
        assert report.strategy == "sequential"
        assert report.note is not None


def test_an_output_without_logits_is_a_clear_data_error() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.fc(x), x

    state = make_state(Pair(), 0)
    with pytest.raises(DataError, match="the model returned a tuple; interpscan scores a tensor of outputs"):
        run_engine(
            Pair(), state, state, [Point("all", 0.0)], [Split("t", torch.randn(3, 4), torch.zeros(3).long(), None)]
        )


# ---------------------------------------------------------------------------------------- errors: whose?


class Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x[:, :3])  # a shape bug in the user's model


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_models_errors_become_one_run_error(strategy: str) -> None:
    state = make_state(Broken(), 0)
    split = Split("t", torch.randn(5, 4), torch.zeros(5).long(), None)
    with pytest.raises(RunError) as exc:
        run_engine(Broken(), state, state, [Point("all", 0.0)], [split], strategy=strategy)
    assert str(exc.value).startswith(
        "the model's forward pass failed on inputs of shape [5, 4] (float32): RuntimeError:"
    )
    assert "\n" not in str(exc.value)
    assert exc.value.hint == "check that the data fits the model (input shape, in_channels, number of classes)"
    assert isinstance(exc.value.__cause__, RuntimeError)


def test_interpscans_own_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch, image_data) -> None:  # type: ignore[no-untyped-def]
    """A bug of ours (here: injected into the summing) is not dressed up as a problem with the user's data."""
    from interpscan.engine import core

    def bug(*args: Any) -> None:
        raise RuntimeError("an interpscan bug")

    monkeypatch.setattr(core, "_accumulate", bug)
    x, y, _ = image_data
    model = TinyConvBN().eval()
    state = make_state(model, 1)
    with pytest.raises(RuntimeError, match="an interpscan bug"):
        run_engine(model, state, state, [Point("all", 0.0)], [Split("t", x, y, None)])


# ------------------------------------------------------------------------------------------- the pieces


def test_as_batch_reads_pairs_and_dicts_with_labels() -> None:
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    assert as_batch((x, y), "b")[0] is x
    inputs, targets = as_batch({"input_ids": x, "labels": y}, "b")
    assert set(inputs) == {"input_ids"}  # type: ignore[arg-type]
    assert targets is y
    with pytest.raises(DataError, match=r"b: a batch is a tuple of 3; expected \(inputs, targets\)"):
        as_batch((x, y, y), "b")
    with pytest.raises(DataError, match="a batch is a dict"):
        as_batch({"input_ids": x}, "b")


def test_as_splits() -> None:
    x, y = torch.randn(4, 2), torch.arange(4)
    assert list(as_splits((x, y))) == ["test"]
    assert isinstance(as_splits((x, y))["test"], Split)
    splits = as_splits({"train": (x, y), "val": DataLoader(TensorDataset(x, y), batch_size=2)})
    assert isinstance(splits["val"], Stream)
    assert default_splits(list(splits)) == ("train", "val")
    assert default_splits(["train", "test"]) == ("test",)
    with pytest.raises(UsageError, match="a mapping of tensors"):
        as_splits({"x": x, "y": y})
    with pytest.raises(DataError, match="4 inputs but 3 targets"):
        as_splits((x, y[:3]))
    with pytest.raises(UsageError, match="yields no batches"):
        as_splits(42)


def test_take_cuts_the_last_batch() -> None:
    x, y = torch.arange(10).float()[:, None], torch.arange(10)
    taken = Take(Split("train", x, y, None), 7)
    sizes = [len(t) for _, t in taken.batches(3, torch.device("cpu"))]
    assert sizes == [3, 3, 1]


def test_a_snapshot_round_trips_and_a_damaged_one_is_refused() -> None:
    from interpscan.engine import SplitSums

    sums = SplitSums.zeros(3)
    sums.loss += 1.5
    sums.n, sums.batches = 7, 2
    snap = Snapshot(3, {"bn.running_mean": torch.zeros(3, 4)}, (sums,), 9)
    back = Snapshot.from_state(snap.to_state())
    assert back.unique_points == 3
    assert back.splits[0].n == 7
    assert torch.equal(back.splits[0].loss, sums.loss)
    state = snap.to_state()
    state["splits"][0]["loss"] = torch.zeros(2)  # the wrong number of points
    with pytest.raises(UsageError, match="the saved partial scan is damaged"):
        Snapshot.from_state(state)
    with pytest.raises(UsageError, match="damaged"):
        Snapshot.from_state({"unique_points": 3})
    assert math.isfinite(float(back.splits[0].loss[0]))

"""The engine against the plain reference loop (conftest.reference_curve): every strategy, every BN policy."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
from conftest import TinyConvBN, TinyMLP, make_state, reference_curve, run_engine
from floats import tol32
from torch import nn

from interpscan.data import Split
from interpscan.engine import Point, Snapshot
from interpscan.errors import DataError, UsageError
from interpscan.options import BNPolicy

ALPHAS = [0.0, 0.25, 0.5, 0.8, 1.0, 1.3, -0.2]


def _split(x: torch.Tensor, y: torch.Tensor, name: str = "test") -> Split:
    return Split(name, x, y, None)


def _run(model: nn.Module, start, end, points, x, y, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("batch_size", 32)
    kw.setdefault("calibration_batch_size", 16)
    return run_engine(model, start, end, points, [_split(x, y)], **kw)


@pytest.mark.parametrize(
    ("strategy", "memory_format"),
    [
        *((s, "contiguous") for s in ("sequential", "batched", "prefix", "prefix-batched")),
        ("sequential", "channels-last"),  # the strategies that loop over points also take channels-last
        ("prefix", "channels-last"),
    ],
)
@pytest.mark.parametrize("policy", ["interpolate", "recompute", "batch"])
@pytest.mark.parametrize("model_cls", [TinyMLP, TinyConvBN])
def test_engine_equals_reference_loop(model_cls, policy, strategy, memory_format, image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, calib = image_data
    model = model_cls().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    points = [Point("all", a) for a in ALPHAS]
    results, report = _run(
        model,
        start,
        end,
        points,
        x,
        y,
        policy=policy,
        calibration=calib,
        strategy=strategy,
        chunk_size=3,
        memory_format=memory_format,
    )
    expected = reference_curve(
        model, start, end, [dict.fromkeys(start, a) for a in ALPHAS], x, y, policy=policy, calibration=calib
    )
    assert [r.point.alpha for r in results] == ALPHAS
    for r, (loss, se, acc) in zip(results, expected, strict=True):
        assert r.loss == pytest.approx(loss, rel=1e-5, abs=1e-6)
        assert r.loss_se == pytest.approx(se, rel=1e-4, abs=1e-7)
        assert r.accuracy == pytest.approx(acc, abs=1e-12)
        assert r.n == 70
    assert report.strategy == strategy
    assert report.policy == policy
    assert report.memory_format == memory_format
    assert report.memory_format_note is None
    # the three policies really differ on a BN net (a test that could not fail would not prove anything)
    if model_cls is TinyConvBN and policy != "interpolate":
        interp = reference_curve(model, start, end, [dict.fromkeys(start, 0.5)], x, y, policy="interpolate")
        assert abs(results[2].loss - interp[0][0]) > 1e-3


def test_strategies_agree_bitwise_close(image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, calib = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 3), make_state(model, 4)
    points = [Point("all", a) for a in ALPHAS]
    seq, _ = _run(model, start, end, points, x, y, policy="recompute", calibration=calib, strategy="sequential")
    bat, _ = _run(model, start, end, points, x, y, policy="recompute", calibration=calib, strategy="batched")
    for a, b in zip(seq, bat, strict=True):
        assert a.loss == pytest.approx(b.loss, rel=1e-5)
        assert a.accuracy == b.accuracy


def test_endpoints_reproduce_each_checkpoint(image_data) -> None:  # type: ignore[no-untyped-def]
    """With ``interpolate``, α=0 is exactly θ_init's own evaluation and α=1 exactly θ_final's."""
    x, y, _ = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 5), make_state(model, 6)
    results, _ = _run(model, start, end, [Point("all", 0.0), Point("all", 1.0)], x, y, batch_size=70)
    for r, state in zip(results, (start, end), strict=True):
        m = copy.deepcopy(model)
        m.load_state_dict(state)
        with torch.no_grad():
            own = torch.nn.functional.cross_entropy(m.eval()(x), y)
        assert r.loss == pytest.approx(float(own), rel=1e-6)


def test_layerwise_points_equal_reference(image_data) -> None:  # type: ignore[no-untyped-def]
    """Points that move one group while the rest is held at final (or init) match a hand-built state dict."""
    x, y, _ = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 7), make_state(model, 8)
    group = frozenset(k for k in start if k.startswith(("conv.", "bn.")))
    points = [Point("conv", a, group, hold) for hold in (1.0, 0.0) for a in (0.0, 0.5, 1.0)]
    results, _ = _run(model, start, end, points, x, y, strategy="batched", chunk_size=4)
    coefs = [{k: (p.alpha if k in group else p.hold) for k in start} for p in points]
    expected = reference_curve(model, start, end, coefs, x, y, policy="interpolate")
    for r, (loss, _, acc) in zip(results, expected, strict=True):
        assert r.loss == pytest.approx(loss, rel=1e-5)
        assert r.accuracy == pytest.approx(acc)


def test_coinciding_points_are_evaluated_once(image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = TinyMLP().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    group = frozenset({"fc1.weight", "fc1.bias"})
    # at α=1 with hold=1 a group point is the trained network, the same as the whole-path point at α=1
    points = [Point("all", 0.5), Point("all", 1.0), Point("fc1", 1.0, group), Point("fc1", 0.5, group)]
    results, report = _run(model, start, end, points, x, y)
    assert report.unique_points == 3
    assert results[1].loss == results[2].loss
    assert results[3].loss != results[0].loss


def test_inputs_are_never_modified(image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, calib = image_data
    model = TinyConvBN().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start, end = make_state(model, 1), make_state(model, 2)
    start_copy, end_copy = copy.deepcopy(start), copy.deepcopy(end)
    for strategy in ("sequential", "batched"):
        _run(model, start, end, [Point("all", 0.3)], x, y, policy="recompute", calibration=calib, strategy=strategy)
    assert model.training  # the caller's module keeps its mode
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k in start:
        assert torch.equal(start[k], start_copy[k]), k
        assert torch.equal(end[k], end_copy[k]), k


def test_integer_buffers_come_from_final(image_data) -> None:  # type: ignore[no-untyped-def]
    """num_batches_tracked is never interpolated: at every α it is the final checkpoint's value."""
    x, y, _ = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    seen = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = copy.deepcopy(model)

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            seen.append(int(self.inner.bn.num_batches_tracked))
            return self.inner(inp)  # type: ignore[no-any-return]

    spy = Spy().eval()
    wrap = lambda s: {f"inner.{k}": v for k, v in s.items()}  # noqa: E731
    _run(spy, wrap(start), wrap(end), [Point("all", 0.0), Point("all", 0.5)], x, y, batch_size=70)
    assert seen == [int(end["bn.num_batches_tracked"])] * 2


def test_standard_error_matches_per_sample_losses(image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = TinyMLP().eval()
    state = make_state(model, 3)
    (r,), _ = _run(model, state, state, [Point("all", 0.5)], x, y, batch_size=8)
    m = copy.deepcopy(model)
    m.load_state_dict(state)
    with torch.no_grad():
        losses = torch.nn.functional.cross_entropy(m.eval()(x), y, reduction="none").double()
    assert r.loss == pytest.approx(float(losses.mean()), rel=1e-6)
    assert r.loss_se == pytest.approx(float(losses.std() / 70**0.5), rel=1e-5)


def test_progress_reports_every_unit(image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, calib = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    calls: list[tuple[int, int]] = []
    points = [Point("all", a) for a in (0.0, 0.5, 1.0)]
    _run(
        model,
        start,
        end,
        points,
        x,
        y,
        policy="recompute",
        calibration=calib,
        progress=lambda n, total: calls.append((n, total)),
    )
    # 3 points × (ceil(50/16) = 4 calibration batches + ceil(70/32) = 3 evaluation batches)
    assert sum(n for n, _ in calls) == 21
    assert {t for _, t in calls} == {21}


def test_output_that_does_not_fit_targets_is_a_clear_error(image_data) -> None:  # type: ignore[no-untyped-def]
    x, _, _ = image_data
    model = TinyMLP().eval()
    state = make_state(model, 1)
    y = torch.full((70,), 7)  # the model has 5 outputs
    with pytest.raises(DataError, match="targets go up to class 7 but the model outputs 5 classes"):
        _run(model, state, state, [Point("all", 0.0)], x, y)


def test_recompute_without_calibration_data_is_refused(image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = TinyConvBN().eval()
    state = make_state(model, 1)
    with pytest.raises(UsageError, match="recompute"):
        _run(model, state, state, [Point("all", 0.0)], x, y, policy="recompute")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"policy": "bogus"}, "policy 'bogus' is not one of"),
        ({"strategy": "vmap"}, "strategy 'vmap' is not one of"),
        ({"strategy": "auto"}, "the engine needs a concrete strategy, not auto"),
        ({"batch_size": 0}, "batch_size must be a whole number ≥ 1, got 0"),
    ],
)
def test_bad_options(kw, match, image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = TinyMLP().eval()
    state = make_state(model, 1)
    with pytest.raises(UsageError, match=match):
        _run(model, state, state, [Point("all", 0.0)], x, y, **kw)


@pytest.mark.parametrize("strategy", ["sequential", "batched"])
def test_regression_objective(strategy: str, image_data) -> None:  # type: ignore[no-untyped-def]
    """--loss mse: per-example mean squared error, no accuracy."""
    from interpscan.objectives import MSE

    x, _, _ = image_data
    targets = torch.randn(70, 5, generator=torch.Generator().manual_seed(1))
    model = TinyMLP().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    results, _ = _run(model, start, end, [Point("all", 0.3)], x, targets, objective=MSE, strategy=strategy)
    m = copy.deepcopy(model)
    m.load_state_dict({k: s + 0.3 * (end[k] - s) for k, s in start.items()})
    with torch.no_grad():
        per_sample = ((m.eval()(x) - targets) ** 2).mean(1).double()
    assert results[0].loss == pytest.approx(float(per_sample.mean()), rel=1e-5)
    assert results[0].loss_se == pytest.approx(float(per_sample.std() / 70**0.5), rel=1e-4)
    assert math.isnan(results[0].accuracy)
    with pytest.raises(DataError, match="one target value per output value"):
        _run(model, start, end, [Point("all", 0.3)], x, targets[:, :2], objective=MSE)


@pytest.mark.parametrize("strategy", ["sequential", "batched"])
def test_recompute_starts_each_point_from_fresh_statistics(strategy: str, image_data) -> None:  # type: ignore[no-untyped-def]
    """A NaN left in the running statistics (by the template, or by a diverged earlier point) must not leak
    into the re-estimate: momentum·old is 0·NaN = NaN."""
    x, y, calib = image_data
    model = TinyConvBN().eval()
    model.bn.running_mean.fill_(float("nan"))
    start, end = make_state(model, 1), make_state(model, 2)
    start["bn.running_var"].fill_(float("inf"))  # the point at α=0 starts from infinite statistics
    points = [Point("all", a) for a in (0.0, 0.5, 1.0)]
    results, _ = _run(model, start, end, points, x, y, policy="recompute", calibration=calib, strategy=strategy)
    expected = reference_curve(
        model,
        start,
        end,
        [dict.fromkeys(start, a) for a in (0.0, 0.5, 1.0)],
        x,
        y,
        policy="recompute",
        calibration=calib,
    )
    for r, (loss, _, _) in zip(results, expected, strict=True):
        assert math.isfinite(r.loss)
        assert r.loss == pytest.approx(loss, rel=1e-5)


def test_prefix_strategy_shares_the_prefix_and_matches_sequential(image_data) -> None:  # type: ignore[no-untyped-def]
    """A point that moves only the head runs the graph from the head on; the numbers equal sequential's."""
    from interpscan.engine.plan import prepare
    from interpscan.engine.prefix import Prefix, trace

    x, y, calib = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    head = frozenset(k for k in start if k.startswith(("fc1.", "bn1d.", "fc2.")))
    points = [Point("all", 1.0)] + [Point("head", a, head, 1.0) for a in (0.0, 0.5)]
    plan = prepare(model, start, end, BNPolicy.INTERPOLATE, torch.device("cpu"))
    traced, note = trace(plan)
    assert traced is not None
    assert note is None
    runner = Prefix(plan, points, traced)
    assert runner.cut[0] == 0  # the base network itself runs whole
    assert runner.cut[1] == runner.cut[2] > 1  # the head's points start at fc1
    assert str(traced.nodes[runner.cut[1]].target) == "fc1"
    for policy in ("interpolate", "recompute", "batch"):
        prefix, report = _run(model, start, end, points, x, y, policy=policy, calibration=calib, strategy="prefix")
        seq, _ = _run(model, start, end, points, x, y, policy=policy, calibration=calib, strategy="sequential")
        assert report.strategy == "prefix"
        for a, b in zip(prefix, seq, strict=True):
            assert a.loss == pytest.approx(b.loss, rel=1e-6, abs=1e-7)
            assert a.accuracy == b.accuracy


def test_prefix_strategy_falls_back_when_the_model_cannot_be_traced(image_data) -> None:  # type: ignore[no-untyped-def]
    class Branchy(TinyMLP):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = super().forward(x)
            return out if out.sum() > -1e9 else -out  # data-dependent control flow: torch.fx cannot trace it

    x, y, _ = image_data
    model = Branchy().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    group = frozenset({"fc2.weight", "fc2.bias"})
    points = [Point("all", 1.0), Point("fc2", 0.0, group, 1.0)]
    results, report = _run(model, start, end, points, x, y, strategy="prefix")
    assert report.strategy == "sequential"
    assert report.note is not None
    assert "torch.fx could not trace" in report.note
    expected, _ = _run(model, start, end, points, x, y, strategy="sequential")
    assert [r.loss for r in results] == [r.loss for r in expected]


def test_out_of_memory_halves_the_chunk_and_retries(monkeypatch, image_data) -> None:  # type: ignore[no-untyped-def]
    """An out-of-memory error (injected: no GPU here) halves the vmap chunk; the numbers do not change."""
    from interpscan.engine.runners import Batched

    x, y, calib = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    points = [Point("all", a) for a in ALPHAS]
    expected, _ = _run(model, start, end, points, x, y, policy="recompute", calibration=calib, strategy="sequential")
    real_state = Batched._state

    def state_that_fits_two(self, chunk):  # type: ignore[no-untyped-def]
        if chunk.stop - chunk.start > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_state(self, chunk)

    monkeypatch.setattr(Batched, "_state", state_that_fits_two)
    results, report = _run(
        model, start, end, points, x, y, policy="recompute", calibration=calib, strategy="batched", chunk_size=4
    )
    assert report.chunk_size == 2  # 4 -> 2, then every chunk fits
    assert report.chunk_shrinks == 1
    for r, e in zip(results, expected, strict=True):
        assert r.loss == pytest.approx(e.loss, rel=1e-5)


def test_a_single_point_out_of_memory_is_a_clear_run_error(monkeypatch, image_data) -> None:  # type: ignore[no-untyped-def]
    from interpscan.engine.runners import Batched
    from interpscan.errors import RunError

    x, y, _ = image_data
    model = TinyMLP().eval()
    state = make_state(model, 1)

    def never_fits(self, chunk):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(Batched, "_state", never_fits)
    with pytest.raises(RunError, match="out of memory") as info:
        _run(model, state, state, [Point("all", 0.0), Point("all", 1.0)], x, y, strategy="batched")
    assert info.value.hint is not None
    assert info.value.hint == "lower batch_size, or use dtype='bfloat16'"


@pytest.mark.parametrize("strategy", ["sequential", "batched"])
def test_bfloat16_forward_is_close_to_float32(strategy: str, image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    points = [Point("all", a) for a in (0.0, 0.5, 1.0)]
    full, _ = _run(model, start, end, points, x, y, strategy=strategy)
    half, report = _run(model, start, end, points, x, y, strategy=strategy, dtype="bfloat16")
    assert report.dtype == "bfloat16"
    for a, b in zip(full, half, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=3e-2)
    assert [a.loss for a in full] != [b.loss for b in half]  # autocast really ran in bfloat16
    with pytest.raises(UsageError, match=r"^dtype 'float8'"):
        _run(model, start, end, points, x, y, dtype="float8")


@pytest.mark.parametrize("strategy", ["sequential", "batched", "prefix", "prefix-batched"])
def test_resuming_from_any_snapshot_gives_the_uninterrupted_result(strategy: str, image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, calib = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    head = frozenset(k for k in start if k.startswith(("fc1.", "bn1d.", "fc2.")))
    points = [Point("all", a) for a in (0.0, 0.5, 1.0)] + [Point("head", 0.0, head, 1.0)]
    splits = [Split("train", x[:40], y[:40], None), Split("test", x[40:], y[40:], None)]
    snapshots: list[Snapshot] = []
    kw = {
        "policy": "recompute",
        "calibration": calib,
        "calibration_batch_size": 16,
        "batch_size": 16,
        "strategy": strategy,
    }
    full, _ = run_engine(model, start, end, points, splits, on_batch=snapshots.append, **kw)  # type: ignore[arg-type]
    assert len(snapshots) == 3 + 2  # ceil(40/16) + ceil(30/16) batches
    for snap in snapshots[:-1]:
        resumed, _ = run_engine(model, start, end, points, splits, resume=snap, **kw)  # type: ignore[arg-type]
        assert [(r.loss, r.loss_se, r.accuracy, r.n) for r in resumed] == [
            (r.loss, r.loss_se, r.accuracy, r.n) for r in full
        ]
    # the saved sums are really used: 40 more nats on the train split's 40 examples is +1 on its mean loss
    first = snapshots[0]
    tampered = replace(first, splits=(replace(first.splits[0], loss=first.splits[0].loss + 40.0),))
    resumed, _ = run_engine(model, start, end, points, splits, resume=tampered, **kw)  # type: ignore[arg-type]
    assert resumed[0].loss == pytest.approx(full[0].loss + 1.0)
    assert resumed[1].loss == pytest.approx(full[1].loss)  # the test split was not in the snapshot


def test_prefix_shares_even_without_a_whole_network_curve(image_data) -> None:  # type: ignore[no-untyped-def]
    """Group points alone (as the benchmark scans them): the group's α=1 point is the base network."""
    from interpscan.engine.plan import prepare
    from interpscan.engine.points import dedupe
    from interpscan.engine.prefix import Prefix, trace, with_bases

    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    head = frozenset(k for k in start if k.startswith(("fc1.", "bn1d.", "fc2.")))
    points = [Point("head", a, head, 1.0) for a in (0.0, 0.5, 1.0)]
    plan = prepare(model, start, end, BNPolicy.INTERPOLATE, torch.device("cpu"))
    unique, _ = dedupe(points, sorted(plan.start))
    traced, _ = trace(plan)
    assert traced is not None
    runner = Prefix(plan, with_bases(unique, sorted(plan.start)), traced)
    assert runner.bases == {1.0: 2}
    assert runner.cut[0] == runner.cut[1] > 1
    x, y, _ = image_data
    prefix, _ = _run(model, start, end, points, x, y, strategy="prefix")
    seq, _ = _run(model, start, end, points, x, y, strategy="sequential")
    for a, b in zip(prefix, seq, strict=True):
        assert a.loss == pytest.approx(b.loss, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("strategy", ["prefix", "prefix-batched", "batched"])
def test_shared_calibration_gives_the_statistics_of_a_full_pass_per_point(strategy: str, image_data) -> None:  # type: ignore[no-untyped-def]
    """recompute with prefix sharing re-estimates only the layers after each point's cut, and copies the base's
    statistics before it: every point's statistics equal those of a full forward pass per point (sequential)."""
    from interpscan.engine.calibration import recompute_statistics
    from interpscan.engine.core import make_runner
    from interpscan.engine.plan import prepare
    from interpscan.engine.points import dedupe
    from interpscan.options import Strategy

    _, _, calib = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    head = frozenset(k for k in start if k.startswith(("fc1.", "bn1d.", "fc2.")))
    conv = frozenset(k for k in start if k.startswith(("conv.", "bn.")))
    points = [Point("all", a) for a in (0.0, 0.5, 1.0)]
    points += [Point("head", a, head, 1.0) for a in (0.0, 0.3)] + [Point("conv", a, conv, 0.0) for a in (0.2, 0.9)]
    last = frozenset({"fc2.weight", "fc2.bias"})  # after the last BN layer: nothing to re-estimate, base's copied
    points += [Point("fc2", a, last, 1.0) for a in (0.0, 0.6)]

    def statistics(name: str) -> dict[Point, dict[str, torch.Tensor]]:
        plan = prepare(model, start, end, BNPolicy.RECOMPUTE, torch.device("cpu"))
        unique, _ = dedupe(points, plan.names)
        runner, evaluated = make_runner(Strategy(name), plan, unique, chunk_size=3, device=torch.device("cpu"))
        batches = [calib[i : i + 16] for i in range(0, len(calib), 16)]
        with torch.inference_mode():
            stats, count, examples = recompute_statistics(runner, plan, batches, lambda _n: None)
        assert (count, examples) == (4, 50)
        return {p: {k: v[i] for k, v in stats.items()} for i, p in enumerate(evaluated) if p.curve}

    full, shared = statistics("sequential"), statistics(strategy)
    assert set(full) == set(shared)
    for point, stats in full.items():
        for name, value in stats.items():
            # running means near 0 are sums of activations of size 1: the floor is at that size
            assert torch.allclose(shared[point][name], value, **tol32()), (point, name)
            if strategy == "prefix":  # the same kernels on the same activations: bit for bit
                assert torch.equal(shared[point][name], value), (point, name)
    # the statistics really differ between points (the comparison could fail)
    heads = [s["bn1d.running_mean"] for p, s in full.items() if p.curve == "head"]
    assert not torch.allclose(heads[0], heads[1])


@pytest.mark.parametrize("strategy", ["prefix", "prefix-batched"])
def test_a_group_the_forward_never_reads_runs_whole(strategy: str, image_data) -> None:  # type: ignore[no-untyped-def]
    """A group of tensors no node reads (an unused head) has no cut to resume from: its points run whole."""

    class Unused(TinyConvBN):
        def __init__(self) -> None:
            super().__init__()
            self.spare = nn.Linear(3, 3)  # never called in forward

    x, y, calib = image_data
    model = Unused().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    spare = frozenset({"spare.weight", "spare.bias"})
    points = [Point("all", 1.0)] + [Point("spare", a, spare, 1.0) for a in (0.0, 0.5)]
    for policy in ("interpolate", "recompute"):
        shared, _ = _run(model, start, end, points, x, y, policy=policy, calibration=calib, strategy=strategy)
        plain, _ = _run(model, start, end, points, x, y, policy=policy, calibration=calib, strategy="sequential")
        assert [r.loss for r in shared] == pytest.approx([r.loss for r in plain], rel=1e-6)
        assert shared[1].loss == pytest.approx(shared[0].loss, rel=1e-6)  # the spare head changes nothing


class _Head(nn.Module):
    """conv → BN → BN (called twice when ``shared``) → head; ``calls`` counts the head's runs (a class counter:
    the engine runs a copy)."""

    calls = 0

    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.bn2 = nn.BatchNorm2d(4)
        self.shared = shared
        self.fc = nn.Linear(4 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(torch.relu(self.bn(self.conv(x))))
        if self.shared:
            x = self.bn2(x)  # the last BN layer is called twice: no pass may end after its first call
        type(self).calls += 1
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("strategy", ["sequential", "batched", "prefix", "prefix-batched"])
@pytest.mark.parametrize("shared", [False, True])
def test_calibration_ends_after_the_last_bn_layer(image_data, monkeypatch, strategy: str, shared: bool) -> None:  # type: ignore[no-untyped-def]
    """Under recompute, a calibration pass stops right after the last BN layer (the head changes no statistic),
    with the numbers of whole passes (and of the plain loop's); a BN layer called twice is run to the end."""
    from interpscan.engine import calibration

    x, y, calib = image_data
    torch.manual_seed(0)
    model = _Head(shared).eval()
    start, end = make_state(model, 1), make_state(model, 2)
    points = [Point("all", 0.0), Point("all", 0.5), Point("conv", 0.5, frozenset({"conv.weight", "conv.bias"}))]
    kw = {"calibration": calib, "batch_size": 32, "calibration_batch_size": 25, "strategy": strategy}
    splits = [Split("test", x, y, None)]
    _Head.calls = 0
    run_engine(model, start, end, points, splits, policy="interpolate", **kw)
    evaluation = _Head.calls
    _Head.calls = 0
    results, _ = run_engine(model, start, end, points, splits, policy="recompute", **kw)
    if strategy == "sequential":  # under vmap and fx the Python counter counts traces, not passes
        calibration_passes = 0 if not shared else 3 * 2  # 3 points × 2 calibration batches of 25 (50 images)
        assert _Head.calls == evaluation + 1 + calibration_passes  # + the one-example pass finding the last BN
    with monkeypatch.context() as m:
        m.setattr(calibration, "last_statistics_layer", lambda plan, inputs: None)
        whole, _ = run_engine(model, start, end, points, splits, policy="recompute", **kw)
    exact = strategy in ("sequential", "prefix")
    for got, want in zip(results, whole, strict=True):
        assert got.loss == (want.loss if exact else pytest.approx(want.loss, rel=1e-6))
    if not shared:  # (a BN layer called twice is averaged per batch, not per call as momentum=None does)
        coefficients = [{n: p.coefficient(n) for n in start} for p in points]
        reference = reference_curve(model, start, end, coefficients, x, y, policy="recompute", calibration=calib,
                                    calibration_batch_size=25)  # fmt: skip
        for got, (loss, _, acc) in zip(results, reference, strict=True):
            assert got.loss == pytest.approx(loss, rel=1e-6)
            assert got.accuracy == pytest.approx(acc)

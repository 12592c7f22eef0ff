"""The benchmark's pieces (benchmarks/bench.py) on tiny models: the floor and the naive loop compute the same losses
as ``scan_points``, and a --quick run writes its table and CSV. Correctness only; speed lives in the benchmark."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import TinyConvBN, TinyMLP, make_state, run_engine

from interpscan.data import Split

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """benchmarks/bench.py is a script, not a package module: load it from its path."""
    spec = importlib.util.spec_from_file_location("interpscan_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("scan", ["whole", "groups"])
@pytest.mark.parametrize("model_cls", [TinyMLP, TinyConvBN])
def test_every_method_gives_scan_points_losses(bench, model_cls, scan, image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = model_cls().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    alphas = [0.0, 0.3, 1.0]
    if scan == "whole":
        points = bench.whole_points(alphas)
    else:
        points, groups = bench.group_points(model, ["@leaves"], alphas)
        assert groups == len({p.curve for p in points}) > 1
        assert len(points) == groups * len(alphas)
    expected, _ = run_engine(model, start, end, points, [Split("t", x, y, None)], batch_size=32)
    problem = bench.Problem.make(model, start, end, points, x, y, 32, torch.device("cpu"))
    for name, make in bench.methods([s for s in bench.ENGINE_STRATEGIES if s in bench.STRATEGIES], None).items():
        losses, _ = make(problem)()
        assert losses == pytest.approx([r.loss for r in expected], rel=1e-5), name


def test_measure_rows_and_ratios(bench, image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 3), make_state(model, 4)
    points, _ = bench.group_points(model, ["conv,bn", "fc1"], [0.0, 0.5, 1.0])
    problem = bench.Problem.make(model, start, end, points, x, y, 16, torch.device("cpu"))
    rows = bench.measure("tiny", "groups", problem, bench.methods(["sequential"], None), 2, True, lambda _m: None)
    by_name = {r.strategy: r for r in rows}
    assert list(by_name) == ["floor", "naive", "sequential"]
    assert by_name["floor"].vs_floor == 1.0
    assert by_name["naive"].speedup_vs_naive == 1.0
    for r in rows:
        assert r.points == 9
        assert r.seconds > 0
        assert r.max_rel_diff < 1e-5
        assert math.isclose(r.vs_floor * by_name["floor"].seconds, r.seconds)
    # hold final: every group's α=1 is the final network, which the engine evaluates once; a conv net on CPU
    # runs channels-last, as the CLI's auto would
    assert by_name["sequential"].note == "7 distinct; channels-last"


def test_measure_reports_a_failing_strategy(bench, image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = image_data
    model = TinyMLP().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    problem = bench.Problem.make(model, start, end, bench.whole_points([0.0, 1.0]), x, y, 32, torch.device("cpu"))
    makers = {**bench.methods([], None), "bogus": bench.interpscan_runner("bogus", None)}
    rows = bench.measure("tiny", "whole", problem, makers, 1, True, lambda _m: None)
    bogus = rows[-1]
    assert bogus.strategy == "bogus"
    assert bogus.note.startswith("failed: UsageError: ")
    assert math.isnan(bogus.seconds)
    assert "failed" in bench.table(rows)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.04412, "0.0441"), (104.4, "104"), (1234.5, "1230"), (1.0, "1"), (2.5e-5, "2.50e-05"), (0.0, "0")],
)
def test_sig(bench, value, text) -> None:  # type: ignore[no-untyped-def]
    assert bench.sig(value) == text
    assert bench.sig(math.nan) == ""


def test_quick_run_writes_table_and_csv(bench, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "results.csv"
    assert bench.main(["--quick", "--models", "mlp", "--csv", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "# torch " in stdout
    assert "smoke run" in stdout
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    strategies = [s for s in bench.ENGINE_STRATEGIES if s in bench.STRATEGIES]
    assert [(r["scan"], r["strategy"]) for r in rows] == [
        (scan, m) for scan in ("whole", "groups") for m in ("floor", "naive", *strategies)
    ]
    assert list(rows[0]) == bench.COLUMNS + bench.CONTEXT
    assert {r["points"] for r in rows} == {"3", "9"}  # K=3 whole; 3 groups × 3 for the MLP
    assert all(r["device"] == "cpu" and r["samples"] == "128" for r in rows)
    assert all(float(r["max_rel_diff"]) < 1e-5 for r in rows)
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temp file left behind


def test_rejects_unknown_model(bench, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert bench.main(["--quick", "--models", "vgg", "--csv", str(tmp_path / "r.csv")]) == 2
    assert "unknown model or scan vgg" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()

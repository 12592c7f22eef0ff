"""Grid parsing, policy choice and the library entry point run_scan."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from interpscan.api import ScanConfig, run_scan
from interpscan.errors import UsageError
from interpscan.models import build_model, parse_model_spec
from interpscan.schema import RESULT_COLUMNS, SUMMARY_COLUMNS
from interpscan.values import parse_grid


@pytest.mark.parametrize(
    ("alphas", "alpha_range", "grid", "added"),
    [
        ("3", None, [0.0, 0.5, 1.0], []),
        ("21", None, [i / 20 for i in range(21)], []),
        ("5", "-0.5,1.5", [-0.5, 0.0, 0.5, 1.0, 1.5], []),
        ("4", "-0.5,1.5", [-0.5, 0.0, 1 / 6, 5 / 6, 1.0, 1.5], [0.0, 1.0]),
        ("0,0.25,0.5,0.9,0.95,1", None, [0.0, 0.25, 0.5, 0.9, 0.95, 1.0], []),
        ("0.5,0.1,0.5", None, [0.0, 0.1, 0.5, 1.0], [0.0, 1.0]),
        ("1.0", None, [0.0, 1.0], [0.0]),
    ],
)
def test_parse_grid(alphas: str, alpha_range: str | None, grid: list[float], added: list[float]) -> None:
    got, got_added = parse_grid(alphas, alpha_range)
    assert list(got) == pytest.approx(grid, abs=1e-12)
    assert list(got_added) == added


def test_grid_values_are_tidy() -> None:
    grid, _ = parse_grid("21")
    assert 0.15 in grid
    assert 0.35 in grid


@pytest.mark.parametrize(
    ("alphas", "alpha_range", "match"),
    [
        ("1", None, "at least 2"),
        ("abc", None, "neither a count nor a list"),
        ("0,nan", None, "finite"),
        ("5", "1,0", "LO < HI"),
        ("5", "x", "LO,HI"),
        ("0,0.5", "-1,2", "count of points"),
    ],
)
def test_parse_grid_errors(alphas: str, alpha_range: str | None, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        parse_grid(alphas, alpha_range)


def _checkpoints(tmp_path: Path, bn: bool = True) -> tuple[Path, Path]:
    spec = parse_model_spec("cnn", {"width": 4, "bn": bn})
    torch.manual_seed(0)
    a, b = build_model(spec), build_model(spec)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    torch.save({"model": b.state_dict(), "epoch": 3}, tmp_path / "b.pt")
    return tmp_path / "a.pt", tmp_path / "b.pt"


def test_run_scan_returns_tidy_tables_and_manifest(tmp_path: Path) -> None:
    init, final = _checkpoints(tmp_path)
    config = ScanConfig.from_values(
        [init, final],
        {
            "model": "cnn",
            "model_args": {"width": 4},
            "data": "fashion-mnist-small",
            "splits": ("train", "test"),
            "samples": 64,
            "alphas": 5,
            "bn_samples": 32,
        },
    )
    result = run_scan(config)
    assert list(result.results.columns) == RESULT_COLUMNS
    assert list(result.summary.columns) == SUMMARY_COLUMNS
    assert len(result.results) == 2 * 5
    assert set(result.results["n"]) == {64}
    assert result.results["alpha"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] * 2
    m = result.manifest
    assert m["bn"]["policy"] == "recompute"
    assert m["bn"]["calibration_samples"] == 32
    assert len(m["bn"]["calibration_indices"]) == 32
    assert m["model"]["args"] == {"width": 4, "in_channels": 1, "num_classes": 10, "bn": True}
    assert m["checkpoints"]["final"]["container_key"] == "model"
    assert m["checkpoints"]["final"]["ignored_keys"] == ["epoch"]
    assert len(m["data"]["splits"]["test"]["indices"]) == 64
    assert m["strategy"] == "sequential"
    assert m["device"] == "cpu"


def test_policy_defaults(tmp_path: Path) -> None:
    init, final = _checkpoints(tmp_path, bn=False)
    result = run_scan(
        ScanConfig.from_values(
            [init, final],
            {
                "model": "cnn",
                "model_args": {"width": 4, "bn": False},
                "data": "fashion-mnist-small",
                "samples": 16,
                "alphas": 2,
            },
        )
    )
    assert result.manifest["bn"]["policy"] == "interpolate"
    assert "no batch-norm" in result.manifest["bn"]["reason"]


def test_recompute_needs_a_train_split(tmp_path: Path) -> None:
    init, final = _checkpoints(tmp_path)
    data = tmp_path / "eval.pt"
    torch.save({"x": torch.randn(20, 1, 28, 28), "y": torch.randint(0, 10, (20,))}, data)
    values = {"model": "cnn", "model_args": {"width": 4}, "data": str(data), "alphas": 2}
    auto = run_scan(ScanConfig.from_values([init, final], values))
    assert auto.manifest["bn"]["policy"] == "interpolate"
    assert "no train split" in auto.manifest["bn"]["reason"]
    with pytest.raises(UsageError, match="needs a train split"):
        run_scan(ScanConfig.from_values([init, final], {**values, "bn": "recompute"}))


def test_non_finite_losses_are_kept_and_flagged(tmp_path: Path) -> None:
    """An extrapolated point whose loss overflows stays NaN/inf in results.csv and is counted in the summary."""
    import pandas as pd

    from interpscan.tables import Curve, summary_frame

    results = pd.DataFrame(
        {
            "curve": ["all"] * 4,
            "split": ["test"] * 4,
            "alpha": [0.0, 0.5, 1.0, 1.5],
            "loss": [2.0, 1.0, 0.5, float("inf")],
            "loss_se": [0.1] * 4,
            "accuracy": [0.1, 0.5, 0.9, 0.1],
            "n": [10] * 4,
            "hold": [""] * 4,
            "mode": [""] * 4,
        }
    )
    state = {"w": torch.zeros(2)}
    summary = summary_frame(results, {"all": Curve("all", "", "", frozenset({"w"}), ["w"])}, [state, state], 0.0)
    row = summary.iloc[0]
    assert row["nonfinite_points"] == 1
    assert row["delta"] == 0.0  # metrics use [0, 1], where the curve is finite
    assert results["loss"].iloc[-1] == float("inf")  # never clipped or replaced
    nan_inside = results.assign(loss=[2.0, float("nan"), 0.5, 0.4])
    row = summary_frame(nan_inside, {"all": Curve("all", "", "", frozenset({"w"}), ["w"])}, [state, state], 0.0).iloc[0]
    assert row["nonfinite_points"] == 1
    assert pd.isna(row["delta"])
    assert pd.isna(row["monotone"])

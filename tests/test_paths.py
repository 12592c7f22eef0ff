"""Paths through several checkpoints (interpscan.paths): each segment is exactly the two-checkpoint scan of its
checkpoints, the whole path's metrics are those of the joined curve, --random-init appends the model's own fresh
initialization, and an interrupted multi-segment scan resumes to the uninterrupted result."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from conftest import run_cli

from interpscan import scan
from interpscan.api import ScanConfig, run_scan
from interpscan.engine import ScanSnapshot
from interpscan.errors import UsageError
from interpscan.models import build_model, parse_model_spec
from interpscan.plots import path_figure
from interpscan.results import load_run
from interpscan.schema import WHOLE_PATH

SPEC = parse_model_spec("cnn", {"width": 4})
OPTIONS: dict[str, Any] = {"data": "fashion-mnist-small", "samples": 120, "alphas": 5, "bootstrap": 40}


@pytest.fixture
def path_files(tmp_path: Path) -> list[Path]:
    """Three cnn checkpoints (width 4, batch norm), each a fresh initialization."""
    files = []
    for seed in range(3):
        torch.manual_seed(seed)
        files.append(tmp_path / f"c{seed}.pt")
        torch.save(build_model(SPEC).state_dict(), files[-1])
    return files


def _without(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    return frame.drop(columns=list(columns)).reset_index(drop=True)


@pytest.mark.parametrize("bn", ["recompute", "interpolate"])
def test_each_segment_equals_a_two_checkpoint_run_of_it(path_files: list[Path], bn: str) -> None:
    kw = {**OPTIONS, "groups": "conv*", "bn": bn, "bn_samples": 64}
    whole = scan("cnn", path_files, None, **kw)
    assert sorted(set(whole.results["segment"])) == [1, 2]
    for segment in (1, 2):
        alone = scan("cnn", path_files[segment - 1], path_files[segment], **kw)
        rows = whole.results[whole.results["segment"] == segment]
        assert (rows["t"] == rows["alpha"] + segment - 1).all()
        pd.testing.assert_frame_equal(_without(rows, "segment", "t"), _without(alone.results, "segment", "t"))
        summary = whole.summary[whole.summary["segment"] == segment]
        pd.testing.assert_frame_equal(_without(summary, "segment"), _without(alone.summary, "segment"))
    assert (alone.results["t"] == alone.results["alpha"]).all()  # one segment: t is α


def _reference(t: list[float], loss: list[float]) -> dict[str, float]:
    """The whole path's metrics by their definitions, over the points in order of t (docs/design.md)."""
    n, m = len(t), t[-1]
    rise = max(max(loss[j] - loss[i] for i in range(j)) for j in range(1, n))
    line = [loss[0] + (loss[-1] - loss[0]) * x / m for x in t]
    excess = [v - y for v, y in zip(loss, line, strict=True)]
    eps = 0.1 * abs(loss[0] - loss[-1])
    return {
        "delta": max(rise, 0.0),
        "barrier_linear": max(excess),
        "barrier_linear_alpha": t[excess.index(max(excess))],
        "barrier_max": max(loss) - max(loss[0], loss[-1]),
        "plateau_alpha": next(x for x, v in zip(t, loss, strict=True) if v <= loss[-1] + eps),
    }


def test_the_whole_path_row_is_the_joined_curve_on_t(path_files: list[Path]) -> None:
    result = scan("cnn", path_files, None, **{**OPTIONS, "alphas": 7, "bn": "interpolate"})
    points = result.results.sort_values(["segment", "alpha"], kind="stable")
    row = result.summary[result.summary["segment"] == WHOLE_PATH].iloc[0]
    want = _reference(points["t"].tolist(), points["loss"].tolist())
    for name, value in want.items():
        assert row[name] == pytest.approx(value, abs=1e-12), name
    assert row["loss_start"] == points["loss"].iloc[0]
    assert row["loss_end"] == points["loss"].iloc[-1]
    seg = result.summary[result.summary["segment"] != WHOLE_PATH]
    assert row["distance"] == pytest.approx(seg["distance"].sum())  # the path's length
    assert row["delta_ci_low"] <= row["delta"] <= row["delta_ci_high"]
    assert 0.0 <= row["plateau_alpha_ci_low"] <= row["plateau_alpha_ci_high"] <= 2.0  # in t, not u


def test_random_init_appends_the_models_fresh_initialization(path_files: list[Path]) -> None:
    torch.manual_seed(123)  # whatever the generator's state before, the seed alone decides
    result = scan("cnn", path_files[:2], None, **{**OPTIONS, "bn": "interpolate"}, random_init=11)
    torch.manual_seed(11)
    fresh = build_model(parse_model_spec("cnn", result.manifest["model"]["args"])).state_dict()
    alone = scan("cnn", path_files[1], fresh, **{**OPTIONS, "bn": "interpolate"})
    rows = result.results[result.results["segment"] == 2]
    assert rows["loss"].tolist() == alone.results["loss"].tolist()
    labels = [c["label"] for c in result.manifest["path"]["checkpoints"]]
    assert labels == ["init", "final", "random-init"]
    assert result.manifest["path"]["random_init"] == 11


def test_random_init_needs_a_model_with_a_factory(path_files: list[Path]) -> None:
    with pytest.raises(UsageError, match=r"^random_init builds a fresh model from its factory"):
        scan(build_model(SPEC), path_files[0], path_files[1], **OPTIONS, random_init=0)


def test_a_zero_length_segment_is_an_error(path_files: list[Path]) -> None:
    with pytest.raises(UsageError, match=r"checkpoints 2 and 3 \(final and c2\) are the same network"):
        scan("cnn", [path_files[0], path_files[1], path_files[1]], None, **OPTIONS)
    with pytest.raises(UsageError, match="a path needs two or more checkpoints"):
        scan("cnn", [path_files[0]], None, **OPTIONS)
    with pytest.raises(UsageError, match="final is given too"):
        scan("cnn", path_files, path_files[0], **OPTIONS)


def _config(files: list[Path], **kw: Any) -> ScanConfig:
    return ScanConfig.from_values(files, {"model": "cnn", "batch_size": 40, "bn_samples": 64, **OPTIONS, **kw})


@pytest.mark.parametrize("refine", [0, 2])
def test_a_scan_interrupted_in_any_segment_resumes_to_the_same_result(path_files: list[Path], refine: int) -> None:
    snapshots: list[ScanSnapshot] = []
    full = run_scan(_config(path_files, refine=refine), on_batch=snapshots.append)
    calls = 2 * (1 + refine)  # per segment: the grid, then a call per round of refinement (1 point each)
    assert max(len(s.finished) for s in snapshots) == calls - 1
    assert int(full.results["refined"].sum()) == 2 * refine * 1  # per segment and curve (here one curve)
    later = [s for s in snapshots if len(s.finished) == calls - 1]  # in the last call
    for snap in (snapshots[1], later[0]):
        saved = ScanSnapshot.from_state(snap.to_state())  # through the file format
        resumed = run_scan(_config(path_files, refine=refine), resume=saved)
        pd.testing.assert_frame_equal(resumed.results, full.results)
        pd.testing.assert_frame_equal(resumed.summary, full.summary)
    other = [path_files[0], path_files[1], path_files[0]]  # another third checkpoint: another fingerprint
    with pytest.raises(UsageError, match="made with other inputs or options"):
        run_scan(_config(other, refine=refine), resume=later[0])


def test_cli_runs_plots_and_compares_a_path_through_three_checkpoints(
    path_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["--model", "cnn", "--samples", "100", "--alphas", "3", "--bootstrap", "20", "-o", str(out), "-q"]
    code, err = run_cli(monkeypatch, capsys, "run", "--data", "fashion-mnist-small", *map(str, path_files), *args)
    assert code == 0, err
    run = load_run(out)
    assert sorted(set(run.summary["segment"])) == [0, 1, 2]
    assert run.manifest["path"]["segments"] == 2
    fig = path_figure(run.results, run.summary)  # the whole path against t, the checkpoints marked
    assert [a.text for a in fig.layout.annotations if a.text in ("c0", "c1", "c2")] == ["c0", "c1", "c2"]
    line = next(tr for tr in fig.data if tr.meta["role"] == "line" and tr.meta["panel"] == "loss")
    assert list(line.x) == run.results.sort_values(["segment", "alpha"])["t"].tolist()
    assert fig.layout.xaxis.title.text.startswith("t")
    code, err = run_cli(monkeypatch, capsys, "compare", str(out), str(out), "-o", str(tmp_path / "cmp.html"))
    assert code == 0, err
    code, err = run_cli(
        monkeypatch, capsys, "run", "--data", "fashion-mnist-small", str(path_files[0]), *args, "--force"
    )
    assert code == 2
    assert "a path needs two or more checkpoints, got 1" in err
    assert "Traceback" not in err


def test_a_results_file_missing_a_segment_is_refused(path_files: list[Path], tmp_path: Path) -> None:
    result = scan("cnn", path_files, None, **{**OPTIONS, "bn": "interpolate"})
    result.save(tmp_path / "run", html=False)
    csv = tmp_path / "run" / "results.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(line for line in lines if not line.rstrip().endswith(",2,2,False")))
    from interpscan.errors import OutputError

    with pytest.raises(OutputError, match="segment"):
        load_run(tmp_path / "run")
    assert math.isfinite(result.summary["delta"].iloc[0])

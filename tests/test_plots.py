"""Tests for interpscan.plots: traces carry the results' values; HTML is written atomically."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import pytest

from interpscan.errors import UsageError
from interpscan.plots import path_figure, write_html

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
# A bump at α=0.5 on both splits; the test loss sits higher.
LOSSES = {"train": [2.0, 2.2, 2.6, 1.4, 0.5], "test": [2.1, 2.4, 2.9, 1.8, 0.9]}
ACCURACY = {"train": [0.1, 0.12, 0.15, 0.6, 0.9], "test": [0.1, 0.11, 0.14, 0.5, 0.8]}
GROUP_LOSSES = {"layer1": [5.5, 4.0, 3.0, 1.5, 0.5], "fc": [2.0, 0.6, 0.5, 0.5, 0.5]}


def make_results(*, accuracy: bool = True, groups: bool = False, se: float = 0.05) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    # Test first and alphas reversed: the figure must order splits and sort by α itself.
    for split in ("test", "train"):
        for a, loss, acc in reversed(list(zip(ALPHAS, LOSSES[split], ACCURACY[split], strict=True))):
            rows.append(
                {
                    "curve": "all",
                    "split": split,
                    "alpha": a,
                    "loss": loss,
                    "loss_se": se,
                    "accuracy": acc if accuracy else math.nan,
                    "n": 100,
                    "mode": "interpolate",
                }
            )
    if groups:
        for group, losses in GROUP_LOSSES.items():
            for split in ("train", "test"):
                for a, loss in zip(ALPHAS, losses, strict=True):
                    rows.append(
                        {
                            "curve": group,
                            "split": split,
                            "alpha": a,
                            "loss": loss + (0.1 if split == "test" else 0.0),
                            "loss_se": se,
                            "accuracy": 0.5 if accuracy else math.nan,
                            "n": 100,
                            "mode": "interpolate",
                        }
                    )
    return pd.DataFrame(rows)


def make_summary(**overrides: dict[str, float]) -> pd.DataFrame:
    rows = []
    for split, losses in LOSSES.items():
        row: dict[str, Any] = {
            "curve": "all",
            "split": split,
            "loss_start": losses[0],
            "loss_end": losses[-1],
            "delta": losses[2] - losses[0],
            "monotone": False,
            "barrier_linear": 1.3,
            "barrier_linear_alpha": 0.75,
            "barrier_max": losses[2] - losses[0],
            "barrier_max_alpha": 0.5,
            "error_barrier_linear": 0.0,
            "error_barrier_max": 0.0,
            "distance": 10.0,
            "relative_distance": 0.5,
            "cosine": 0.9,
        }
        row.update(overrides.get(split, {}))
        rows.append(row)
    return pd.DataFrame(rows)


def traces(fig: go.Figure, **meta: str) -> list[dict[str, Any]]:
    """Traces of ``fig.to_dict()`` whose meta has all the given key/values."""
    found = []
    for trace in fig.to_dict()["data"]:
        m = trace.get("meta") or {}
        if all(m.get(k) == v for k, v in meta.items()):
            found.append(trace)
    return found


def as_floats(values: Any) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def test_one_line_per_split_with_alphas_and_losses() -> None:
    fig = path_figure(make_results())
    for split in ("train", "test"):
        lines = traces(fig, role="line", curve="all", split=split, panel="loss")
        assert len(lines) == 1
        assert as_floats(lines[0]["x"]) == ALPHAS
        assert as_floats(lines[0]["y"]) == pytest.approx(LOSSES[split])
        assert lines[0]["name"] == split
        assert lines[0]["legendgroup"] == split
    # Legend entries: one per split, in the order train, test.
    legend = [t["name"] for t in fig.to_dict()["data"] if t.get("showlegend", True)]
    assert legend == ["train", "test"]


def test_split_colour_consistent_across_panels() -> None:
    fig = path_figure(make_results())
    colours = {}
    for split in ("train", "test"):
        loss_line = traces(fig, role="line", split=split, panel="loss")[0]
        acc_line = traces(fig, role="line", split=split, panel="accuracy")[0]
        assert loss_line["line"]["color"] == acc_line["line"]["color"]
        assert acc_line["showlegend"] is False
        assert acc_line["xaxis"] == "x2"
        assert as_floats(acc_line["y"]) == pytest.approx(ACCURACY[split])
        colours[split] = loss_line["line"]["color"]
    assert colours["train"] != colours["test"]


def test_standard_error_band() -> None:
    fig = path_figure(make_results(se=0.05))
    band = traces(fig, role="band", split="train")
    assert len(band) == 2
    upper, lower = band
    assert as_floats(upper["y"]) == pytest.approx([v + 0.05 for v in LOSSES["train"]])
    assert as_floats(lower["y"]) == pytest.approx([v - 0.05 for v in LOSSES["train"]])
    assert lower["fill"] == "tonexty"
    assert not traces(fig, role="band", panel="accuracy")


@pytest.mark.parametrize("se", [0.0, math.nan])
def test_no_band_without_standard_error(se: float) -> None:
    assert not traces(path_figure(make_results(se=se)), role="band")


def test_endpoints_marked() -> None:
    fig = path_figure(make_results())
    ends = traces(fig, role="endpoints", split="test", panel="loss")
    assert len(ends) == 1
    assert as_floats(ends[0]["x"]) == [0.0, 1.0]
    assert as_floats(ends[0]["y"]) == pytest.approx([LOSSES["test"][0], LOSSES["test"][-1]])
    assert ends[0]["marker"]["symbol"] == "diamond"


def test_hover_shows_alpha_loss_se_accuracy_n() -> None:
    fig = path_figure(make_results())
    text = traces(fig, role="line", split="train", panel="loss")[0]["hovertext"][2]
    assert "α=0.5" in text
    assert "loss=2.6 ± 0.05" in text
    assert "accuracy=15.00%" in text
    assert "n=100" in text


def test_barrier_marker_at_barrier_max_alpha() -> None:
    fig = path_figure(make_results(), make_summary())
    for split in ("train", "test"):
        (star,) = traces(fig, role="barrier", split=split)
        assert star["x"] == [0.5]
        assert star["y"] == [pytest.approx(LOSSES[split][2])]
        text = star["hovertext"][0]
        assert "B_max" in text
        assert "B_lin=1.3" in text
        assert "Δ=" in text


def test_barrier_marker_falls_back_to_linear_barrier() -> None:
    summary = make_summary(train={"barrier_max": -0.1, "barrier_max_alpha": 0.0})
    fig = path_figure(make_results(), summary)
    (star,) = traces(fig, role="barrier", split="train")
    assert star["x"] == [0.75]
    assert star["y"] == [pytest.approx(LOSSES["train"][3])]
    assert "worst barrier (B_lin)" in star["hovertext"][0]


def test_no_barrier_marker_without_positive_barrier_or_summary() -> None:
    summary = make_summary(train={"barrier_max": -0.1, "barrier_linear": 0.0})
    fig = path_figure(make_results(), summary)
    assert not traces(fig, role="barrier", split="train")
    assert len(traces(fig, role="barrier", split="test")) == 1
    assert not traces(path_figure(make_results()), role="barrier")


def test_accuracy_panel_absent_when_accuracy_all_nan() -> None:
    fig = path_figure(make_results(accuracy=False))
    layout = fig.to_dict()["layout"]
    assert "xaxis2" not in layout
    assert not traces(fig, panel="accuracy")
    assert {t["xaxis"] for t in fig.to_dict()["data"]} == {"x"}
    assert "accuracy" not in traces(fig, role="line", split="train")[0]["hovertext"][0]


def test_per_group_curves_on_loss_panel() -> None:
    fig = path_figure(make_results(groups=True))
    for group, losses in GROUP_LOSSES.items():
        (line,) = traces(fig, role="line", curve=group)
        assert line["name"] == group
        assert line["showlegend"] is True
        assert line["xaxis"] == "x"
        assert line["meta"]["split"] == "train"
        assert as_floats(line["y"]) == pytest.approx(losses)
    # The vary-all line of the first split is the dashed reference; the other split stays solid.
    assert traces(fig, role="line", curve="all", split="train", panel="loss")[0]["line"]["dash"] == "dash"
    assert traces(fig, role="line", curve="all", split="test", panel="loss")[0]["line"]["dash"] == "solid"
    legend = [t["name"] for t in fig.to_dict()["data"] if t.get("showlegend", True)]
    assert legend == ["train", "test", "layer1", "fc"]


def test_non_finite_loss_leaves_gap() -> None:
    results = make_results()
    train = results["split"] == "train"
    results.loc[train & (results["alpha"] == 0.5), "loss"] = math.nan
    results.loc[train & (results["alpha"] == 0.75), "loss"] = math.inf
    fig = path_figure(results, make_summary())
    line = traces(fig, role="line", split="train", panel="loss")[0]
    y = as_floats(line["y"])
    assert math.isnan(y[2])
    assert math.isnan(y[3])
    assert y[4] == pytest.approx(0.5)
    assert "loss=inf" in line["hovertext"][3]
    # The barrier sits on a NaN loss: no marker rather than a bogus one.
    assert not traces(fig, role="barrier", split="train")
    assert "null" in fig.to_json()


def test_reference_lines_only_when_grid_extends_beyond_endpoints() -> None:
    assert not fig_shapes(path_figure(make_results()))
    results = make_results()
    extra = results[results["alpha"] == 1.0].assign(alpha=1.5, loss=3.0)
    shapes = fig_shapes(path_figure(pd.concat([results, extra], ignore_index=True)))
    xs = sorted(s["x0"] for s in shapes)
    assert xs == [0.0, 0.0, 1.0, 1.0]  # two panels
    assert all(s["line"]["dash"] == "dot" for s in shapes)


def fig_shapes(fig: go.Figure) -> list[dict[str, Any]]:
    shapes: list[dict[str, Any]] = fig.to_dict()["layout"].get("shapes", [])
    return shapes


def test_layout_and_title() -> None:
    layout = path_figure(make_results(), title="ResNet-18").to_dict()["layout"]
    assert layout["title"]["text"] == "ResNet-18"
    assert layout["hovermode"] == "x unified"
    assert layout["xaxis"]["title"]["text"] == "α"


def test_missing_columns_reported_together() -> None:
    with pytest.raises(UsageError, match="loss_se, n"):
        path_figure(make_results().drop(columns=["n", "loss_se"]))


def test_empty_results_rejected() -> None:
    with pytest.raises(UsageError, match="no rows"):
        path_figure(make_results().iloc[0:0])


def test_write_html_self_contained(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "path.html"
    write_html(path_figure(make_results(), title="my-scan-title"), path)
    html = path.read_text(encoding="utf-8")
    assert "plotly" in html
    assert "my-scan-title" in html
    assert "2.9" in html  # a test loss from the trace data
    assert 'src="https://cdn.plot.ly' not in html  # nothing fetched when the file is opened
    assert len(html) > 1_000_000  # plotly.js inlined
    assert [p.name for p in tmp_path.iterdir()] == ["path.html"]


def test_write_html_replaces_existing_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "path.html"
    path.write_text("old contents", encoding="utf-8")
    write_html(path_figure(make_results()), path, include_plotlyjs="cdn")
    html = path.read_text(encoding="utf-8")
    assert "old contents" not in html
    assert 'src="https://cdn.plot.ly' in html
    assert len(html) < 1_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["path.html"]


def test_write_html_failure_leaves_no_temp_file(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OSError):  # noqa: PT011 - the platform picks IsADirectoryError or similar
        write_html(path_figure(make_results()), target, include_plotlyjs="cdn")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert not any(target.iterdir())

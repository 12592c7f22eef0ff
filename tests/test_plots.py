"""Tests for interpscan.plots: traces carry the results' values; HTML is written atomically."""

from __future__ import annotations

import json
import math
import pathlib
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import old_runs
import pandas as pd
import plotly.graph_objects as go
import pytest

from interpscan.errors import UsageError
from interpscan.manifest import DataSplit, Manifest
from interpscan.plots import path_figure, write_html

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
# A bump at α=0.5 on both splits; the test loss sits higher.
LOSSES = {"train": [2.0, 2.2, 2.6, 1.4, 0.5], "test": [2.1, 2.4, 2.9, 1.8, 0.9]}
ACCURACY = {"train": [0.1, 0.12, 0.15, 0.6, 0.9], "test": [0.1, 0.11, 0.14, 0.5, 0.8]}
GROUP_LOSSES = {"layer1": [5.5, 4.0, 3.0, 1.5, 0.5], "fc": [2.0, 0.6, 0.5, 0.5, 0.5]}
GROUP_TEST_OFFSET = {"train": 0.0, "test": 0.1}  # a group's test loss sits a little above its train loss


def make_results(
    *,
    accuracy: bool = True,
    groups: bool | Sequence[str] = False,
    se: float = 0.05,
    hold: str = "final",
    mode: str = "only",
) -> pd.DataFrame:
    """Whole-network rows (hold/mode empty, as the scan writes them) and, with ``groups``, per-group rows."""
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
                    "hold": "",
                    "mode": "",
                }
            )
    names = list(GROUP_LOSSES) if groups is True else list(groups or [])
    for group in names:
        for split in ("train", "test"):
            for a, loss in zip(ALPHAS, GROUP_LOSSES[group], strict=True):
                rows.append(
                    {
                        "curve": group,
                        "split": split,
                        "alpha": a,
                        "loss": loss + GROUP_TEST_OFFSET[split],
                        "loss_se": se,
                        "accuracy": 0.5 if accuracy else math.nan,
                        "n": 100,
                        "hold": hold,
                        "mode": mode,
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


def test_groups_leave_the_top_row_to_the_whole_network() -> None:
    fig = path_figure(make_results(groups=True), make_summary())
    top = [t for t in fig.to_dict()["data"] if t["xaxis"] in ("x", "x2")]
    assert {t["meta"]["curve"] for t in top} == {"all"}
    assert {t["meta"]["role"] for t in top} == {"band", "line", "endpoints", "barrier", "rise"}
    assert all(t["line"]["dash"] == "solid" for t in top if t["meta"]["role"] == "line")
    # The top row's axes keep their names: loss x/y, accuracy x2/y2.
    acc = traces(fig, role="line", split="train", panel="accuracy")[0]
    assert (acc["xaxis"], acc["yaxis"]) == ("x2", "y2")


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


# --- layer-wise curves: the group row and the heatmap ------------------------------------------------------


def group_loss(group: str, split: str) -> list[float]:
    return [v + GROUP_TEST_OFFSET[split] for v in GROUP_LOSSES[group]]


def legend_names(fig: go.Figure) -> list[str]:
    return [t["name"] for t in fig.to_dict()["data"] if t.get("showlegend", True)]


def subplot_titles(fig: go.Figure) -> list[str]:
    return [a["text"] for a in fig.to_dict()["layout"].get("annotations", [])]


def test_group_row_has_a_line_per_group_and_split() -> None:
    fig = path_figure(make_results(groups=True))
    axes = {"train": "x3", "test": "x4"}  # the row under loss/accuracy, train left, test right
    for split, axis in axes.items():
        for group in GROUP_LOSSES:
            (line,) = traces(fig, role="group-line", curve=group, split=split)
            assert line["name"] == group
            assert line["legendgroup"] == f"group:{group}"
            assert line["xaxis"] == axis
            assert line["meta"]["panel"] == "groups"
            assert (line["meta"]["hold"], line["meta"]["mode"]) == ("final", "only")
            assert as_floats(line["x"]) == ALPHAS
            assert as_floats(line["y"]) == pytest.approx(group_loss(group, split))
    assert len(traces(fig, role="group-line")) == len(GROUP_LOSSES) * 2
    titles = subplot_titles(fig)
    assert "train: each group moves, others at final" in titles
    assert "test: each group moves, others at final" in titles


def test_group_row_has_dashed_vary_all_reference_per_split() -> None:
    fig = path_figure(make_results(groups=True))
    refs = traces(fig, role="vary-all")
    assert [r["meta"]["split"] for r in refs] == ["train", "test"]
    for ref in refs:
        split = ref["meta"]["split"]
        assert ref["name"] == "vary all"
        assert ref["line"]["dash"] == "dash"
        assert ref["meta"]["curve"] == "all"
        assert ref["xaxis"] == {"train": "x3", "test": "x4"}[split]
        assert as_floats(ref["y"]) == pytest.approx(LOSSES[split])


def test_group_colour_and_legend_entry_shared_across_panels() -> None:
    fig = path_figure(make_results(groups=True))
    colours = {}
    for group in GROUP_LOSSES:
        train, test = (traces(fig, role="group-line", curve=group, split=s)[0] for s in ("train", "test"))
        assert train["line"]["color"] == test["line"]["color"]
        assert (train["showlegend"], test["showlegend"]) == (True, False)
        assert train["legendgroup"] == test["legendgroup"]
        colours[group] = train["line"]["color"]
    assert len(set(colours.values())) == len(GROUP_LOSSES)
    # Each split, the vary-all reference and each group once.
    assert legend_names(fig) == ["train", "test", "vary all", "layer1", "fc"]
    assert fig.to_dict()["layout"]["legend"]["title"]["text"] == "split / group"


def test_group_hover_shows_group_alpha_loss_se_accuracy() -> None:
    fig = path_figure(make_results(groups=True))
    text = traces(fig, role="group-line", curve="layer1", split="test")[0]["hovertext"][2]
    assert "layer1 · test" in text
    assert "α=0.5" in text
    assert "loss=3.1 ± 0.05" in text
    assert "accuracy=50.00%" in text


def test_heatmap_of_test_loss_by_group_and_alpha() -> None:
    fig = path_figure(make_results(groups=True))
    (heat,) = traces(fig, role="heatmap")
    assert heat["type"] == "heatmap"
    assert heat["meta"]["split"] == "test"
    assert heat["meta"]["panel"] == "heatmap"
    assert list(heat["y"]) == ["layer1", "fc"]  # order of appearance in the results
    assert as_floats(heat["x"]) == ALPHAS
    z = [as_floats(row) for row in heat["z"]]
    assert z == [pytest.approx(group_loss(g, "test")) for g in GROUP_LOSSES]
    assert heat["colorbar"]["title"]["text"] == "loss"
    assert heat["text"][0][2] == "layer1 · test<br>α=0.5<br>loss=3.1"
    layout = fig.to_dict()["layout"]
    axis = "yaxis" + heat["yaxis"][1:]
    assert layout[axis]["autorange"] == "reversed"  # first group on top
    # The heatmap spans the row; the colour bar sits beside it, not over the whole figure.
    assert layout["xaxis" + heat["xaxis"][1:]]["domain"] == [0.0, 1.0]
    low, high = layout[axis]["domain"]
    assert heat["colorbar"]["y"] == pytest.approx((low + high) / 2)
    assert heat["colorbar"]["len"] == pytest.approx(high - low)
    assert "test loss by group and α (each group moves, others at final)" in subplot_titles(fig)
    assert layout["height"] == 3 * 420


def test_heatmap_uses_first_split_without_test() -> None:
    results = make_results(groups=True)
    fig = path_figure(results[results["split"] == "train"])
    (heat,) = traces(fig, role="heatmap")
    assert heat["meta"]["split"] == "train"
    assert [as_floats(row) for row in heat["z"]] == [pytest.approx(GROUP_LOSSES[g]) for g in GROUP_LOSSES]
    # One split: its group panel spans the row, as the heatmap does.
    (line,) = traces(fig, role="group-line", curve="fc")
    assert fig.to_dict()["layout"]["xaxis" + line["xaxis"][1:]]["domain"] == [0.0, 1.0]


def test_heatmap_leaves_gap_for_non_finite_loss() -> None:
    results = make_results(groups=True)
    at = (results["curve"] == "fc") & (results["split"] == "test") & (results["alpha"] == 0.25)
    results.loc[at, "loss"] = math.inf
    (heat,) = traces(path_figure(results), role="heatmap")
    assert heat["z"][1][1] is None
    assert "loss=inf" in heat["text"][1][1]


def test_no_group_row_or_heatmap_without_groups() -> None:
    fig = path_figure(make_results())
    for role in ("group-line", "vary-all", "heatmap"):
        assert not traces(fig, role=role)
    layout = fig.to_dict()["layout"]
    assert "xaxis3" not in layout
    assert "height" not in layout
    assert subplot_titles(fig) == ["loss", "accuracy"]


def test_single_group_has_group_row_but_no_heatmap() -> None:
    fig = path_figure(make_results(groups=["layer1"]))
    assert len(traces(fig, role="group-line")) == 2
    assert len(traces(fig, role="vary-all")) == 2
    assert not traces(fig, role="heatmap")
    assert fig.to_dict()["layout"]["height"] == 2 * 420


def test_group_row_without_accuracy_keeps_top_loss_panel_full_width() -> None:
    fig = path_figure(make_results(accuracy=False, groups=True))
    layout = fig.to_dict()["layout"]
    assert layout["xaxis"]["domain"] == [0.0, 1.0]
    assert not traces(fig, panel="accuracy")
    assert traces(fig, role="group-line", split="test", curve="fc")[0]["xaxis"] == "x3"
    assert "accuracy" not in traces(fig, role="group-line")[0]["hovertext"][0]


@pytest.mark.parametrize(
    ("hold", "mode", "text"),
    [
        ("init", "only", "each group moves, others at init"),
        ("final", "all-but", "all but the group move, it stays at final"),
    ],
)
def test_group_row_title_names_hold_and_mode(hold: str, mode: str, text: str) -> None:
    fig = path_figure(make_results(groups=True, hold=hold, mode=mode))
    assert f"test: {text}" in subplot_titles(fig)
    assert traces(fig, role="heatmap")[0]["meta"]["hold"] == hold


def test_nan_hold_and_mode_as_read_from_csv() -> None:
    results = make_results(groups=True).replace({"hold": {"": math.nan}, "mode": {"": math.nan}})
    assert results.loc[results["curve"] == "all", "hold"].isna().all()
    fig = path_figure(results)
    assert len(traces(fig, role="group-line")) == 4
    assert len(traces(fig, role="vary-all")) == 2
    assert len(traces(fig, role="heatmap")) == 1
    assert "test: each group moves, others at final" in subplot_titles(fig)


def test_results_without_hold_and_mode_columns() -> None:
    fig = path_figure(make_results(groups=True).drop(columns=["hold", "mode"]))
    assert len(traces(fig, role="group-line")) == 4
    assert "test: each group's curve" in subplot_titles(fig)


def test_each_hold_and_mode_gets_its_own_row() -> None:
    both = pd.concat([make_results(groups=True), make_results(groups=True, hold="init")], ignore_index=True)
    both = both.drop_duplicates(subset=["curve", "split", "alpha", "hold"])  # one copy of the vary-all rows
    fig = path_figure(both)
    assert len(traces(fig, role="group-line")) == 8
    assert len(traces(fig, role="heatmap")) == 2
    assert {t["meta"]["hold"] for t in traces(fig, role="group-line", curve="fc")} == {"final", "init"}
    assert legend_names(fig) == ["train", "test", "vary all", "layer1", "fc"]
    assert fig.to_dict()["layout"]["height"] == 5 * 420


@pytest.mark.parametrize("groups", [True, False])
def test_csv_round_trip_plots_the_same_traces(tmp_path: pathlib.Path, groups: bool) -> None:
    results = make_results(groups=groups)
    path = tmp_path / "results.csv"
    results.to_csv(path, index=False)
    read = pd.read_csv(path)
    assert read["hold"].isna().any()  # the whole-network rows' empty labels come back as NaN

    def shape(fig: go.Figure) -> list[tuple[Any, ...]]:
        return [
            (t["type"], t.get("name"), t["meta"], t.get("xaxis"), t.get("showlegend"), t.get("hovertext"))
            for t in fig.to_dict()["data"]
        ]

    direct, round_trip = path_figure(results, make_summary()), path_figure(read, make_summary())
    assert shape(round_trip) == shape(direct)
    assert subplot_titles(round_trip) == subplot_titles(direct)
    for a, b in zip(direct.to_dict()["data"], round_trip.to_dict()["data"], strict=True):
        if a["type"] == "heatmap":
            assert [as_floats(r) for r in b["z"]] == [pytest.approx(as_floats(r)) for r in a["z"]]
        else:
            assert as_floats(b["y"]) == pytest.approx(as_floats(a["y"]))


# --- several runs overlaid -----------------------------------------------------------------------------------

RUNS = ("wd0", "wd5e-4", "wd5e-3")


def several(*, groups: Sequence[str] = (), grouped_runs: Sequence[str] = RUNS) -> pd.DataFrame:
    """Three runs' results with a run column; run k's losses are the base curves plus k·0.1."""
    frames = []
    for k, run in enumerate(RUNS):
        frame = make_results(groups=list(groups) if run in grouped_runs else False)
        frames.append(frame.assign(loss=frame["loss"] + 0.1 * k, run=run))
    return pd.concat(frames, ignore_index=True)


def several_summary() -> pd.DataFrame:
    return pd.concat([make_summary().assign(run=run) for run in RUNS], ignore_index=True)


def test_several_runs_get_a_colour_each_and_a_dash_per_split() -> None:
    fig = path_figure(several())
    colours = {}
    for k, run in enumerate(RUNS):
        for split, dash in (("train", "dot"), ("test", "solid")):
            (line,) = traces(fig, role="line", run=run, split=split, panel="loss")
            assert line["name"] == f"{run} · {split}"
            assert line["line"]["dash"] == dash
            assert as_floats(line["y"]) == pytest.approx([v + 0.1 * k for v in LOSSES[split]])
            (acc,) = traces(fig, role="line", run=run, split=split, panel="accuracy")
            assert acc["line"] == line["line"]
            assert acc["legendgroup"] == line["legendgroup"] == f"{run} · {split}"
            colours.setdefault(run, set()).add(line["line"]["color"])
    assert all(len(c) == 1 for c in colours.values())  # one colour per run, whatever the split
    assert len({c.pop() for c in colours.values()}) == 3
    assert legend_names(fig) == [f"{run} · {split}" for run in RUNS for split in ("train", "test")]
    assert fig.to_dict()["layout"]["legend"]["title"]["text"] == "run · split"
    assert "wd5e-4 · all · test" in traces(fig, role="line", run="wd5e-4", split="test")[0]["hovertext"][0]


def test_several_runs_take_their_barriers_from_their_own_summary_rows() -> None:
    summary = several_summary()
    summary.loc[summary["run"] == "wd5e-3", "barrier_max"] = -1.0  # no B_max: falls back to B_lin at α=0.75
    fig = path_figure(several(), summary)
    (star,) = traces(fig, role="barrier", run="wd0", split="test")
    assert (star["x"], star["y"]) == ([0.5], [pytest.approx(LOSSES["test"][2])])
    (star,) = traces(fig, role="barrier", run="wd5e-3", split="test")
    assert (star["x"], star["y"]) == ([0.75], [pytest.approx(LOSSES["test"][3] + 0.2)])
    assert star["hovertext"][0].startswith("wd5e-3 · worst barrier (B_lin) · test")
    assert star["marker"]["color"] == traces(fig, role="line", run="wd5e-3", split="test")[0]["line"]["color"]


def test_several_runs_need_a_run_column_in_the_summary() -> None:
    with pytest.raises(UsageError, match="summary lacks a run column"):
        path_figure(several(), make_summary())


def test_rise_marks_the_largest_rise_with_its_values() -> None:
    fig = path_figure(make_results())
    (rise,) = traces(fig, role="rise", split="train")
    # train: 2.0 at α=0 rises to 2.6 at α=0.5, the largest rise; the bar stands at α=0.5 from 2.0 to 2.6
    assert as_floats(rise["x"]) == [0.5, 0.5]
    assert as_floats(rise["y"]) == pytest.approx([2.0, 2.6])
    text = rise["hovertext"][1]
    assert "Δ=0.6" in text
    assert "from loss 2 at α=0" in text
    assert "to loss 2.6 at α=0.5" in text
    assert rise["showlegend"] is False
    assert rise["xaxis"] == "x"


def test_no_rise_marker_on_a_path_that_never_rises() -> None:
    results = make_results()
    train = results["split"] == "train"
    results.loc[train, "loss"] = results.loc[train, "alpha"].map(lambda a: 2.0 - a)
    fig = path_figure(results)
    assert not traces(fig, role="rise", split="train")
    assert len(traces(fig, role="rise", split="test")) == 1


def test_no_rise_marker_without_the_endpoints_on_the_grid() -> None:
    results = make_results()
    fig = path_figure(results[results["alpha"] < 1.0])
    assert not traces(fig, role="rise")


def test_run_selector_shows_one_runs_groups_at_a_time() -> None:
    fig = path_figure(several(groups=["layer1", "fc"]))
    layout = fig.to_dict()["layout"]
    (menu,) = [m for m in layout["updatemenus"] if m.get("name") == "run"]
    assert menu["type"] == "dropdown"
    assert [b["label"] for b in menu["buttons"]] == [f"layer groups of {run}" for run in RUNS]
    data = fig.to_dict()["data"]
    grouped = [i for i, t in enumerate(data) if t["meta"]["panel"] in ("groups", "heatmap")]
    assert len(grouped) == 3 * (2 * 3 + 1)  # per run: (vary all + 2 groups) × 2 splits, and a heatmap
    for button, run in zip(menu["buttons"], RUNS, strict=True):
        visible, indices = button["args"]
        assert indices == grouped
        assert visible["visible"] == [data[i]["meta"]["run"] == run for i in grouped]
    # At first the first run's groups are shown, the others' hidden; the whole-network row always shows.
    for i in grouped:
        assert data[i]["visible"] is (data[i]["meta"]["run"] == "wd0")
    assert all(t.get("visible", True) is True for t in data if t["meta"]["panel"] in ("loss", "accuracy"))
    # One legend entry per group and for vary all, from the visible run; the heatmaps one per run.
    shown = [t["name"] for t in data if t.get("showlegend") and t.get("visible", True) is True]
    assert shown[-3:] == ["vary all", "layer1", "fc"]
    assert [t["meta"]["run"] for t in traces(fig, role="heatmap")] == list(RUNS)
    assert "wd5e-3 · layer1 · test" in traces(fig, role="heatmap", run="wd5e-3")[0]["text"][0][0]


def test_no_run_selector_when_only_one_run_has_groups() -> None:
    fig = path_figure(several(groups=["layer1", "fc"], grouped_runs=["wd5e-4"]))
    assert [m["name"] for m in fig.to_dict()["layout"]["updatemenus"]] == ["log-y"]
    grouped = traces(fig, panel="groups")
    assert grouped
    assert {t["meta"]["run"] for t in grouped} == {"wd5e-4"}
    assert all(t["visible"] is True for t in grouped)
    # The vary-all reference in the group row is that run's own whole-network curve.
    (ref,) = traces(fig, role="vary-all", split="test")
    assert as_floats(ref["y"]) == pytest.approx([v + 0.1 for v in LOSSES["test"]])


def test_log_toggle_switches_the_loss_axes_only() -> None:
    fig = path_figure(make_results(groups=True))
    (menu,) = [m for m in fig.to_dict()["layout"]["updatemenus"] if m.get("name") == "log-y"]
    assert [b["label"] for b in menu["buttons"]] == ["linear loss", "log loss"]
    linear, log = (b["args"][0] for b in menu["buttons"])
    # loss (y), the group rows (y3, y4); not accuracy (y2) nor the heatmap's categories (y5)
    assert log == {
        f"{a}.{k}": v for a in ("yaxis", "yaxis3", "yaxis4") for k, v in (("type", "log"), ("autorange", True))
    }
    assert linear["yaxis.type"] == "linear"


def test_alpha_axes_zoom_together() -> None:
    layout = path_figure(make_results(groups=True)).to_dict()["layout"]
    axes = sorted(k for k in layout if k.startswith("xaxis"))
    assert axes == ["xaxis", "xaxis2", "xaxis3", "xaxis4", "xaxis5"]
    assert "matches" not in layout["xaxis"]
    assert all(layout[a]["matches"] == "x" for a in axes[1:])


def test_figure_html_links_the_alpha_cursor_across_panels() -> None:
    from interpscan.plots import figure_html

    html = figure_html(path_figure(make_results(groups=True), title="T"), "my-div")
    assert 'id="my-div"' in html
    assert "Plotly.newPlot" in html
    assert "<script" in html
    assert "cdn.plot.ly" not in html  # plotly.js comes from the page
    assert '[["x", "y"], ["x2", "y2"], ["x3", "y3"], ["x4", "y4"], ["x5", "y5"]]' in html
    assert "plotly_hover" in html
    assert "height:1260px" in html  # the div is as tall as the figure
    assert '"title":{"text":"T"}' not in html  # the page's heading has the title
    one_panel = figure_html(path_figure(make_results(accuracy=False)), "d")
    assert "plotly_hover" not in one_panel  # nothing to link
    assert "height:480px" in one_panel


def test_plotlyjs_modes() -> None:
    from plotly.offline import get_plotlyjs_version

    from interpscan.plots import plotlyjs_html

    assert len(plotlyjs_html("inline")) > 1_000_000
    assert f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js" in plotlyjs_html("cdn")
    assert plotlyjs_html("directory") == '<script charset="utf-8" src="plotly.min.js"></script>'
    with pytest.raises(UsageError, match="plotlyjs='local' is not one of inline, cdn, directory"):
        plotlyjs_html("local")


def test_static_export_without_kaleido_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    import importlib.util

    from interpscan.plots import write_static

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kaleido" else real(name, *a))
    with pytest.raises(UsageError, match="needs kaleido, which is not installed") as info:
        write_static(path_figure(make_results()), tmp_path / "f.png")
    assert str(info.value.hint).startswith("pip install 'interpscan[static]' (or pip install kaleido); it drives")
    assert not list(tmp_path.iterdir())


def test_static_export_writes_what_kaleido_renders(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    from interpscan import plots

    calls = []

    def fake_to_image(self: go.Figure, format: str, width: int, height: int) -> bytes:
        calls.append((format, width, height))
        return b"\x89PNG fake"

    monkeypatch.setattr(plots, "check_static_export", lambda: None)
    monkeypatch.setattr(go.Figure, "to_image", fake_to_image)
    plots.write_static(path_figure(make_results(groups=True)), tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes() == b"\x89PNG fake"
    assert calls == [("png", 1400, 3 * 420)]
    with pytest.raises(UsageError, match="png or svg"):
        plots.write_static(path_figure(make_results()), tmp_path / "f.pdf")


# --- compare's scatter plots ---------------------------------------------------------------------------------


def test_compare_figure_has_a_point_per_run_and_rho_in_titles() -> None:
    from interpscan.plots import compare_figure

    table = pd.DataFrame(
        {
            "run": ["a", "b", "c"],
            "delta": [0.0, 0.1, math.nan],
            "monotone": pd.array([True, False, None], dtype="boolean"),
            "final_accuracy": [0.9, 0.8, 0.85],
        }
    )
    correlations = pd.DataFrame(
        [
            {"metric": "delta", "outcome": "final_accuracy", "n": 2, "spearman": math.nan},
            {"metric": "monotone", "outcome": "final_accuracy", "n": 3, "spearman": -0.5},
        ]
    )
    fig = compare_figure(
        table,
        correlations,
        metrics=[("delta", "Δ"), ("monotone", "monotone")],
        outcomes=[("final_accuracy", "final accuracy")],
        title="cmp",
    )
    assert subplot_titles(fig) == [
        "Δ vs final accuracy: ρ undefined (n=2)",
        "monotone vs final accuracy: ρ = -0.50 (n=3)",
    ]
    points = traces(fig, role="run-point", metric="monotone")
    assert [p["meta"]["run"] for p in points] == ["a", "b", "c"]
    assert [p["x"][0] for p in points] == [1.0, 0.0, None]  # booleans as 1/0, missing as a gap
    assert [p["y"][0] for p in points] == [0.9, 0.8, 0.85]
    assert points[0]["text"] == ["a"]
    assert [p["showlegend"] for p in traces(fig, role="run-point")] == [True, True, True] + [False] * 3
    layout = fig.to_dict()["layout"]
    assert layout["xaxis2"]["ticktext"] == ["no", "yes"]
    assert layout["xaxis"]["title"]["text"] == "Δ"
    assert layout["yaxis"]["title"]["text"] == "final accuracy"


# --- the page: run, plot and compare share it ---------------------------------------------------------------


def manifest_for(wd: str, policy: str = "recompute") -> Manifest:
    """The first version's run.json (a cnn on fashion-mnist-small, train and test) as a run on ALPHAS whose final
    checkpoint is runs/WD/final.pt."""
    base = old_runs.manifest()
    final = replace(base.checkpoints.final, path=f"runs/{wd}/final.pt")
    return old_runs.manifest(
        checkpoints=replace(base.checkpoints, final=final),
        bn=replace(base.bn, policy=policy),
        grid=replace(base.grid, alphas=tuple(ALPHAS)),
    )


def write_run_dir(
    directory: pathlib.Path, manifest: Manifest | None = None, *, html: bool = False, offset: float = 0.0
) -> pathlib.Path:
    """A run directory as `interpscan run` writes it (run.json left out when ``manifest`` is None)."""
    from interpscan.results import ScanResult
    from interpscan.rundir import write_outputs

    directory.mkdir(parents=True)
    results = make_results()
    result = ScanResult(
        results.assign(loss=results["loss"] + offset), make_summary(), manifest or manifest_for(directory.name)
    )
    write_outputs(result, directory, html=html)
    if manifest is None:
        (directory / "run.json").unlink()
    return directory


def page_title(html: str) -> str:
    return html.split("<title>", 1)[1].split("</title>", 1)[0]


def test_run_writes_the_page_plot_draws(tmp_path: pathlib.Path) -> None:
    from interpscan.results import plot_results

    run = write_run_dir(tmp_path / "run", manifest_for("wd0", "interpolate"), html=True)
    (written,) = plot_results(run, tmp_path / "again.html")
    mine, again = (p.read_text(encoding="utf-8") for p in (run / "results.html", written))
    title = "cnn on fashion-mnist-small: θ(α) = (1−α)·θ_init + α·θ_final (BN policy interpolate)"
    assert page_title(mine) == page_title(again) == title
    for html in (mine, again):
        assert f"<h1>{title}</h1>" in html
        assert 'id="interpscan-path"' in html
        assert '<table class="sortable" id="summary">' in html
        assert "<details><summary>run.json</summary>" in html
        assert "&quot;interpolate&quot;" in html  # the manifest, escaped, in the collapsed block
        assert 'src="https://cdn.plot.ly' not in html
        assert len(html) > 1_000_000  # plotly.js inlined


def test_plot_without_run_json_is_titled_by_its_csv(tmp_path: pathlib.Path) -> None:
    from interpscan.results import plot_results

    run = write_run_dir(tmp_path / "bare")
    (written,) = plot_results(run / "results.csv")
    assert written == run / "results.html"
    html = written.read_text(encoding="utf-8")
    assert page_title(html) == str(run / "results.csv")
    assert "<details>" not in html


def test_plot_overlays_several_runs_labelled_from_run_json(tmp_path: pathlib.Path) -> None:
    from interpscan.results import plot_results

    dirs = [write_run_dir(tmp_path / wd / "scan", manifest_for(wd), offset=0.1 * k) for k, wd in enumerate(RUNS)]
    (written,) = plot_results(dirs)
    assert written == dirs[0] / "plot.html"
    html = written.read_text(encoding="utf-8")
    title = "cnn on fashion-mnist-small, 3 runs: θ(α) = (1−α)·θ_init + α·θ_final (BN policy recompute)"
    assert page_title(html) == title
    for wd, d in zip(RUNS, dirs, strict=True):
        assert f'<p class="note">{wd}: {d / "results.csv"}</p>' in html
        assert f"<details><summary>run.json of {wd}</summary>" in html
        assert '"name":' + json.dumps(f"{wd} · test") in html  # a legend entry per run and split
    assert '<th scope="col" class="text">run</th>' in html  # the summary table says which run each row is


def test_labels_say_what_tells_runs_apart(tmp_path: pathlib.Path) -> None:
    from interpscan.report import run_labels
    from interpscan.results import load_runs

    a = write_run_dir(tmp_path / "a" / "scan", manifest_for("wd0", "recompute"))
    b = write_run_dir(tmp_path / "b" / "scan", manifest_for("wd0", "interpolate"))
    c = write_run_dir(tmp_path / "c" / "scan", manifest_for("wd0", "recompute"))
    bare = write_run_dir(tmp_path / "d" / "scan-bare")
    # Same checkpoints, different policies: the policy tells them apart.
    assert run_labels(load_runs([a, b])) == ["wd0 · recompute", "wd0 · interpolate"]
    # Same checkpoints and policy: the results' directories, relative to what they share.
    assert run_labels(load_runs([a, c])) == ["a/scan", "c/scan"]
    # No run.json: the results' directory; the same run twice is numbered.
    assert run_labels(load_runs([bare, a])) == ["scan-bare", "wd0"]
    assert run_labels(load_runs([bare, bare])) == ["scan-bare", "scan-bare #2"]
    assert run_labels(load_runs([a, b]), ["x", "y"]) == ["x", "y"]
    with pytest.raises(UsageError, match="1 label value"):
        run_labels(load_runs([a, b]), ["x"])
    with pytest.raises(UsageError, match="'x' given more than once"):
        run_labels(load_runs([a, b]), ["x", "x"])


def test_plot_refuses_to_replace_files_unless_forced(tmp_path: pathlib.Path) -> None:
    from interpscan.errors import OutputError
    from interpscan.results import plot_results

    run = write_run_dir(tmp_path / "run", manifest_for("wd0"))
    (tmp_path / "p.html").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputError, match=r"p\.html exists"):
        plot_results(run, tmp_path / "p.html")
    assert (tmp_path / "p.html").read_text(encoding="utf-8") == "mine"
    plot_results(run, tmp_path / "p.html", force=True)
    assert "plotly" in (tmp_path / "p.html").read_text(encoding="utf-8")
    # An existing directory as --out: the page goes into it.
    (tmp_path / "pages").mkdir()
    assert plot_results(run, tmp_path / "pages") == [tmp_path / "pages" / "results.html"]


def test_plotlyjs_directory_puts_plotly_beside_the_page(tmp_path: pathlib.Path) -> None:
    from plotly.offline import get_plotlyjs

    from interpscan.results import plot_results

    run = write_run_dir(tmp_path / "run", manifest_for("wd0"))
    written = plot_results(run, tmp_path / "out" / "p.html", plotlyjs="directory")
    assert written == [tmp_path / "out" / "p.html", tmp_path / "out" / "plotly.min.js"]
    assert written[1].read_text(encoding="utf-8") == get_plotlyjs()
    html = written[0].read_text(encoding="utf-8")
    assert '<script charset="utf-8" src="plotly.min.js"></script>' in html
    assert len(html) < 500_000


def test_plot_force_replaces_only_what_interpscan_wrote(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page beside the CSV, the images beside the page and plotly.min.js are names interpscan chooses: --force
    replaces them only when interpscan wrote them (a run's own results.html, an earlier plot's files)."""
    from interpscan import plots
    from interpscan.errors import OutputError
    from interpscan.results import plot_results

    monkeypatch.setattr(plots, "check_static_export", lambda: None)
    monkeypatch.setattr(go.Figure, "to_image", lambda self, format, width, height: f"{format} image".encode())
    run = write_run_dir(tmp_path / "run", manifest_for("wd0"), html=True)
    assert plot_results(run, force=True, plotlyjs="cdn") == [run / "results.html"]  # the run's own page
    (run / "results.html").write_text("my page", encoding="utf-8")
    with pytest.raises(OutputError, match=r"results\.html changed since interpscan wrote it"):
        plot_results(run, force=True)
    assert (run / "results.html").read_text(encoding="utf-8") == "my page"

    pages = tmp_path / "pages"
    first = plot_results(run, pages / "p.html", plotlyjs="directory", static=["png", "svg"])
    assert [p.name for p in first] == ["p.html", "plotly.min.js", "p.png", "p.svg"]
    assert (pages / "p.png").read_bytes() == b"png image"
    assert plot_results(run, pages / "p.html", plotlyjs="directory", static=["png"], force=True) == first[:3]
    for name in ("p.png", "plotly.min.js"):
        (pages / name).write_text("mine", encoding="utf-8")
        with pytest.raises(OutputError, match=f"{re.escape(name)} changed since interpscan wrote it"):
            plot_results(run, pages / "p.html", plotlyjs="directory", static=["png"], force=True)
        assert (pages / name).read_text(encoding="utf-8") == "mine"
        (pages / name).unlink()


def test_plot_never_writes_through_a_link(tmp_path: pathlib.Path) -> None:
    from interpscan.errors import OutputError
    from interpscan.results import plot_results

    run = write_run_dir(tmp_path / "run", manifest_for("wd0"))
    outside = tmp_path / "outside.txt"
    outside.write_text("the user's", encoding="utf-8")
    (tmp_path / "p.html").symlink_to(outside)
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "plotly.min.js").symlink_to(outside)
    for out, mode in ((tmp_path / "p.html", "cdn"), (tmp_path / "js" / "p.html", "directory")):
        with pytest.raises(OutputError, match=r"(p\.html|plotly\.min\.js) is a symbolic link"):
            plot_results(run, out, force=True, plotlyjs=mode)
    assert outside.read_text(encoding="utf-8") == "the user's"
    assert (tmp_path / "p.html").is_symlink()
    assert sorted(p.name for p in (tmp_path / "js").iterdir()) == ["plotly.min.js"]


def test_every_unreadable_input_is_reported_at_once(tmp_path: pathlib.Path) -> None:
    from interpscan.errors import OutputError
    from interpscan.results import load_runs

    run = write_run_dir(tmp_path / "run", manifest_for("wd0"))
    with pytest.raises(OutputError, match="2 of 3 inputs cannot be read") as info:
        load_runs([tmp_path / "nope", run, tmp_path / "nada.csv"])
    assert f"results file not found: {tmp_path / 'nope'};" in str(info.value)
    assert str(info.value).endswith("nada.csv")
    (run / "summary.csv").unlink()
    with pytest.raises(OutputError, match=r"no summary\.csv beside"):
        load_runs([run], need_summary=True)


def test_table_html_is_sortable_and_keeps_full_values() -> None:
    from interpscan.report import table_html

    frame = pd.DataFrame(
        {
            "curve": ["all", "fc"],
            "delta": [0.123456789, math.nan],
            "monotone": pd.array([True, None], dtype="boolean"),
            "n": [1000, 10],
        }
    )
    html = table_html(frame, table_id="t", caption="a <caption>")
    assert html.startswith('<table class="sortable" id="t"><caption>a &lt;caption&gt;</caption>')
    assert '<th scope="col" class="text">curve</th><th scope="col">delta</th>' in html
    assert '<td data-value="0.123456789">0.1235</td>' in html  # shown short, sorted by the full value
    assert '<td data-value=""></td>' in html  # NaN and missing: blank, sorted last
    assert '<td data-value="1">yes</td>' in html
    assert '<td data-value="1000">1000</td>' in html


def test_manifest_block_keeps_index_lists_on_one_line() -> None:
    from interpscan.report import manifest_html

    base = old_runs.manifest()
    data = replace(base.data, splits={"test": DataSplit(n=3, indices=(3, 1, 2))})
    html = manifest_html(old_runs.manifest(data=data, warnings=("<b>",), tol=math.nan), label="run.json")
    assert html.startswith("<details><summary>run.json</summary><pre>")
    assert "&quot;indices&quot;: [3, 1, 2]" in html
    assert "&quot;&lt;b&gt;&quot;" in html
    assert "&quot;tol&quot;: null" in html  # NaN is no JSON


def test_cli_plot_overlays_labelled_runs(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import run_cli

    dirs = [write_run_dir(tmp_path / wd, manifest_for(wd)) for wd in RUNS]
    out = tmp_path / "three.html"
    args = ["plot", *map(str, dirs), "-l", "none", "-l", "some", "-l", "more", "--out", str(out)]
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert f"wrote {out}" in err
    assert '"name":' + json.dumps("some · test") in out.read_text(encoding="utf-8")
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert "exists" in err


def test_cli_static_export_without_kaleido_fails_before_writing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from conftest import run_cli

    run = write_run_dir(tmp_path / "run", manifest_for("wd0"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kaleido" else real(name, *a))
    code, err = run_cli(monkeypatch, capsys, "plot", str(run), "--png")
    assert code == 2
    assert err.startswith("error: static export (--png/--svg) needs kaleido, which is not installed")
    assert "hint: pip install 'interpscan[static]' (or pip install kaleido)" in err
    assert not (run / "results.html").exists()

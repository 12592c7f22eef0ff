"""Tests for interpscan.plots: traces carry the results' values; HTML is written atomically."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
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
    assert {t["meta"]["role"] for t in top} == {"band", "line", "endpoints", "barrier"}
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

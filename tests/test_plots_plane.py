"""The plane's figure and page: contours and surfaces carry the results' losses cell by cell, the checkpoints sit
at their coordinates, the log scale switches every loss trace, non-finite losses leave holes and never the colour
range; `interpscan plot` draws a plane run, `compare` refuses one."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from conftest import run_cli
from plane_runs import (
    CHECKPOINTS,
    LATTICE,
    accuracy,
    bowl,
    finite,
    plane_rows,
    plane_section,
    write_plane_run,
)

from interpscan.errors import OutputError, UsageError
from interpscan.plots_plane import is_line, plane_figure
from interpscan.report import plane_page
from interpscan.results import ScanResult, load_run


def traces(fig: go.Figure, role: str, split: str | None = None) -> list[Any]:
    return [t for t in fig.data if t.meta["role"] == role and (split is None or t.meta["split"] == split)]


def one(fig: go.Figure, role: str, split: str, panel: str | None = None) -> Any:
    """The one trace of ``role`` for ``split`` (on ``panel``: the loss contour's for the marks drawn on both)."""
    if panel is None and role in ("anchors", "path"):
        panel = "plane-loss"
    (trace,) = [t for t in traces(fig, role, split) if panel is None or t.meta["panel"] == panel]
    return trace


@pytest.mark.parametrize("split", ["train", "test"])
def test_contour_and_surface_hold_the_csv_losses_cell_by_cell(split: str) -> None:
    fig = plane_figure(plane_rows())
    for role in ("loss-contour", "loss-surface"):
        trace = one(fig, role, split)
        assert list(trace.x) == pytest.approx(LATTICE, abs=1e-12)
        assert list(trace.y) == pytest.approx(LATTICE, abs=1e-12)
        expected = [[bowl(x, y, split) for x in LATTICE] for y in LATTICE]  # row i is y = LATTICE[i]
        assert np.asarray(trace.z, dtype=float) == pytest.approx(np.asarray(expected), rel=1e-12)
    acc = one(fig, "accuracy-contour", split)
    assert np.asarray(acc.z, dtype=float) == pytest.approx(
        np.asarray([[accuracy(x, y) for x in LATTICE] for y in LATTICE])
    )
    # hover text names the point and its loss, on every cell
    assert "x=2<br>y=-1<br>loss=" + format(bowl(2.0, -1.0, split), ".4g") in one(fig, "loss-contour", split).text[0][-1]


def test_splits_are_rows_train_first_on_one_shared_colour_scale() -> None:
    fig = plane_figure(plane_rows())
    assert [t.meta["split"] for t in traces(fig, "loss-contour")] == ["train", "test"]
    assert {t.coloraxis for t in traces(fig, "loss-contour")} == {"coloraxis"}
    assert {t.coloraxis for t in traces(fig, "accuracy-contour")} == {"coloraxis2"}
    # the surfaces: a twin axis on the same scale (plotly cannot share one axis between z- and c-coloured traces)
    assert fig.layout.coloraxis3.cmin == fig.layout.coloraxis.cmin
    losses = [bowl(x, y, s) for s in ("train", "test") for x in LATTICE for y in LATTICE]
    losses += [bowl(x, y, s) for s in ("train", "test") for x, y in CHECKPOINTS]
    assert fig.layout.coloraxis.cmin == pytest.approx(min(losses))
    assert fig.layout.coloraxis.cmax == pytest.approx(max(losses))
    assert fig.layout.coloraxis.colorbar.title.text == "loss"


def test_checkpoints_are_marked_at_their_coordinates_and_the_path_joins_them() -> None:
    fig = plane_figure(plane_rows())
    for panel in ("plane-loss", "plane-accuracy"):
        (marks,) = [t for t in traces(fig, "anchors", "test") if t.meta["panel"] == panel]
        assert list(zip(marks.x, marks.y, strict=True)) == CHECKPOINTS
        assert list(marks.text) == ["c0", "c1", "c2"]
        (path,) = [t for t in traces(fig, "path", "test") if t.meta["panel"] == panel]
        assert list(zip(path.x, path.y, strict=True)) == CHECKPOINTS
    # on the surface, at each checkpoint's own loss: c1 and c2 lie off the lattice and still have theirs
    marks3d = one(fig, "anchors-3d", "test")
    assert list(marks3d.z) == pytest.approx([bowl(x, y, "test") for x, y in CHECKPOINTS])
    assert list(marks3d.text) == ["c0", "c1", "c2"]
    c1_hover = one(fig, "anchors", "train").hovertext[1]
    assert c1_hover.startswith("c1 · train")
    assert f"loss={bowl(1.3, 0.0):.4g}" in c1_hover


def test_checkpoints_default_to_the_anchor_rows_and_run_json_anchors_win() -> None:
    rows = plane_rows()
    marks = one(plane_figure(rows), "anchors", "train")
    assert list(zip(marks.x, marks.y, strict=True)) == CHECKPOINTS
    projected = [(0.0, 0.0), (0.5, 0.25), (1.3, 0.0)]
    marks = one(plane_figure(rows, checkpoints=projected), "anchors", "train")
    assert list(zip(marks.x, marks.y, strict=True)) == projected


def test_log_buttons_switch_every_loss_trace_and_the_colour_scale() -> None:
    fig = plane_figure(plane_rows())
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["linear loss", "log loss"]
    assert menu.active == 0  # the bowl spans far less than a factor 1000
    linear, log = menu.buttons
    indices = log.args[2]
    assert [fig.data[i].meta["role"] for i in indices] == ["loss-contour", "loss-surface", "anchors-3d"] * 2
    assert linear.args[2] == indices
    for i, z_log, z_lin in zip(indices, log.args[0]["z"], linear.args[0]["z"], strict=True):
        assert np.asarray(z_lin, dtype=float) == pytest.approx(np.asarray(fig.data[i].z, dtype=float))
        assert np.asarray(z_log, dtype=float) == pytest.approx(np.log10(np.asarray(fig.data[i].z, dtype=float)))
    layout = log.args[1]
    assert layout["coloraxis.cmin"] == pytest.approx(math.log10(fig.layout.coloraxis.cmin))
    assert layout["coloraxis.cmax"] == pytest.approx(math.log10(fig.layout.coloraxis.cmax))
    assert layout["coloraxis3.cmax"] == layout["coloraxis.cmax"]
    assert layout["coloraxis.colorbar.title.text"] == "loss (log scale)"
    # the ticks sit at round losses and say the loss itself
    assert [10**v for v in layout["coloraxis.colorbar.tickvals"]] == pytest.approx(
        [float(t) for t in layout["coloraxis.colorbar.ticktext"]], rel=1e-9
    )
    assert linear.args[1]["coloraxis.colorbar.tickvals"] is None
    assert layout["scene2.zaxis.title.text"] == "loss (log scale)"


def test_non_finite_losses_leave_holes_not_a_broken_colour_scale() -> None:
    far = {(2.0, 2.0): math.nan, (-1.0, 2.0): math.inf, (2.0, -1.0): -math.inf}
    fig = plane_figure(plane_rows(blowup=far))
    contour = one(fig, "loss-contour", "train")
    assert contour.z[-1][-1] is None
    assert contour.z[-1][0] is None
    assert contour.z[0][-1] is None
    assert len(finite(contour.z)) == len(LATTICE) ** 2 - 3
    assert "loss=nan" in contour.text[-1][-1]
    assert "loss=inf" in contour.text[-1][0]
    assert one(fig, "loss-surface", "train").z[-1][-1] is None
    cmin, cmax = fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax
    assert math.isfinite(cmin)
    assert math.isfinite(cmax)
    everything = [v for t in traces(fig, "loss-contour") for v in finite(t.z)]
    assert (cmin, cmax) == (pytest.approx(min(everything)), pytest.approx(max(everything)))
    log = fig.layout.updatemenus[0].buttons[1].args
    assert all(math.isfinite(log[1][k]) for k in ("coloraxis.cmin", "coloraxis.cmax"))
    assert all(v is None or math.isfinite(v) for z in log[0]["z"] for v in np.ravel(np.asarray(z, dtype=object)))


def test_a_loss_spanning_many_decades_opens_on_the_log_scale() -> None:
    fig = plane_figure(plane_rows(blowup={(2.0, 2.0): 1e9}))
    (menu,) = fig.layout.updatemenus
    assert menu.active == 1
    contour = one(fig, "loss-contour", "train")
    assert contour.z[-1][-1] == pytest.approx(9.0)  # log10 of the loss
    assert contour.z[0][0] == pytest.approx(math.log10(bowl(-1.0, -1.0)))
    assert fig.layout.coloraxis.cmax == pytest.approx(9.0)
    assert fig.layout.coloraxis.colorbar.title.text == "loss (log scale)"


def test_no_accuracy_panel_when_every_accuracy_is_nan() -> None:
    rows = plane_rows().assign(accuracy=math.nan)
    fig = plane_figure(rows)
    assert traces(fig, "accuracy-contour") == []
    assert {t.meta["panel"] for t in traces(fig, "anchors")} == {"plane-loss"}


def test_a_one_dimensional_line_is_drawn_as_curves() -> None:
    rows = plane_rows([(0.0, 0.0)], line=True).drop(columns="y")
    assert is_line(rows)
    assert is_line(rows.assign(y=0.0))
    assert not is_line(plane_rows())
    fig = plane_figure(rows, axis_titles=("steps along d₁", "unused"))
    assert traces(fig, "loss-contour") == []
    assert traces(fig, "loss-surface") == []
    line = one(fig, "line", "train", "loss")
    assert list(line.x) == pytest.approx(LATTICE)
    assert list(line.y) == pytest.approx([bowl(x, 0.0) for x in LATTICE])
    marks = [t for t in traces(fig, "anchors", "test") if t.meta["panel"] == "loss"]
    assert [(list(t.x), list(t.y), list(t.text)) for t in marks] == [([0.0], [bowl(0.0, 0.0, "test")], ["c0"])]
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["linear loss", "log loss"]
    assert fig.layout.xaxis.title.text == "steps along d₁"


def test_missing_columns_and_empty_results_are_refused() -> None:
    with pytest.raises(UsageError, match="lacks column"):
        plane_figure(plane_rows().drop(columns=["loss_se"]))
    with pytest.raises(UsageError, match="no rows"):
        plane_figure(plane_rows().iloc[:0])


def test_trajectory_page_draws_the_path_through_every_projection(tmp_path: Path) -> None:
    projections = [(-0.8, 1.5), (-0.2, 1.1), (0.3, 0.4), (0.9, 0.1), (0.0, 0.0)]
    rows = plane_rows(projections, evaluated=[4])  # only the last checkpoint (the origin) has its own point
    run = load_run(
        write_plane_run(
            tmp_path / "traj",
            rows,
            plane_section("trajectory", projections, on_plane=[4], explained_variance_ratio=[0.71, 0.18]),
        )
    )
    page, fig = plane_page(run)
    path = one(fig, "path", "test")
    assert list(zip(path.x, path.y, strict=True)) == projections
    marks = one(fig, "anchors", "test")
    assert list(marks.text) == ["c0", "c1", "c2", "c3", "c4"]
    assert marks.hovertext[1].startswith("c1 (c1.pt) (projected)")
    assert marks.hovertext[4].startswith("c4 (c4.pt) · test")
    assert list(one(fig, "anchors-3d", "test").text) == ["c4"]
    assert fig.layout.xaxis.title.text == "x: first principal direction (71.0% of the variance)"
    assert "the two directions in which the checkpoints differ most" in page


def test_plot_draws_a_plane_run_into_one_self_contained_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = write_plane_run(tmp_path / "plane", plane_rows(), plane_section("checkpoints", CHECKPOINTS))
    code, err = run_cli(monkeypatch, capsys, "plot", str(run_dir))
    assert code == 0, err
    html = (run_dir / "results.html").read_text()
    assert 'id="interpscan-plane"' in html
    assert "θ(x, y) = θ_c0 + x·u + y·v" in html
    assert "BN policy recompute" in html
    assert "The plane through three checkpoints" in html
    assert 'id="summary"' in html
    assert "minimum" in html
    assert "<script src=" not in html
    assert '<script charset="utf-8" src=' not in html  # plotly.js inline: the page needs no network
    assert "<summary>run.json</summary>" in html
    # the page's figure is the one plane_page draws for the run read back
    _, fig = plane_page(load_run(run_dir))
    assert f'"x":{LATTICE.tolist()}'.replace(" ", "") in html.replace(" ", "")
    assert fig.layout.xaxis.title.text == "x: distance from c0 toward c1"


def test_scan_result_reads_a_plane_run_back_and_draws_its_figure(tmp_path: Path) -> None:
    rows = plane_rows([(0.0, 0.0)])
    run_dir = write_plane_run(tmp_path / "plane", rows, plane_section("directions", [(0.0, 0.0)]))
    run = ScanResult.load(run_dir)
    assert run.is_plane
    assert run.has_manifest
    lowest = run.summary[run.summary["point"] == "minimum"]
    assert lowest["loss"].tolist() == pytest.approx([bowl(1.0, 0.5, "test"), bowl(1.0, 0.5)])
    assert run.summary["anchor"].tolist()[0] == 0
    fig = run.figure()
    assert fig.layout.yaxis.title.text == "y: steps along direction d₂"
    assert len(traces(fig, "loss-surface")) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: pd.concat([r, r.iloc[[3]]]), "a point and split appear twice"),
        (lambda r: r.assign(n=range(len(r))), r"numbers of examples \(column n\)"),
    ],
)
def test_a_damaged_plane_results_csv_is_named(tmp_path: Path, change: Any, message: str) -> None:
    run_dir = write_plane_run(tmp_path / "bad", change(plane_rows()), plane_section("checkpoints", CHECKPOINTS))
    with pytest.raises(OutputError, match=message):
        load_run(run_dir)


def test_plot_refuses_to_overlay_a_plane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_plane_run(tmp_path / "a", plane_rows(), plane_section("checkpoints", CHECKPOINTS))
    b = write_plane_run(tmp_path / "b", plane_rows(), plane_section("checkpoints", CHECKPOINTS))
    code, err = run_cli(monkeypatch, capsys, "plot", str(a), str(b), "--out", str(tmp_path / "both.html"))
    assert code == 2
    assert "a plane is drawn alone" in err
    assert not (tmp_path / "both.html").exists()


def test_compare_refuses_a_plane_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_plane_run(tmp_path / "a", plane_rows(), plane_section("checkpoints", CHECKPOINTS))
    b = write_plane_run(tmp_path / "b", plane_rows(), plane_section("checkpoints", CHECKPOINTS))
    code, err = run_cli(monkeypatch, capsys, "compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert code == 2
    assert "a plane run (interpscan plane or trajectory), not a path's" in err
    assert "interpscan plot" in err
    assert not (tmp_path / "cmp").exists()


def test_a_saved_plane_result_gets_the_plane_page(tmp_path: Path) -> None:
    """ScanResult.save (what `interpscan plane` ends with) draws results.html as `plot` draws it."""
    run = load_run(write_plane_run(tmp_path / "made", plane_rows(), plane_section("checkpoints", CHECKPOINTS)))
    written = run.save(tmp_path / "saved")
    html = written["results.html"].read_text()
    assert 'id="interpscan-plane"' in html
    assert ScanResult.load(tmp_path / "saved").results["loss"].tolist() == pytest.approx(run.results["loss"].tolist())


def test_the_page_names_clamped_bn_points_and_the_checkpoints_files(tmp_path: Path) -> None:
    section = plane_section("checkpoints", CHECKPOINTS, bn_clamped_points=3)
    page, fig = plane_page(load_run(write_plane_run(tmp_path / "clamped", plane_rows(), section)))
    assert "3 point(s) had an interpolated batch-norm running variance below 0, clamped at 0" in page
    assert one(fig, "anchors", "test").hovertext[2].startswith("c2 (c2.pt) · test")


def test_compare_runs_refuses_a_plane_given_as_a_result(tmp_path: Path) -> None:
    from interpscan.compare import compare_runs

    run = load_run(write_plane_run(tmp_path / "p", plane_rows(), plane_section("checkpoints", CHECKPOINTS)))
    with pytest.raises(UsageError, match="a plane has no path to measure"):
        compare_runs([run])

"""Figures of the loss over a plane of weights: a filled contour and a 3-D surface of the loss and a contour of the
accuracy per split, the checkpoints marked and the path between them drawn; and the 1-D curve of a random line.

Reads the tidy rows of a plane run (columns ``x``, ``y``, ``split``, ``loss``, ``loss_se``, ``accuracy``, ``n``,
``anchor``): a lattice of points, plus the checkpoints' own points where they fall off it. Derives nothing but
the log of the loss for the log colour scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .errors import UsageError
from .plots import (
    _SPLIT_COLOURS,
    _check_columns,
    _floats,
    _fmt,
    _log_y_menu,
    _paper_y,
    _plottable,
    _split_order,
)

PLANE_REQUIRED = ("x", "split", "loss", "loss_se", "accuracy", "n")
"""What the figure needs of a plane's results; ``y``, ``anchor`` and ``on_grid`` it uses when they are there."""
_LOSS_COLOURS = "Viridis"  # low loss dark, high loss bright, as the line page's heatmap
_ACCURACY_COLOURS = "Cividis"
_ROW_HEIGHT_PX = 460
_ROW_GAP_PX = 90
_ANCHOR_COLOUR = "white"
_PATH_COLOUR = "#e8e8e8"
# Plotly lets a colour axis serve traces coloured by z (contours) or by c (surfaces), not both: the surfaces get a
# twin of the loss axis, same scale, no bar of its own.
_SURFACE_AXIS = "coloraxis3"
_LOG_BY_DEFAULT = 1000.0  # losses spanning more than this ratio open on the log scale
_LABELS_SHOWN = 12  # a path through more checkpoints labels only its first and last


@dataclass(frozen=True)
class _Grid:
    """One split's lattice: x and y values, and per (y, x) cell the loss, accuracy and hover text (NaN / "" where
    the lattice has no point)."""

    xs: list[float]
    ys: list[float]
    loss: np.ndarray[Any, np.dtype[np.float64]]  # (len(ys), len(xs))
    accuracy: np.ndarray[Any, np.dtype[np.float64]]
    text: list[list[str]]


def is_line(results: pd.DataFrame) -> bool:
    """Whether a plane's ``results`` lie on a line: ``y`` absent, or one value throughout (``--dims 1``)."""
    if "y" not in results.columns:
        return True
    ys = np.asarray(_floats(results["y"]))
    return bool(np.all(np.isnan(ys))) or bool(np.nanmax(ys) == np.nanmin(ys))


def plane_figure(
    results: pd.DataFrame,
    *,
    checkpoints: Sequence[Sequence[float]] | None = None,
    names: Sequence[str] | None = None,
    axis_titles: tuple[str, str] = ("x", "y"),
    title: str | None = None,
) -> go.Figure:
    """Draw a plane's loss and accuracy: per split (train first, then test, then any other) a row of a filled
    contour of the loss, a 3-D surface of the loss and a filled contour of the accuracy (left out when every
    accuracy is NaN). Every loss panel shares one colour scale, every accuracy panel another; buttons switch the
    loss between a linear and a log₁₀ scale (the colours, the surfaces' heights and their axis), and the page
    opens on the log scale when the finite losses span more than a factor 1000. NaN and ±inf losses are left
    out of the colours and the surface (a hole); the hover text still shows them. Both axes are drawn to one
    scale: a unit of x is as long as a unit of y.

    The checkpoints are marked ``c0``, ``c1``, … on every panel, and the segments between consecutive ones are
    drawn over the contours: the three checkpoints of a plane through them, or a trajectory's path through all.
    A run whose ``y`` is absent or constant (a 1-D random line) is drawn as loss and accuracy against x instead,
    a line per split, the checkpoint marked.

    Args:
        results: Tidy rows with columns ``x``, ``split``, ``loss``, ``loss_se``, ``accuracy``, ``n``; optional
            ``y``, ``anchor`` (a checkpoint's index on its own point, empty or NaN elsewhere) and ``on_grid``
            (False for a checkpoint's point added beside the lattice; without the column, the points that are
            not anchors make the lattice). A point off the lattice is drawn only as its checkpoint's marker.
            With a ``curve`` column, the rows of curve ``all``.
        checkpoints: Each checkpoint's (x, y), by index (run.json's anchors; a trajectory's projections)
            [default: the anchors' points in ``results``].
        names: Each checkpoint's label (its file, as run.json's anchors name it), for the hover text.
        axis_titles: Titles of the x and y axes.
        title: Figure title; none when omitted.

    Returns:
        A Plotly figure (template ``plotly_white``). Every trace's ``meta`` is ``{"role": ..., "split": ...,
        "panel": ...}``: roles ``"loss-contour"``, ``"anchors"`` and ``"path"`` on panel ``"plane-loss"``,
        ``"loss-surface"`` and ``"anchors-3d"`` on ``"surface"``, ``"accuracy-contour"``, ``"anchors"`` and
        ``"path"`` on ``"plane-accuracy"``; on a line ``"line"`` and ``"anchors"`` on panels ``"loss"`` and
        ``"accuracy"``.

    Raises:
        UsageError: ``results`` lacks a required column or has no rows.
    """
    _check_columns(results, PLANE_REQUIRED, "results")
    frame = _rows(results, names or ())
    if frame.empty:
        raise UsageError("results has no rows: nothing to plot", hint="run a plane scan first")
    splits = _split_order(frame["split"])
    points = [(float(x), float(y)) for x, y in checkpoints] if checkpoints is not None else _anchor_points(frame)
    has_accuracy = bool(np.isfinite(np.asarray(_floats(frame["accuracy"]))).any())
    if is_line(results):
        fig = _line_figure(frame, splits, points, has_accuracy=has_accuracy, x_title=axis_titles[0])
    else:
        fig = _surface_figure(frame, splits, points, names or (), has_accuracy=has_accuracy, axis_titles=axis_titles)
    fig.update_layout(template="plotly_white")
    if title is not None:
        fig.update_layout(title_text=title)
    return fig


def _rows(results: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """A copy with ``split`` as text, ``y`` 0 where absent, ``anchor`` as an int index or -1 (none), ``on_grid``
    a plain bool, and ``who``: ``c<i>`` and the checkpoint's name on its own point, "" elsewhere."""
    frame = results.copy()
    if "curve" in frame.columns and (frame["curve"].astype(str) == "all").any():
        frame = frame[frame["curve"].astype(str) == "all"]
    frame["split"] = frame["split"].astype(str)
    frame["x"] = _floats(frame["x"])
    frame["y"] = _floats(frame["y"]) if "y" in frame.columns else 0.0
    anchors = pd.to_numeric(frame["anchor"], errors="coerce") if "anchor" in frame.columns else np.nan
    frame["anchor"] = pd.Series(anchors, index=frame.index, dtype="float64").fillna(-1).astype(int)
    if "on_grid" in frame.columns:
        frame["on_grid"] = [v is not False and not (isinstance(v, np.bool_) and not v) for v in frame["on_grid"]]
    else:
        frame["on_grid"] = frame["anchor"] < 0
    frame["who"] = [_who(int(a), names) for a in frame["anchor"]]
    return frame.reset_index(drop=True)


def _who(index: int, names: Sequence[str]) -> str:
    """``c<index>``, with the checkpoint's name when it has one; "" for no checkpoint."""
    if index < 0:
        return ""
    name = names[index] if index < len(names) else ""
    return f"c{index} ({name})" if name else f"c{index}"


def _anchor_points(frame: pd.DataFrame) -> list[tuple[float, float]]:
    """Each checkpoint's (x, y) from the rows that carry its index, in index order (a gap as NaN)."""
    anchored = frame[frame["anchor"] >= 0].drop_duplicates("anchor")
    if anchored.empty:
        return []
    where = {
        int(a): (float(x), float(y)) for a, x, y in zip(anchored["anchor"], anchored["x"], anchored["y"], strict=True)
    }
    return [where.get(i, (math.nan, math.nan)) for i in range(max(where) + 1)]


def _lattice_values(values: Sequence[float]) -> list[float]:
    """The distinct values, those equal to 9 significant digits (the CSV's 10, rounded) taken as one."""
    return sorted({float(f"{v:.9g}") for v in values if math.isfinite(v)})


def _index(values: Sequence[float], v: float) -> int | None:
    """Where ``v`` sits in the sorted ``values`` (to 9 significant digits), or None."""
    key = float(f"{v:.9g}") if math.isfinite(v) else math.nan
    i = int(np.searchsorted(values, key))
    return i if i < len(values) and math.isclose(values[i], key, rel_tol=1e-9, abs_tol=1e-12) else None


def _grid(of_split: pd.DataFrame, split: str) -> _Grid:
    """One split's lattice: the points on the grid define it; a checkpoint's point off it has no cell."""
    lattice = of_split[of_split["on_grid"]]
    if lattice.empty:
        lattice = of_split
    xs, ys = _lattice_values(_floats(lattice["x"])), _lattice_values(_floats(lattice["y"]))
    loss = np.full((len(ys), len(xs)), np.nan)
    accuracy = np.full((len(ys), len(xs)), np.nan)
    text = [[""] * len(xs) for _ in ys]
    rows: list[Any] = list(of_split.itertuples(index=False))
    for row in rows:
        i, j = _index(ys, float(row.y)), _index(xs, float(row.x))
        if i is None or j is None:
            continue
        loss[i, j], accuracy[i, j] = float(row.loss), float(row.accuracy)
        text[i][j] = _hover(row, split)
    return _Grid(xs, ys, loss, accuracy, text)


def _hover(row: Any, split: str) -> str:
    loss, se, acc = float(row.loss), float(row.loss_se), float(row.accuracy)
    parts = [f"{row.who} · {split}" if row.who else split, f"x={_fmt(float(row.x))}"]
    parts.append(f"y={_fmt(float(row.y))}")
    parts.append(f"loss={_fmt(loss)} ± {_fmt(se, '.2g')}" if math.isfinite(se) else f"loss={_fmt(loss)}")
    if not math.isnan(acc):
        parts.append(f"accuracy={acc:.2%}")
    parts.append(f"n={row.n}")
    return "<br>".join(parts)


def _log10(values: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """log₁₀ of the positive finite values, NaN elsewhere (a loss of 0 or less has no place on a log scale)."""
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values) & (values > 0)
    out[ok] = np.log10(values[ok])
    return out


def _cells(values: np.ndarray[Any, np.dtype[np.float64]]) -> list[Any]:
    """A matrix (or vector) for Plotly: NaN and ±inf become None, a hole in the contour and the surface."""
    if values.ndim == 1:
        return _plottable(values.tolist())
    return [_plottable(row) for row in values.tolist()]


@dataclass(frozen=True)
class _Scale:
    """The loss colour scale in one mode: its range and, on the log scale, ticks that show the loss itself."""

    cmin: float
    cmax: float
    tickvals: list[float] | None
    ticktext: list[str] | None
    title: str


def _scales(losses: np.ndarray[Any, np.dtype[np.float64]]) -> tuple[_Scale, _Scale]:
    """(linear, log) colour scales over the finite losses of every split."""
    finite = losses[np.isfinite(losses)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    linear = _Scale(low, high, None, None, "loss")
    logs = _log10(finite)
    logs = logs[np.isfinite(logs)]
    log_low, log_high = (float(logs.min()), float(logs.max())) if logs.size else (0.0, 1.0)
    if log_high <= log_low:
        log_high = log_low + 1.0
    ticks: list[float] = []
    for mantissas in ((1, 2, 5), tuple(range(1, 10))):  # 1-2-5 per decade; every digit over less than a decade
        ticks = [
            math.log10(m * 10.0**e)
            for e in range(math.floor(log_low), math.ceil(log_high) + 1)
            for m in mantissas
            if log_low - 1e-9 <= math.log10(m * 10.0**e) <= log_high + 1e-9
        ]
        if len(ticks) >= 3:
            break
    else:
        ticks = np.linspace(log_low, log_high, 5).tolist()
    return linear, _Scale(log_low, log_high, ticks, [_fmt(10.0**t, ".3g") for t in ticks], "loss (log scale)")


def _opens_on_log(losses: np.ndarray[Any, np.dtype[np.float64]]) -> bool:
    positive = losses[np.isfinite(losses) & (losses > 0)]
    return bool(positive.size) and float(positive.max()) > _LOG_BY_DEFAULT * float(positive.min())


def _surface_figure(
    frame: pd.DataFrame,
    splits: Sequence[str],
    checkpoints: Sequence[tuple[float, float]],
    names: Sequence[str],
    *,
    has_accuracy: bool,
    axis_titles: tuple[str, str],
) -> go.Figure:
    grids = {split: _grid(frame[frame["split"] == split], split) for split in splits}
    cols = 3 if has_accuracy else 2
    rows = len(splits)
    height = _ROW_HEIGHT_PX * rows + 140
    row_spec: list[dict[str, Any]] = [{"type": "xy"}, {"type": "scene"}] + ([{"type": "xy"}] if has_accuracy else [])
    titles = [t for split in splits for t in (f"{split}: loss", f"{split}: loss surface", f"{split}: accuracy")[:cols]]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        specs=[row_spec] * rows,
        subplot_titles=titles,
        horizontal_spacing=0.07,
        vertical_spacing=_ROW_GAP_PX / height,
    )
    all_losses = np.concatenate([g.loss.ravel() for g in grids.values()] + [_floats_array(frame["loss"])])
    linear, log = _scales(all_losses)
    on_log = _opens_on_log(all_losses)
    shown = log if on_log else linear
    path = _path(checkpoints)
    views: list[tuple[int, np.ndarray[Any, np.dtype[np.float64]]]] = []  # (trace index, linear and log values)
    for r, split in enumerate(splits, start=1):
        grid = grids[split]
        of_split = frame[frame["split"] == split]
        loss_views = np.stack([grid.loss, _log10(grid.loss)])
        views += [(len(fig.data), loss_views), (len(fig.data) + 1, loss_views)]
        fig.add_trace(
            _contour(
                grid, loss_views[int(on_log)], "coloraxis", f"{split} loss", _meta("loss-contour", split, "plane-loss")
            ),
            row=r,
            col=1,
        )
        fig.add_trace(
            go.Surface(
                x=grid.xs,
                y=grid.ys,
                z=_cells(loss_views[int(on_log)]),
                coloraxis=_SURFACE_AXIS,
                text=grid.text,
                hovertemplate="%{text}<extra></extra>",
                name=f"{split} loss surface",
                showlegend=False,
                meta=_meta("loss-surface", split, "surface"),
            ),
            row=r,
            col=2,
        )
        anchors_3d = _add_anchors_3d(fig, of_split, split, on_log=on_log, row=r)
        if anchors_3d is not None:
            views.append((len(fig.data) - 1, anchors_3d))
        if has_accuracy:
            meta = _meta("accuracy-contour", split, "plane-accuracy")
            fig.add_trace(_contour(grid, grid.accuracy, "coloraxis2", f"{split} accuracy", meta), row=r, col=3)
        # Not the line page's "loss"/"accuracy" panels: its α cursor has no meaning on a plane.
        for col, panel in ((1, "plane-loss"), (3, "plane-accuracy"))[: 2 if has_accuracy else 1]:
            _add_path(fig, path, split, panel, row=r, col=col, legend=r == 1 and col == 1)
            legend = r == 1 and col == 1
            _add_anchors(fig, checkpoints, names, of_split, split, panel, row=r, col=col, legend=legend)
            fig.update_xaxes(title_text=axis_titles[0], row=r, col=col)
            # One unit of y as long as one of x: distances in the plane look like distances.
            fig.update_yaxes(
                title_text=axis_titles[1], scaleanchor=_axis_name(fig, r, col), scaleratio=1, row=r, col=col
            )
    for r in range(1, rows + 1):
        scene = fig.get_subplot(r, 2)
        scene.xaxis.title.text, scene.yaxis.title.text = "x", "y"
        scene.zaxis.title.text = shown.title
        # Seen from below the x axis: x grows to the right and y away from the reader, as on the contours.
        scene.camera.eye = {"x": 0.7, "y": -1.9, "z": 1.0}
    _colour_axes(fig, shown, has_accuracy=has_accuracy, cols=cols)
    fig.update_layout(
        height=height,
        updatemenus=[_log_menu(fig, views, linear, log, on_log=on_log, height=height)],
        legend={"orientation": "h", "x": 0.0, "y": 1.0, "yanchor": "bottom", "yref": "container"},
        margin={"t": 110, "b": 130},
        hovermode="closest",
    )
    return fig


def _contour(
    grid: _Grid, z: np.ndarray[Any, np.dtype[np.float64]], coloraxis: str, name: str, meta: dict[str, str]
) -> go.Contour:
    """A filled contour of ``z`` over the grid's lattice, hover text per cell, holes where ``z`` is not finite."""
    return go.Contour(
        x=grid.xs,
        y=grid.ys,
        z=_cells(z),
        coloraxis=coloraxis,
        contours={"coloring": "fill", "showlines": True},
        line={"width": 0.5, "color": "rgba(255, 255, 255, 0.4)"},
        text=grid.text,
        hovertemplate="%{text}<extra></extra>",
        hoverongaps=False,
        name=name,
        showlegend=False,
        meta=meta,
    )


def _floats_array(values: pd.Series[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(_floats(values), dtype=np.float64)


def _axis_name(fig: go.Figure, row: int, col: int) -> str:
    """The short name (``x``, ``x3``) of the x axis of the xy panel at (row, col)."""
    name: str = fig.get_subplot(row, col).xaxis.plotly_name  # xaxis, xaxis3, ...
    return "x" + name[len("xaxis") :]


def _path(checkpoints: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The checkpoints in order, where they are known (a gap in the indices breaks nothing: it is skipped)."""
    return [(x, y) for x, y in checkpoints if math.isfinite(x) and math.isfinite(y)]


def _labels(count: int) -> list[str]:
    """``c0``, ``c1``, …; on a long path only the first and the last are written."""
    if count <= _LABELS_SHOWN:
        return [f"c{i}" for i in range(count)]
    return [f"c{i}" if i in (0, count - 1) else "" for i in range(count)]


def _add_path(
    fig: go.Figure, path: Sequence[tuple[float, float]], split: str, panel: str, *, row: int, col: int, legend: bool
) -> None:
    """The segments between consecutive checkpoints over one contour."""
    if len(path) < 2:
        return
    fig.add_trace(
        go.Scatter(
            x=[x for x, _ in path],
            y=[y for _, y in path],
            mode="lines",
            line={"color": _PATH_COLOUR, "width": 2, "dash": "dash"},
            name="path between checkpoints",
            legendgroup="path",
            showlegend=legend,
            hoverinfo="skip",
            meta=_meta("path", split, panel),
        ),
        row=row,
        col=col,
    )


def _add_anchors(
    fig: go.Figure,
    checkpoints: Sequence[tuple[float, float]],
    names: Sequence[str],
    of_split: pd.DataFrame,
    split: str,
    panel: str,
    *,
    row: int,
    col: int,
    legend: bool,
) -> None:
    """The checkpoints as labelled markers over one contour; hover gives their loss where it was evaluated."""
    if not checkpoints:
        return
    rows: list[Any] = list(of_split[of_split["anchor"] >= 0].itertuples(index=False))
    known = {int(r.anchor): _hover(r, split) for r in rows}
    fig.add_trace(
        go.Scatter(
            x=[x if math.isfinite(x) else None for x, _ in checkpoints],
            y=[y if math.isfinite(y) else None for _, y in checkpoints],
            mode="markers+text",
            text=_labels(len(checkpoints)),
            textposition="top right",
            textfont={"color": "black", "size": 13},
            marker={"symbol": "circle", "size": 10, "color": _ANCHOR_COLOUR, "line": {"width": 2, "color": "black"}},
            name="checkpoints",
            legendgroup="checkpoints",
            showlegend=legend,
            hovertext=[
                known.get(i, f"{_who(i, names)} (projected)<br>x={_fmt(x)}<br>y={_fmt(y)}")
                for i, (x, y) in enumerate(checkpoints)
            ],
            hovertemplate="%{hovertext}<extra></extra>",
            meta=_meta("anchors", split, panel),
        ),
        row=row,
        col=col,
    )


def _add_anchors_3d(
    fig: go.Figure, of_split: pd.DataFrame, split: str, *, on_log: bool, row: int
) -> np.ndarray[Any, np.dtype[np.float64]] | None:
    """The checkpoints evaluated on their own points, as markers on the surface at their loss; returns their
    linear and log losses (None when the split has no anchor rows)."""
    anchored = of_split[of_split["anchor"] >= 0].sort_values("anchor")
    if anchored.empty:
        return None
    losses = _floats_array(anchored["loss"])
    views = np.stack([losses, _log10(losses)])
    fig.add_trace(
        go.Scatter3d(
            x=_floats(anchored["x"]),
            y=_floats(anchored["y"]),
            z=_cells(views[int(on_log)]),
            mode="markers+text",
            text=[f"c{a}" for a in anchored["anchor"]],
            marker={"size": 5, "color": _ANCHOR_COLOUR, "line": {"width": 2, "color": "black"}},
            hovertext=[_hover(r, split) for r in anchored.itertuples(index=False)],
            hovertemplate="%{hovertext}<extra></extra>",
            name=f"{split} checkpoints",
            showlegend=False,
            meta=_meta("anchors-3d", split, "surface"),
        ),
        row=row,
        col=2,
    )
    return views


def _colour_axes(fig: go.Figure, scale: _Scale, *, has_accuracy: bool, cols: int) -> None:
    """The shared loss colour scale (under the contour and surface columns) and the accuracy one (under its
    column), as horizontal bars below the figure."""
    loss_right = fig.get_subplot(1, 2).domain.x[1]
    fig.update_layout(
        coloraxis={
            "colorscale": _LOSS_COLOURS,
            "cmin": scale.cmin,
            "cmax": scale.cmax,
            "colorbar": _colourbar(scale, 0.0, loss_right),
        },
        **{_SURFACE_AXIS: {"colorscale": _LOSS_COLOURS, "cmin": scale.cmin, "cmax": scale.cmax, "showscale": False}},
    )
    if has_accuracy:
        x0, x1 = fig.get_subplot(1, cols).xaxis.domain
        fig.update_layout(
            coloraxis2={
                "colorscale": _ACCURACY_COLOURS,
                "cmin": 0.0,
                "cmax": 1.0,
                "colorbar": {**_colourbar(_Scale(0.0, 1.0, None, None, "accuracy"), x0, x1), "tickformat": ".0%"},
            }
        )


def _colourbar(scale: _Scale, x0: float, x1: float) -> dict[str, Any]:
    """A horizontal colour bar at the bottom of the figure, under the columns from ``x0`` to ``x1``."""
    bar: dict[str, Any] = {
        "title": {"text": scale.title, "side": "top"},
        "orientation": "h",
        "x": (x0 + x1) / 2,
        "xanchor": "center",
        "len": x1 - x0,
        "y": 0.0,
        "yanchor": "bottom",
        "yref": "container",
        "thickness": 12,
        "tickmode": "auto" if scale.tickvals is None else "array",
    }
    if scale.tickvals is not None:
        bar.update(tickvals=scale.tickvals, ticktext=scale.ticktext)
    return bar


def _log_menu(
    fig: go.Figure,
    views: Sequence[tuple[int, np.ndarray[Any, np.dtype[np.float64]]]],
    linear: _Scale,
    log: _Scale,
    *,
    on_log: bool,
    height: int,
) -> dict[str, Any]:
    """Buttons that switch every loss trace (contours, surfaces, their markers: ``views`` gives each one's index
    and its linear and log values) and the loss colour scale between linear and log₁₀."""
    indices = [i for i, _ in views]
    scenes = list(dict.fromkeys(t.scene for t in fig.data if t.type in ("surface", "scatter3d")))

    def update(which: int, scale: _Scale) -> list[Any]:
        zs = [_cells(values[which]) for _, values in views]
        layout: dict[str, Any] = {
            "coloraxis.cmin": scale.cmin,
            "coloraxis.cmax": scale.cmax,
            f"{_SURFACE_AXIS}.cmin": scale.cmin,
            f"{_SURFACE_AXIS}.cmax": scale.cmax,
            "coloraxis.colorbar.title.text": scale.title,
            "coloraxis.colorbar.tickmode": "auto" if scale.tickvals is None else "array",
            "coloraxis.colorbar.tickvals": scale.tickvals,
            "coloraxis.colorbar.ticktext": scale.ticktext,
        }
        for scene in scenes:
            layout[f"{scene}.zaxis.title.text"] = scale.title
            layout[f"{scene}.zaxis.tickmode"] = "auto" if scale.tickvals is None else "array"
            layout[f"{scene}.zaxis.tickvals"] = scale.tickvals
            layout[f"{scene}.zaxis.ticktext"] = scale.ticktext
        return [{"z": zs}, layout, indices]

    return {
        "type": "buttons",
        "direction": "right",
        "buttons": [
            {"label": "linear loss", "method": "update", "args": update(0, linear)},
            {"label": "log loss", "method": "update", "args": update(1, log)},
        ],
        "active": int(on_log),
        "showactive": True,
        "x": 1.0,
        "xanchor": "right",
        "y": _paper_y(30, 1.0, height),
        "yanchor": "bottom",
        "pad": {"r": 0, "t": 0},
        "name": "log-loss",
    }


def _line_figure(
    frame: pd.DataFrame,
    splits: Sequence[str],
    checkpoints: Sequence[tuple[float, float]],
    *,
    has_accuracy: bool,
    x_title: str,
) -> go.Figure:
    """A 1-D random line: loss (and accuracy) against x, a line per split, the checkpoint's point marked."""
    fig = make_subplots(
        rows=1, cols=2 if has_accuracy else 1, subplot_titles=["loss", "accuracy"] if has_accuracy else ["loss"]
    )
    for k, split in enumerate(splits):
        of_split = frame[frame["split"] == split].sort_values("x", kind="stable")
        colour = _SPLIT_COLOURS[k % len(_SPLIT_COLOURS)]
        texts = [_hover(r, split) for r in of_split.itertuples(index=False)]
        for col, (panel, column) in enumerate(
            (("loss", "loss"), ("accuracy", "accuracy"))[: 2 if has_accuracy else 1], 1
        ):
            fig.add_trace(
                go.Scatter(
                    x=_floats(of_split["x"]),
                    y=_plottable(_floats(of_split[column])),
                    mode="lines+markers",
                    marker={"size": 5},
                    line={"color": colour},
                    name=split,
                    legendgroup=split,
                    showlegend=col == 1,
                    hovertext=texts,
                    hovertemplate="%{hovertext}<extra></extra>",
                    meta=_meta("line", split, panel),
                ),
                row=1,
                col=col,
            )
            anchored = of_split[of_split["anchor"] >= 0]
            if not anchored.empty:
                fig.add_trace(
                    go.Scatter(
                        x=_floats(anchored["x"]),
                        y=_plottable(_floats(anchored[column])),
                        mode="markers+text",
                        text=[f"c{a}" for a in anchored["anchor"]],
                        textposition="top center",
                        marker={"symbol": "diamond", "size": 11, "color": colour, "line": {"width": 1}},
                        name=f"{split} checkpoint",
                        legendgroup=split,
                        showlegend=False,
                        hovertext=[_hover(r, split) for r in anchored.itertuples(index=False)],
                        hovertemplate="%{hovertext}<extra></extra>",
                        meta=_meta("anchors", split, panel),
                    ),
                    row=1,
                    col=col,
                )
    del checkpoints  # a line's checkpoint is its anchor row: nothing else to mark
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    if has_accuracy:
        fig.update_yaxes(title_text="accuracy", range=[0.0, 1.0], row=1, col=2)
    fig.update_layout(updatemenus=[_log_y_menu(fig, 480)], hovermode="closest", margin={"t": 110})
    return fig


def _meta(role: str, split: str, panel: str) -> dict[str, str]:
    return {"role": role, "split": split, "panel": panel}

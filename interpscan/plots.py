"""Figures of a scan: loss and accuracy along the path as a Plotly figure, and its atomic HTML export.

Reads the tidy ``results`` and per-curve ``summary`` DataFrames; computes no metrics of its own.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative
from plotly.subplots import make_subplots

from .atomic import write_atomic
from .errors import UsageError

ALL = "all"
"""The ``curve`` value of the whole-network ("vary all") path."""

REQUIRED_COLUMNS = ("curve", "split", "alpha", "loss", "loss_se", "accuracy", "n")

# Known splits first, in the order a reader expects; any other split follows in order of appearance.
_SPLIT_ORDER = ("train", "test")
_SPLIT_COLOURS = qualitative.Plotly  # train blue, test red, ...
# A different palette for groups, so a group line is never mistaken for a split's vary-all line.
_GROUP_COLOURS = qualitative.Dark2
_ENDPOINT_SYMBOL = "diamond"
_BARRIER_SYMBOL = "star"
_BAND_OPACITY = 0.18


def path_figure(results: pd.DataFrame, summary: pd.DataFrame | None = None, *, title: str | None = None) -> go.Figure:
    """Plot loss (and accuracy) against α for every split, with endpoints, barrier and per-group curves.

    Left panel: loss vs α, one line per split for the whole network (``curve == "all"``), a shaded ±1 standard
    error band, diamonds at α=0 and α=1, and a star at the worst barrier. Right panel (only when some
    accuracy is not NaN): accuracy vs α per split. Per-group curves (any ``curve`` other than ``"all"``) are
    drawn on the loss panel for the first split (``train`` if present), with that split's vary-all line dashed
    for reference. Non-finite losses (NaN, ±inf) leave a gap in the line; the hover text still shows them.

    Args:
        results: Tidy rows with columns ``curve``, ``split``, ``alpha``, ``loss``, ``loss_se``, ``accuracy``
            (in [0, 1], or NaN when the task has none) and ``n``; other columns are ignored.
        summary: Optional per-(curve, split) metrics. For each split's ``"all"`` row the barrier marker sits
            at ``barrier_max_alpha`` when ``barrier_max > 0``, else at ``barrier_linear_alpha`` when
            ``barrier_linear > 0``; with no positive barrier (or no summary) there is no marker.
        title: Figure title; none when omitted.

    Returns:
        A Plotly figure (template ``plotly_white``, hovermode ``x unified``). Every trace's ``meta`` is a dict
        ``{"role": "line" | "band" | "endpoints" | "barrier", "curve": ..., "split": ...,
        "panel": "loss" | "accuracy"}`` so callers can find traces without relying on their order.

    Raises:
        UsageError: ``results`` lacks a required column, or has no rows.
    """
    _check_columns(results, REQUIRED_COLUMNS, "results")
    if results.empty:
        raise UsageError("results has no rows: nothing to plot", hint="run a scan first")

    splits = _split_order(results["split"])
    groups = [str(c) for c in pd.unique(results["curve"]) if c != ALL]
    accuracy = pd.to_numeric(results["accuracy"], errors="coerce")
    has_accuracy = bool(accuracy.notna().any())

    cols = 2 if has_accuracy else 1
    fig = make_subplots(
        rows=1,
        cols=cols,
        subplot_titles=("loss", "accuracy")[:cols],
        horizontal_spacing=0.08,
    )

    for i, split in enumerate(splits):
        colour = _SPLIT_COLOURS[i % len(_SPLIT_COLOURS)]
        points = _curve(results, ALL, split)
        if points.empty:
            continue
        # With per-group curves the vary-all line of the first split is the reference: dashed.
        dash = "dash" if groups and i == 0 else "solid"
        _add_path(fig, points, curve=ALL, split=split, colour=colour, dash=dash, col=1, legend=True)
        if has_accuracy:
            _add_path(fig, points, curve=ALL, split=split, colour=colour, dash="solid", col=2, legend=False)
        if summary is not None:
            _add_barrier(fig, points, summary, split=split, colour=colour)

    if groups:
        first = splits[0]
        for j, group in enumerate(groups):
            points = _curve(results, group, first)
            if points.empty:
                continue
            colour = _GROUP_COLOURS[j % len(_GROUP_COLOURS)]
            _add_group(fig, points, group=group, split=first, colour=colour)

    alphas = pd.to_numeric(results["alpha"], errors="coerce")
    if alphas.min() < 0.0 or alphas.max() > 1.0:
        # The checkpoints themselves sit at α=0 and α=1; outside them the path is extrapolated.
        for x in (0.0, 1.0):
            fig.add_vline(x=x, line_dash="dot", line_color="grey", line_width=1, row="all", col="all")

    fig.update_xaxes(title_text="α")
    fig.update_yaxes(title_text="loss", row=1, col=1)
    if has_accuracy:
        fig.update_yaxes(title_text="accuracy", range=[0.0, 1.0], row=1, col=2)
    fig.update_layout(
        template="plotly_white",
        hovermode="x unified",
        legend_title_text="split" if not groups else "split / group",
    )
    if title is not None:
        fig.update_layout(title_text=title)
    return fig


def write_html(fig: go.Figure, path: pathlib.Path, *, include_plotlyjs: bool | str = True) -> None:
    """Write ``fig`` to ``path`` as HTML, atomically: a temp sibling is written, then renamed over ``path``.

    Args:
        fig: The figure to write.
        path: Destination file; an existing file is replaced. Its directory must exist.
        include_plotlyjs: Passed to Plotly: ``True`` (default) inlines plotly.js so the file works offline;
            ``"cdn"`` links it instead (much smaller file, needs a network to view).
    """
    path = pathlib.Path(path)
    html = fig.to_html(include_plotlyjs=include_plotlyjs, full_html=True)
    write_atomic(path, html)


# --- helpers -----------------------------------------------------------------------------------------------


def _check_columns(frame: pd.DataFrame, required: Sequence[str], name: str) -> None:
    missing = sorted(set(required) - set(frame.columns))
    if missing:
        raise UsageError(
            f"{name} lacks column(s) {', '.join(missing)}; has {', '.join(map(str, frame.columns))}",
            hint=f"pass the {name} DataFrame produced by interpscan",
        )


def _split_order(splits: pd.Series[Any]) -> list[str]:
    seen = [str(s) for s in pd.unique(splits)]
    known = [s for s in _SPLIT_ORDER if s in seen]
    return known + [s for s in seen if s not in known]


def _curve(results: pd.DataFrame, curve: str, split: str) -> pd.DataFrame:
    """One curve's rows for one split, sorted by α."""
    rows = results[(results["curve"] == curve) & (results["split"] == split)]
    return rows.sort_values("alpha", kind="stable").reset_index(drop=True)


def _floats(values: pd.Series[Any]) -> list[float]:
    return [float(v) for v in pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)]


def _plottable(values: Sequence[float]) -> list[float | None]:
    """NaN and ±inf become None: a gap in the line rather than a broken axis range."""
    return [v if math.isfinite(v) else None for v in values]


def _fmt(value: float, spec: str = ".4g") -> str:
    return format(value, spec) if math.isfinite(value) else str(value)


def _hover_texts(points: pd.DataFrame, curve: str, split: str) -> list[str]:
    alphas, losses = _floats(points["alpha"]), _floats(points["loss"])
    ses, accs = _floats(points["loss_se"]), _floats(points["accuracy"])
    ns = points["n"].tolist()
    texts = []
    for a, loss, se, acc, n in zip(alphas, losses, ses, accs, ns, strict=True):
        parts = [f"{curve} · {split}", f"α={_fmt(a)}"]
        parts.append(f"loss={_fmt(loss)} ± {_fmt(se, '.2g')}" if math.isfinite(se) else f"loss={_fmt(loss)}")
        if not math.isnan(acc):
            parts.append(f"accuracy={acc:.2%}")
        parts.append(f"n={n}")
        texts.append("<br>".join(parts))
    return texts


def _rgba(colour: str, opacity: float) -> str:
    r, g, b = hex_to_rgb(colour)
    return f"rgba({r}, {g}, {b}, {opacity})"


def _meta(role: str, curve: str, split: str, panel: str) -> dict[str, str]:
    return {"role": role, "curve": curve, "split": split, "panel": panel}


def _add_path(
    fig: go.Figure,
    points: pd.DataFrame,
    *,
    curve: str,
    split: str,
    colour: str,
    dash: str,
    col: int,
    legend: bool,
) -> None:
    """One split's vary-all line on one panel: SE band (loss only), line with markers, endpoint diamonds."""
    panel = "loss" if col == 1 else "accuracy"
    alphas = _floats(points["alpha"])
    ys = _floats(points["loss"] if panel == "loss" else points["accuracy"])
    texts = _hover_texts(points, curve, split)

    if panel == "loss":
        se = np.asarray(_floats(points["loss_se"]))
        if bool(np.any(np.nan_to_num(se, nan=0.0) > 0)):
            loss = np.asarray(ys)
            # Drawn before the line so the line sits on top; the lower edge fills up to the upper one.
            for edge, fill in ((loss + se, None), (loss - se, "tonexty")):
                fig.add_trace(
                    go.Scatter(
                        x=alphas,
                        y=_plottable(edge.tolist()),
                        mode="lines",
                        line={"width": 0, "color": colour},
                        fill=fill,
                        fillcolor=_rgba(colour, _BAND_OPACITY),
                        hoverinfo="skip",
                        showlegend=False,
                        legendgroup=split,
                        name=f"{split} ±1 SE",
                        meta=_meta("band", curve, split, panel),
                    ),
                    row=1,
                    col=col,
                )

    fig.add_trace(
        go.Scatter(
            x=alphas,
            y=_plottable(ys),
            mode="lines+markers",
            line={"color": colour, "dash": dash},
            marker={"size": 5},
            name=split,
            legendgroup=split,
            showlegend=legend,
            hovertext=texts,
            hovertemplate="%{hovertext}<extra></extra>",
            meta=_meta("line", curve, split, panel),
        ),
        row=1,
        col=col,
    )

    ends = [i for i, a in enumerate(alphas) if math.isclose(a, 0.0, abs_tol=1e-9) or math.isclose(a, 1.0)]
    if ends:
        fig.add_trace(
            go.Scatter(
                x=[alphas[i] for i in ends],
                y=_plottable([ys[i] for i in ends]),
                mode="markers",
                marker={"symbol": _ENDPOINT_SYMBOL, "size": 11, "color": colour, "line": {"width": 1}},
                name=f"{split} endpoints",
                legendgroup=split,
                showlegend=False,
                hoverinfo="skip",
                meta=_meta("endpoints", curve, split, panel),
            ),
            row=1,
            col=col,
        )


def _add_barrier(fig: go.Figure, points: pd.DataFrame, summary: pd.DataFrame, *, split: str, colour: str) -> None:
    """A star at the worst loss barrier of one split's vary-all path, as reported by ``summary``."""
    _check_columns(
        summary,
        (
            "curve",
            "split",
            "barrier_linear",
            "barrier_linear_alpha",
            "barrier_max",
            "barrier_max_alpha",
            "delta",
        ),
        "summary",
    )
    rows = summary[(summary["curve"] == ALL) & (summary["split"] == split)]
    if rows.empty:
        return
    row = rows.iloc[0]
    b_lin, b_max, delta = (float(row[k]) for k in ("barrier_linear", "barrier_max", "delta"))
    if b_max > 0:
        at, kind = float(row["barrier_max_alpha"]), "B_max"
    elif b_lin > 0:
        at, kind = float(row["barrier_linear_alpha"]), "B_lin"
    else:
        return  # no barrier on either definition: a marker would only point at an endpoint
    if not math.isfinite(at):
        return

    alphas = np.asarray(_floats(points["alpha"]))
    losses = np.asarray(_floats(points["loss"]))
    hit = np.flatnonzero(np.isclose(alphas, at, rtol=0.0, atol=1e-9))
    if hit.size:
        y = float(losses[hit[0]])
    else:  # the summary's α is off this grid (e.g. a refined grid); read the curve between its points
        finite = np.isfinite(losses)
        y = float(np.interp(at, alphas[finite], losses[finite])) if finite.any() else math.nan
    if not math.isfinite(y):
        return

    text = "<br>".join(
        [
            f"worst barrier ({kind}) · {split}",
            f"α={_fmt(at)}",
            f"loss={_fmt(y)}",
            f"B_lin={_fmt(b_lin)}",
            f"B_max={_fmt(b_max)}",
            f"Δ={_fmt(delta)}",
        ]
    )
    fig.add_trace(
        go.Scatter(
            x=[at],
            y=[y],
            mode="markers",
            marker={"symbol": _BARRIER_SYMBOL, "size": 16, "color": colour, "line": {"width": 1}},
            name=f"{split} barrier",
            legendgroup=split,
            showlegend=False,
            hovertext=[text],
            hovertemplate="%{hovertext}<extra></extra>",
            meta=_meta("barrier", ALL, split, "loss"),
        ),
        row=1,
        col=1,
    )


def _add_group(fig: go.Figure, points: pd.DataFrame, *, group: str, split: str, colour: str) -> None:
    """One per-group curve on the loss panel (no band or markers: kept simple, the vary-all line has them)."""
    fig.add_trace(
        go.Scatter(
            x=_floats(points["alpha"]),
            y=_plottable(_floats(points["loss"])),
            mode="lines+markers",
            line={"color": colour},
            marker={"size": 4},
            name=group,
            legendgroup=f"group:{group}",
            showlegend=True,
            hovertext=_hover_texts(points, group, split),
            hovertemplate="%{hovertext}<extra></extra>",
            meta=_meta("line", group, split, "loss"),
        ),
        row=1,
        col=1,
    )

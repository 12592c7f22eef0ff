"""Figures of scans: loss and accuracy along the path for one run or several overlaid, the layer-wise rows and
heatmap, the compare scatter plots, and their HTML fragments and static export.

Reads the tidy ``results``/``summary`` DataFrames (a ``run`` column tells runs apart) and compare's tables; the
only number it derives is where Δ happens, through ``metrics.largest_rise``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative
from plotly.subplots import make_subplots

from .atomic import write_atomic
from .errors import OutputError, UsageError, opt
from .metrics import Rise, largest_rise
from .optional import install_hint
from .paths import to_position
from .schema import RESULT_REQUIRED, WHOLE_PATH

ALL = "all"
"""The ``curve`` value of the whole-network ("vary all") path."""

RUN = "run"
_SPAN = "_segments"  # a helper column: the number of segments of the row's run
"""The optional column of ``results``/``summary`` that tells overlaid runs apart."""

REQUIRED_COLUMNS = RESULT_REQUIRED
PLOTLYJS_MODES = ("inline", "cdn", "directory")
STATIC_FORMATS = ("png", "svg")

# Known splits first, in the order a reader expects; any other split follows in order of appearance.
_SPLIT_ORDER = ("train", "test")
_SPLIT_COLOURS = qualitative.Plotly  # one run: train blue, test red, ...
_RUN_COLOURS = qualitative.Plotly  # several runs: a colour per run ...
_SPLIT_DASHES = {"test": "solid", "train": "dot"}  # ... and a dash per split
_OTHER_DASHES = ("dash", "dashdot", "longdash")
# Group colours: Dark2, then D3 for a deeper split, without their greys (grey is the dashed vary-all reference).
_GROUP_COLOURS = [c for c in (*qualitative.Dark2, *qualitative.D3) if c not in ("rgb(102,102,102)", "#7F7F7F")]
_ENDPOINT_SYMBOL = "diamond"
_BARRIER_SYMBOL = "star"
_RISE_SYMBOL = "triangle-up"
_BAND_OPACITY = 0.18
_VARY_ALL_COLOUR = "#555555"  # the whole-network reference among the group lines: dashed grey
_HEATMAP_COLOURS = "Viridis"  # high loss bright yellow, low loss dark
_ROW_HEIGHT_PX = 420
_ROW_GAP_PX = 110  # room for one row's α axis title and the next row's subplot titles
_ONE_ROW_HEIGHT_PX = 480  # plotly's default 450, plus room for the log-y buttons
_COMPARE_ROW_HEIGHT_PX = 320
_COMPARE_ROW_GAP_PX = 90

# Subplot titles of a group row: what moves, and where the rest of the network stays.
_VARIANT_TEXT = {
    ("final", "only"): "each group moves, others at final",
    ("init", "only"): "each group moves, others at init",
    ("final", "all-but"): "all but the group move, it stays at final",
    ("init", "all-but"): "all but the group move, it stays at init",
}


def warm_up() -> None:
    """Load what drawing a figure loads on first use (plotly imports its property validators lazily, about half
    a second): ``interpscan run`` calls it in a background thread while the scan computes, so that the page
    costs little once the numbers are in. Draws nothing, changes nothing."""
    fig = make_subplots(rows=2, cols=2)
    fig.add_trace(go.Scatter(x=[0.0, 1.0], y=[0.0, 1.0], mode="lines+markers", fill="tonexty"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=[[0.0]]), row=2, col=1)
    fig.update_layout(title_text="", legend_orientation="h", hovermode="x unified", updatemenus=[{"buttons": []}])
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(type="log")
    fig.add_vline(x=0.5)
    go.Figure(fig).to_json()


def path_figure(results: pd.DataFrame, summary: pd.DataFrame | None = None, *, title: str | None = None) -> go.Figure:
    """Plot loss (and accuracy) against α for every split and run, with endpoints, barrier and Δ, and the
    layer-wise curves.

    Row 1, the whole network (``curve == "all"``): left, loss vs α with a shaded ±1 standard error band,
    diamonds at α=0 and α=1, a star at the worst barrier and a dotted bar over the largest rise Δ (hover text
    gives their values); right (only when some accuracy is not NaN), accuracy vs α. One run: a colour per split.
    Several runs (``results[RUN]`` holds two or more labels): a colour per run and a dash per split (test
    solid, train dotted), one legend entry per (run, split). Non-finite losses (NaN, ±inf) leave a gap in the
    line; the hover text still shows them.

    When the results hold group curves (any ``curve`` other than ``"all"``), each (``hold``, ``mode``) pair
    among them adds a row of loss vs α, one panel per split: the run's whole-network curve dashed grey ("vary
    all") and one line per group. A group keeps its colour in every panel and has one legend entry, so
    clicking it hides or shows the group everywhere. With two or more groups a heatmap row follows (group × α,
    colour = loss) for the ``test`` split if the groups have one, else their first split. When several runs
    have groups, a drop-down above the first group row selects whose groups are shown (the first run's at
    first).

    Every loss axis switches between linear and log with the buttons above the legend; every α axis zooms
    and pans with the others (``figure_html`` adds an α cursor drawn in every panel at once).

    Args:
        results: Tidy rows with columns ``curve``, ``split``, ``alpha``, ``loss``, ``loss_se``, ``accuracy``
            (in [0, 1], or NaN when the task has none) and ``n``; optional ``hold`` (``"final"``/``"init"``)
            and ``mode`` (``"only"``/``"all-but"``), empty or NaN on the whole-network rows (as read back from
            CSV); optional ``run`` (a label per run, in the order runs should be drawn); other columns are
            ignored.
        summary: Optional per-(curve, split) metrics, with a ``run`` column when ``results`` holds several
            runs. For each run and split, the ``"all"`` row's barrier marker sits at ``barrier_max_alpha`` when
            ``barrier_max > 0``, else at ``barrier_linear_alpha`` when ``barrier_linear > 0``; with no positive
            barrier (or no summary) there is no star. The Δ bar comes from the results themselves.
        title: Figure title; none when omitted.

    Returns:
        A Plotly figure (template ``plotly_white``, hovermode ``x unified``, about 420 px per row when there
        is more than one). Every trace's ``meta`` is a dict ``{"role": ..., "run": ..., "curve": ...,
        "split": ..., "panel": ...}`` (``run`` is ``""`` without a ``run`` column) so callers can find traces
        without relying on their order: roles ``"line"``, ``"band"``, ``"endpoints"``, ``"barrier"`` and
        ``"rise"`` on panels ``"loss"`` and ``"accuracy"`` (row 1); ``"vary-all"`` and ``"group-line"`` on
        panel ``"groups"``, and ``"heatmap"`` (curve ``""``) on panel ``"heatmap"``, these three also carrying
        ``"hold"`` and ``"mode"``.

    Raises:
        UsageError: ``results`` lacks a required column or has no rows, or ``summary`` lacks a column it needs.
    """
    _check_columns(results, REQUIRED_COLUMNS, "results")
    if results.empty:
        raise UsageError("results has no rows: nothing to plot", hint="run a scan first")
    results = _normalised(results)
    runs = [str(r) for r in pd.unique(results[RUN])]
    several = len(runs) > 1
    if summary is not None:
        summary = _normalised_summary(summary, several)
    segments = int(results[_SPAN].max())
    if segments > 1:
        results, summary = _along_path(results, summary)
    variants = _variants(results)
    has_accuracy = bool(pd.to_numeric(results["accuracy"], errors="coerce").notna().any())

    plan = _plan_rows(variants, has_accuracy)
    rows, cols = len(plan), max(len(titles) for _, _, titles in plan)
    height = _ROW_HEIGHT_PX * rows if rows > 1 else _ONE_ROW_HEIGHT_PX
    fig = make_subplots(
        rows=rows,
        cols=cols,
        specs=[_row_spec(len(titles), cols) for _, _, titles in plan],
        subplot_titles=[t for _, _, titles in plan for t in titles],
        horizontal_spacing=0.08,
        vertical_spacing=_ROW_GAP_PX / (_ROW_HEIGHT_PX * rows),
    )
    _add_whole_network(fig, results, summary, runs, has_accuracy=has_accuracy)
    group_runs = _add_group_rows(fig, results, plan, runs)
    _mark_checkpoints(fig, results, segments)

    fig.update_xaxes(title_text="t (checkpoint i at t = i; segment − 1 + α)" if segments > 1 else "α")
    # Zoom into the cliff in one panel and every panel follows.
    fig.update_xaxes(matches="x")
    fig.layout.xaxis.matches = None
    fig.update_yaxes(title_text="loss", row=1, col=1)
    if has_accuracy:
        fig.update_yaxes(title_text="accuracy", range=[0.0, 1.0], row=1, col=2)
    menus = [_log_y_menu(fig, height)]
    if len(group_runs) >= 2:
        first_group_row = next(row for row, (kind, _, _) in enumerate(plan, start=1) if kind == "groups")
        menus.append(_run_menu(fig, group_runs, first_group_row, height))
    fig.update_layout(
        template="plotly_white",
        hovermode="x unified",
        legend_title_text=("run · split" if several else "split") + (" / group" if variants else ""),
        updatemenus=menus,
        margin={"t": 110},
    )
    if rows > 1:
        fig.update_layout(height=height)
    if title is not None:
        fig.update_layout(title_text=title)
    return fig


_Row = tuple[str, "_Variant | None", list[str]]  # kind (whole, groups, heatmap), its variant, a title per panel


def _plan_rows(variants: Sequence[_Variant], has_accuracy: bool) -> list[_Row]:
    """path_figure's rows, top to bottom: the whole network, then per variant its group row and heatmap."""
    plan: list[_Row] = [("whole", None, ["loss", "accuracy"] if has_accuracy else ["loss"])]
    for v in variants:
        plan.append(("groups", v, [f"{split}: {v.text}" for split in v.splits]))
        if v.heatmap_runs:
            plan.append(("heatmap", v, [f"{v.heatmap_split} loss by group and α ({v.text})"]))
    return plan


def _add_whole_network(
    fig: go.Figure, results: pd.DataFrame, summary: pd.DataFrame | None, runs: Sequence[str], *, has_accuracy: bool
) -> None:
    """Row 1: each run's whole-network loss (and accuracy) per split, with endpoints, barrier and rise."""
    several = len(runs) > 1
    splits = _split_order(results["split"])
    for k, run in enumerate(runs):
        of_run = results[results[RUN] == run]
        run_summary = None if summary is None else summary[summary[RUN] == run] if several else summary
        for i, split in enumerate(splits):
            points = _curve(of_run, ALL, split)
            if points.empty:
                continue
            if several:
                style = _Style(
                    run=run,
                    colour=_RUN_COLOURS[k % len(_RUN_COLOURS)],
                    dash=_split_dash(split, splits),
                    name=f"{run} · {split}",
                    label=f"{run} · ",
                )
            else:
                style = _Style(run=run, colour=_SPLIT_COLOURS[i % len(_SPLIT_COLOURS)], dash="solid", name=split)
            _add_path(fig, points, split=split, style=style, col=1, legend=True)
            if has_accuracy:
                _add_path(fig, points, split=split, style=style, col=2, legend=False)
            if run_summary is not None:
                _add_barrier(fig, points, run_summary, split=split, style=style)
            _add_rise(fig, points, split=split, style=style, summary=run_summary)


def _add_group_rows(fig: go.Figure, results: pd.DataFrame, plan: Sequence[_Row], runs: Sequence[str]) -> list[str]:
    """The group rows and heatmaps of every run that has groups, the first run's visible; returns those runs."""
    variants = [variant for kind, variant, _ in plan if kind == "groups" and variant is not None]
    # A group's colour comes from its first appearance in the results, so it is the same in every row and run.
    all_groups = list(dict.fromkeys(g for v in variants for groups in v.groups.values() for g in groups))
    colours = {g: _GROUP_COLOURS[j % len(_GROUP_COLOURS)] for j, g in enumerate(all_groups)}
    group_runs = [r for r in runs if any(r in v.groups for v in variants)]
    shown = group_runs[0] if group_runs else None
    legend_shown: dict[str, set[str]] = {r: set() for r in group_runs}
    for row, (kind, variant, _) in enumerate(plan, start=1):
        if variant is None:
            continue
        for run in group_runs:
            if kind == "groups" and run in variant.groups:
                _add_group_row(
                    fig,
                    results,
                    variant,
                    run=run,
                    label=f"{run} · " if len(runs) > 1 else "",
                    row=row,
                    colours=colours,
                    legend_shown=legend_shown[run],
                    visible=run == shown,
                )
            elif kind == "heatmap" and run in variant.heatmap_runs:
                _add_heatmap(fig, results, variant, run=run, row=row, visible=run == shown)
    return group_runs


def _mark_checkpoints(fig: go.Figure, results: pd.DataFrame, segments: int) -> None:
    """Dotted lines where the checkpoints sit: at t = i on a path through several, else at α=0 and α=1 when the
    grid extrapolates beyond them."""
    alphas = pd.to_numeric(results["alpha"], errors="coerce")
    if segments > 1:
        for i in range(segments + 1):
            fig.add_vline(x=i, line_dash="dot", line_color="grey", line_width=1, row="all", col="all")
            fig.add_annotation(
                x=i, y=1.0, yref="paper", text=f"c{i}", showarrow=False, yshift=8, font={"color": "grey"}
            )
    elif alphas.min() < 0.0 or alphas.max() > 1.0:
        for x in (0.0, 1.0):
            fig.add_vline(x=x, line_dash="dot", line_color="grey", line_width=1, row="all", col="all")


def compare_figure(
    table: pd.DataFrame,
    correlations: pd.DataFrame,
    *,
    metrics: Sequence[tuple[str, str]],
    outcomes: Sequence[tuple[str, str]],
    title: str | None = None,
) -> go.Figure:
    """Scatter plots of each shape metric against each outcome across runs, with their rank correlation.

    One row per metric, one column per outcome; in each panel a point per run (a colour per run, labelled),
    whose hover text gives both values. The subplot title gives Spearman's ρ and the number of runs it is
    computed on.

    Args:
        table: One row per run: a ``run`` column and a column per metric and outcome (booleans plot as 0/1).
        correlations: Rows with ``metric``, ``outcome``, ``n`` and ``spearman`` (NaN where undefined).
        metrics: (column, axis label) per metric, top to bottom.
        outcomes: (column, axis label) per outcome, left to right.
        title: Figure title; none when omitted.

    Returns:
        A Plotly figure; every trace's ``meta`` is ``{"role": "run-point", "run": ..., "metric": ...,
        "outcome": ..., "panel": "compare"}``.

    Raises:
        UsageError: ``table`` lacks the ``run`` column or a metric or outcome column, or nothing is asked for.
    """
    if not metrics or not outcomes:
        raise UsageError("compare_figure needs at least one metric and one outcome")
    _check_columns(table, [RUN, *(c for c, _ in metrics), *(c for c, _ in outcomes)], "table")
    _check_columns(correlations, ("metric", "outcome", "n", "spearman"), "correlations")
    rho = {
        (str(r["metric"]), str(r["outcome"])): (float(r["spearman"]), int(r["n"])) for _, r in correlations.iterrows()
    }

    def panel_title(metric: tuple[str, str], outcome: tuple[str, str]) -> str:
        value, n = rho.get((metric[0], outcome[0]), (math.nan, 0))
        text = f"ρ = {value:+.2f}" if math.isfinite(value) else "ρ undefined"
        return f"{metric[1]} vs {outcome[1]}: {text} (n={n})"

    rows = len(metrics)
    fig = make_subplots(
        rows=rows,
        cols=len(outcomes),
        subplot_titles=[panel_title(m, o) for m in metrics for o in outcomes],
        horizontal_spacing=0.1,
        vertical_spacing=_COMPARE_ROW_GAP_PX / (_COMPARE_ROW_HEIGHT_PX * rows),
    )
    runs = [str(r) for r in table[RUN]]
    for row, (metric, metric_label) in enumerate(metrics, start=1):
        xs = _floats(table[metric])
        for col, (outcome, outcome_label) in enumerate(outcomes, start=1):
            ys = _floats(table[outcome])
            for k, (run, x, y) in enumerate(zip(runs, xs, ys, strict=True)):
                colour = _RUN_COLOURS[k % len(_RUN_COLOURS)]
                fig.add_trace(
                    go.Scatter(
                        x=_plottable([x]),
                        y=_plottable([y]),
                        mode="markers+text",
                        text=[run],
                        textposition="top center",
                        cliponaxis=False,  # a label over the highest point may stand above the axes
                        marker={"size": 12, "color": colour, "line": {"width": 1, "color": "white"}},
                        name=run,
                        legendgroup=f"run:{run}",
                        showlegend=row == 1 and col == 1,
                        hovertext=[f"{run}<br>{metric_label}={_fmt(x)}<br>{outcome_label}={_fmt(y)}"],
                        hovertemplate="%{hovertext}<extra></extra>",
                        meta={
                            "role": "run-point",
                            "run": run,
                            "metric": metric,
                            "outcome": outcome,
                            "panel": "compare",
                        },
                    ),
                    row=row,
                    col=col,
                )
            fig.update_xaxes(title_text=metric_label, row=row, col=col)
            fig.update_yaxes(title_text=outcome_label, row=row, col=col)
            if pd.api.types.is_bool_dtype(table[metric]):
                fig.update_xaxes(tickvals=[0, 1], ticktext=["no", "yes"], range=[-0.5, 1.5], row=row, col=col)
    fig.update_layout(
        template="plotly_white",
        hovermode="closest",
        height=max(_COMPARE_ROW_HEIGHT_PX * rows, _ONE_ROW_HEIGHT_PX),
        legend_title_text="run",
    )
    if title is not None:
        fig.update_layout(title_text=title)
    return fig


def figure_html(fig: go.Figure, div_id: str) -> str:
    """The figure as an HTML fragment for a page that loads plotly.js itself (see ``plotlyjs_html``).

    The div gets the fixed id ``div_id`` (deterministic output) and the figure's height (480 px when it sets
    none); the figure's title is left to the page's heading. A script links the α panels: hovering one draws
    a dotted line at the hovered α in all of them.
    """
    fig = go.Figure(fig)  # a copy: the page's heading carries the title, the figure need not repeat it
    fig.update_layout(title_text=None, margin_t=90)  # room for the log-y buttons under plotly's toolbar
    height = fig.layout.height or _ONE_ROW_HEIGHT_PX
    html: str = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_height=f"{height}px",
        default_width="100%",
        post_script=_linked_hover_script(fig),
        config={"displaylogo": False, "responsive": True},
    )
    return html


def plotlyjs_html(mode: str) -> str:
    """The ``<script>`` that loads plotly.js: ``inline`` (the library itself, about 4.8 MB; the page works
    offline), ``cdn`` (a link to cdn.plot.ly; needs a network) or ``directory`` (``plotly.min.js`` beside the
    page, see ``report.page_files``).

    Raises:
        UsageError: an unknown mode.
    """
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    if mode == "inline":
        # "</script" cannot occur inside an inline script; plotly.js has none, but be sure.
        source = get_plotlyjs().replace("</script", "<\\/script")
        return f'<script type="text/javascript">{source}</script>'
    if mode == "cdn":
        return f'<script charset="utf-8" src="https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"></script>'
    if mode == "directory":
        return '<script charset="utf-8" src="plotly.min.js"></script>'
    raise UsageError(f"{opt('plotlyjs', mode)} is not one of {', '.join(PLOTLYJS_MODES)}")


def write_html(fig: go.Figure, path: pathlib.Path, *, include_plotlyjs: bool | str = True) -> None:
    """Write ``fig`` alone to ``path`` as HTML, atomically: a temp sibling is written, then renamed over ``path``.

    Args:
        fig: The figure to write.
        path: Destination file; an existing file is replaced. Its directory must exist.
        include_plotlyjs: Passed to Plotly: ``True`` (default) inlines plotly.js so the file works offline;
            ``"cdn"`` links it instead (much smaller file, needs a network to view).
    """
    path = pathlib.Path(path)
    html = fig.to_html(include_plotlyjs=include_plotlyjs, full_html=True)
    write_atomic(path, html)


def check_static_export() -> None:
    """Raise unless a static image can be written: that needs the optional package kaleido.

    Raises:
        UsageError: kaleido is not installed (the message says how to get it).
    """
    if importlib.util.find_spec("kaleido") is None:
        raise UsageError(
            "static export (--png/--svg) needs kaleido, which is not installed",
            hint=f"{install_hint('kaleido')}; it drives a Chrome or Chromium it finds or installs; "
            "or open the HTML page and use the camera icon of the figure's toolbar",
        )


def write_static(fig: go.Figure, path: pathlib.Path, *, width: int = 1400) -> None:
    """Write ``fig`` as PNG or SVG (from ``path``'s suffix) with kaleido, atomically.

    Raises:
        UsageError: kaleido is missing, or the suffix is not .png or .svg.
        OutputError: kaleido failed (e.g. it found no browser to render with).
    """
    write_atomic(pathlib.Path(path), static_image(fig, pathlib.Path(path).suffix.lower().lstrip("."), width=width))


def static_image(fig: go.Figure, fmt: str, *, width: int = 1400) -> bytes:
    """``fig`` as a PNG or SVG file's bytes (``fmt``: png or svg), drawn by kaleido.

    Raises:
        UsageError: kaleido is missing, or ``fmt`` is not png or svg.
        OutputError: kaleido failed (e.g. it found no browser to render with).
    """
    if fmt not in STATIC_FORMATS:
        raise UsageError(f"cannot export {fmt!r}: static export writes {' or '.join(STATIC_FORMATS)}")
    check_static_export()
    height = fig.to_dict()["layout"].get("height", _ONE_ROW_HEIGHT_PX)
    try:
        image: bytes = fig.to_image(format=fmt, width=width, height=height)
    except (RuntimeError, ValueError, OSError) as exc:
        raise OutputError(f"kaleido could not write {fmt}: {exc}", hint="check the kaleido installation") from exc
    return image


# --- helpers -----------------------------------------------------------------------------------------------


def _check_columns(frame: pd.DataFrame, required: Sequence[str], name: str) -> None:
    missing = sorted(set(required) - set(frame.columns))
    if missing:
        raise UsageError(
            f"{name} lacks column(s) {', '.join(missing)}; has {', '.join(map(str, frame.columns))}",
            hint=f"pass the {name} DataFrame produced by interpscan",
        )


def _labels(values: pd.Series[Any] | None, index: pd.Index[Any]) -> list[str]:
    """Strings, with "" where a value is empty or NaN (read_csv turns empty labels into NaN)."""
    if values is None:
        return [""] * len(index)
    return ["" if pd.isna(v) else str(v) for v in values]


def _normalised(results: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``curve``/``split`` as strings and ``hold``/``mode``/``run`` as strings, "" where empty, and
    each row's run's number of segments (1 without a ``segment`` column) in ``_SPAN``."""
    out = results.copy()
    for column in ("curve", "split"):
        out[column] = out[column].astype(str)
    for column in ("hold", "mode", RUN):
        # Older results lack hold/mode; results of one run need no run column.
        out[column] = _labels(out[column] if column in out.columns else None, out.index)
    if "segment" in out.columns:
        segment = pd.to_numeric(out["segment"], errors="coerce").fillna(1).astype(int)
        out[_SPAN] = segment.groupby(out[RUN]).transform("max")
    else:
        out[_SPAN] = 1
    return out


def _along_path(results: pd.DataFrame, summary: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Results drawn against t, the position along a path through several checkpoints (``alpha`` := t; points
    extrapolated beyond a segment's checkpoints left out, as the whole path's metrics leave them), and of the
    summary the rows that describe each run's whole path: segment WHOLE_PATH where a run has it (its α columns
    hold t), else its only segment."""
    alpha = pd.to_numeric(results["alpha"], errors="coerce")
    results = results[(alpha >= 0.0) & (alpha <= 1.0)].copy()
    results["alpha"] = pd.to_numeric(results["t"], errors="coerce")
    if summary is not None and "segment" in summary.columns:
        segment = pd.to_numeric(summary["segment"], errors="coerce")
        whole = (segment == WHOLE_PATH).groupby(summary[RUN]).transform("any")
        summary = summary[(segment == WHOLE_PATH) | ~whole]
    return results, summary


def _normalised_summary(summary: pd.DataFrame, several: bool) -> pd.DataFrame:
    if several and RUN not in summary.columns:
        raise UsageError(
            "summary lacks a run column, and the results hold several runs",
            hint="concatenate the runs' summaries with a run column, as for the results",
        )
    out = summary.copy()
    out["curve"] = out["curve"].astype(str)
    out["split"] = out["split"].astype(str)
    out[RUN] = _labels(out[RUN] if RUN in out.columns else None, out.index)
    return out


@dataclass(frozen=True)
class _Style:
    """How one run's whole-network lines look: a colour, a dash, a legend name, and a prefix for hover text."""

    run: str
    colour: str
    dash: str
    name: str
    label: str = ""  # "run · " when several runs share the figure


@dataclass(frozen=True)
class _Variant:
    """The group curves that share one (hold, mode): one row of line panels and, with ≥ 2 groups in some run,
    a heatmap."""

    hold: str
    mode: str
    groups: dict[str, list[str]]  # run -> its groups, in order of appearance in the results
    splits: list[str]  # in _split_order, over all runs

    @property
    def text(self) -> str:
        known = _VARIANT_TEXT.get((self.hold, self.mode))
        if known is not None:
            return known
        labels = [f"hold {self.hold}" if self.hold else "", f"mode {self.mode}" if self.mode else ""]
        return ", ".join(label for label in labels if label) or "each group's curve"

    @property
    def heatmap_runs(self) -> list[str]:
        return [run for run, groups in self.groups.items() if len(groups) >= 2]

    @property
    def heatmap_split(self) -> str:
        return "test" if "test" in self.splits else self.splits[0]


def _variants(results: pd.DataFrame) -> list[_Variant]:
    """The group curves' (hold, mode) pairs in order of appearance; none when the results hold only ``all``."""
    groups = results[results["curve"] != ALL]
    variants = []
    for hold, mode in dict.fromkeys(zip(groups["hold"], groups["mode"], strict=True)):
        rows = groups[(groups["hold"] == hold) & (groups["mode"] == mode)]
        per_run = {
            str(run): [str(c) for c in pd.unique(of_run["curve"])] for run, of_run in rows.groupby(RUN, sort=False)
        }
        variants.append(_Variant(str(hold), str(mode), per_run, _split_order(rows["split"])))
    return variants


def _row_spec(panels: int, cols: int) -> list[dict[str, Any] | None]:
    """make_subplots specs of one row: a lone panel spans the row; otherwise unused cells stay empty."""
    if panels == 1:
        return [{"colspan": cols}] + [None] * (cols - 1)
    return [{} for _ in range(panels)] + [None] * (cols - panels)


def _split_order(splits: pd.Series[Any]) -> list[str]:
    seen = [str(s) for s in pd.unique(splits)]
    known = [s for s in _SPLIT_ORDER if s in seen]
    return known + [s for s in seen if s not in known]


def _split_dash(split: str, splits: Sequence[str]) -> str:
    if split in _SPLIT_DASHES:
        return _SPLIT_DASHES[split]
    others = [s for s in splits if s not in _SPLIT_DASHES]
    return _OTHER_DASHES[others.index(split) % len(_OTHER_DASHES)]


def _curve(results: pd.DataFrame, curve: str, split: str) -> pd.DataFrame:
    """One curve's rows for one split, sorted by α."""
    rows = results[(results["curve"] == curve) & (results["split"] == split)]
    return rows.sort_values("alpha", kind="stable").reset_index(drop=True)


def _floats(values: pd.Series[Any]) -> list[float]:
    """Floats, NaN where missing; booleans as 0/1."""
    if pd.api.types.is_bool_dtype(values):
        values = values.astype("Float64")
    return [float(v) for v in pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)]


def _plottable(values: Sequence[float]) -> list[float | None]:
    """NaN and ±inf become None: a gap in the line rather than a broken axis range."""
    return [v if math.isfinite(v) else None for v in values]


def _fmt(value: float, spec: str = ".4g") -> str:
    return format(value, spec) if math.isfinite(value) else str(value)


def _hover_texts(points: pd.DataFrame, curve: str, split: str, label: str = "") -> list[str]:
    alphas, losses = _floats(points["alpha"]), _floats(points["loss"])
    ses, accs = _floats(points["loss_se"]), _floats(points["accuracy"])
    ns = points["n"].tolist()
    axis = "t" if _span(points) > 1 else "α"
    texts = []
    for a, loss, se, acc, n, refined in zip(alphas, losses, ses, accs, ns, _refined(points), strict=True):
        parts = [f"{label}{curve} · {split}", f"{axis}={_fmt(a)}" + (" (refined)" if refined else "")]
        parts.append(f"loss={_fmt(loss)} ± {_fmt(se, '.2g')}" if math.isfinite(se) else f"loss={_fmt(loss)}")
        if not math.isnan(acc):
            parts.append(f"accuracy={acc:.2%}")
        parts.append(f"n={n}")
        texts.append("<br>".join(parts))
    return texts


def _span(points: pd.DataFrame) -> int:
    """The number of segments of the path these points lie on (1 without a segment column)."""
    return int(points[_SPAN].iloc[0]) if _SPAN in points.columns and len(points) else 1


def _refined(points: pd.DataFrame) -> list[bool]:
    """Which points --refine added (none in results from before the column)."""
    if "refined" not in points.columns:
        return [False] * len(points)
    return [value is True or (isinstance(value, (bool, np.bool_)) and bool(value)) for value in points["refined"]]


def _rgba(colour: str, opacity: float) -> str:
    r, g, b = hex_to_rgb(colour)
    return f"rgba({r}, {g}, {b}, {opacity})"


def _meta(role: str, run: str, curve: str, split: str, panel: str, variant: _Variant | None = None) -> dict[str, str]:
    meta = {"role": role, "run": run, "curve": curve, "split": split, "panel": panel}
    if variant is not None:
        meta.update(hold=variant.hold, mode=variant.mode)
    return meta


def _add_path(fig: go.Figure, points: pd.DataFrame, *, split: str, style: _Style, col: int, legend: bool) -> None:
    """One run's and split's vary-all line on one panel: SE band (loss only), line with markers, endpoints."""
    panel = "loss" if col == 1 else "accuracy"
    alphas = _floats(points["alpha"])
    ys = _floats(points["loss"] if panel == "loss" else points["accuracy"])
    texts = _hover_texts(points, ALL, split, style.label)
    group = style.name if style.label else split

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
                        line={"width": 0, "color": style.colour},
                        fill=fill,
                        fillcolor=_rgba(style.colour, _BAND_OPACITY),
                        hoverinfo="skip",
                        showlegend=False,
                        legendgroup=group,
                        name=f"{style.name} ±1 SE",
                        meta=_meta("band", style.run, ALL, split, panel),
                    ),
                    row=1,
                    col=col,
                )

    fig.add_trace(
        go.Scatter(
            x=alphas,
            y=_plottable(ys),
            mode="lines+markers",
            line={"color": style.colour, "dash": style.dash},
            # points --refine added are hollow
            marker={"size": 5, "symbol": ["circle-open" if r else "circle" for r in _refined(points)]},
            name=style.name,
            legendgroup=group,
            showlegend=legend,
            hovertext=texts,
            hovertemplate="%{hovertext}<extra></extra>",
            meta=_meta("line", style.run, ALL, split, panel),
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
                marker={"symbol": _ENDPOINT_SYMBOL, "size": 11, "color": style.colour, "line": {"width": 1}},
                name=f"{style.name} endpoints",
                legendgroup=group,
                showlegend=False,
                hoverinfo="skip",
                meta=_meta("endpoints", style.run, ALL, split, panel),
            ),
            row=1,
            col=col,
        )


def _loss_at(points: pd.DataFrame, at: float) -> float:
    """The curve's loss at ``at``: the grid point's, or read between grid points when ``at`` is off the grid."""
    alphas = np.asarray(_floats(points["alpha"]))
    losses = np.asarray(_floats(points["loss"]))
    hit = np.flatnonzero(np.isclose(alphas, at, rtol=0.0, atol=1e-9))
    if hit.size:
        return float(losses[hit[0]])
    finite = np.isfinite(losses)
    return float(np.interp(at, alphas[finite], losses[finite])) if finite.any() else math.nan


def _ci(row: Any, metric: str) -> str:
    """`` [95% CI a – b]`` from a summary row's bootstrap interval of ``metric``; "" when it has none."""
    try:
        low, high = float(row[f"{metric}_ci_low"]), float(row[f"{metric}_ci_high"])
    except (KeyError, TypeError, ValueError):
        return ""
    return f" [95% CI {_fmt(low)} – {_fmt(high)}]" if math.isfinite(low) and math.isfinite(high) else ""


def _summary_row(summary: pd.DataFrame | None, split: str) -> Any:
    if summary is None or not {"curve", "split"} <= set(summary.columns):
        return None
    rows = summary[(summary["curve"] == ALL) & (summary["split"] == split)]
    return None if rows.empty else rows.iloc[0]


def _add_barrier(fig: go.Figure, points: pd.DataFrame, summary: pd.DataFrame, *, split: str, style: _Style) -> None:
    """A star at the worst loss barrier of one split's vary-all path, as reported by ``summary``."""
    _check_columns(
        summary,
        ("curve", "split", "barrier_linear", "barrier_linear_alpha", "barrier_max", "barrier_max_alpha", "delta"),
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
    y = _loss_at(points, at)
    if not math.isfinite(y):
        return

    text = "<br>".join(
        [
            f"{style.label}worst barrier ({kind}) · {split}",
            f"α={_fmt(at)}",
            f"loss={_fmt(y)}",
            f"B_lin={_fmt(b_lin)}{_ci(row, 'barrier_linear')}",
            f"B_max={_fmt(b_max)}{_ci(row, 'barrier_max')}",
            f"Δ={_fmt(delta)}{_ci(row, 'delta')}",
        ]
    )
    fig.add_trace(
        go.Scatter(
            x=[at],
            y=[y],
            mode="markers",
            marker={"symbol": _BARRIER_SYMBOL, "size": 16, "color": style.colour, "line": {"width": 1}},
            name=f"{style.name} barrier",
            legendgroup=style.name if style.label else split,
            showlegend=False,
            hovertext=[text],
            hovertemplate="%{hovertext}<extra></extra>",
            meta=_meta("barrier", style.run, ALL, split, "loss"),
        ),
        row=1,
        col=1,
    )


def _significance(row: Any) -> str:
    try:
        significant = row["rise_significant"]
    except (KeyError, TypeError):
        return ""
    if significant is None or significant is pd.NA or (isinstance(significant, float) and math.isnan(significant)):
        return ""
    return (
        "<br>a real rise: its interval lies above 0"
        if bool(significant)
        else "<br>within noise: its interval reaches 0"
    )


def _add_rise(
    fig: go.Figure, points: pd.DataFrame, *, split: str, style: _Style, summary: pd.DataFrame | None = None
) -> None:
    """A dotted bar over the largest rise Δ of one split's vary-all path: from the lowest loss before it (at the
    top's α) up to the top, a triangle at the top. None when the path never rises within [0, 1]. The hover text
    gives Δ's bootstrap interval and whether the rise is significant, when ``summary`` has them."""
    span = _span(points)
    try:  # on a path through several checkpoints Δ is the whole path's, found on u = t/m (paths.py)
        rise = largest_rise([t / span for t in _floats(points["alpha"])], _floats(points["loss"]))
    except ValueError:  # a grid without α=0 or α=1 (a filtered CSV): Δ is not defined
        return
    rise = Rise(rise.height, to_position(rise.start_alpha, span), to_position(rise.end_alpha, span))
    if not (math.isfinite(rise.height) and rise.height > 0):
        return
    low, top = _loss_at(points, rise.start_alpha), _loss_at(points, rise.end_alpha)
    row = _summary_row(summary, split)
    text = "<br>".join(
        [
            f"{style.label}largest rise Δ · {split}",
            f"Δ={_fmt(rise.height)}{_ci(row, 'delta')}" + _significance(row),
            f"from loss {_fmt(low)} at α={_fmt(rise.start_alpha)}",
            f"to loss {_fmt(top)} at α={_fmt(rise.end_alpha)}",
        ]
    )
    fig.add_trace(
        go.Scatter(
            x=[rise.end_alpha, rise.end_alpha],
            y=[low, top],
            mode="lines+markers",
            line={"color": style.colour, "dash": "dot", "width": 2},
            marker={"symbol": ["line-ew", _RISE_SYMBOL], "size": [12, 12], "color": style.colour, "line": {"width": 2}},
            name=f"{style.name} Δ",
            legendgroup=style.name if style.label else split,
            showlegend=False,
            hovertext=[text, text],
            hovertemplate="%{hovertext}<extra></extra>",
            meta=_meta("rise", style.run, ALL, split, "loss"),
        ),
        row=1,
        col=1,
    )


def _variant_curve(results: pd.DataFrame, variant: _Variant, group: str, split: str) -> pd.DataFrame:
    """One group's rows for one split within one (hold, mode), sorted by α."""
    points = _curve(results, group, split)
    return points[(points["hold"] == variant.hold) & (points["mode"] == variant.mode)].reset_index(drop=True)


def _add_group_row(
    fig: go.Figure,
    results: pd.DataFrame,
    variant: _Variant,
    *,
    run: str,
    label: str,
    row: int,
    colours: dict[str, str],
    legend_shown: set[str],
    visible: bool,
) -> None:
    """One panel per split: the run's dashed vary-all reference, then a line per group; legend entries once
    per run (only one run's group traces are visible at a time)."""

    def legend(key: str) -> bool:
        first = key not in legend_shown
        legend_shown.add(key)
        return first

    of_run = results[results[RUN] == run]
    for col, split in enumerate(variant.splits, start=1):
        reference = _curve(of_run, ALL, split)
        if not reference.empty:
            fig.add_trace(
                go.Scatter(
                    x=_floats(reference["alpha"]),
                    y=_plottable(_floats(reference["loss"])),
                    mode="lines",
                    line={"color": _VARY_ALL_COLOUR, "dash": "dash", "width": 2},
                    name="vary all",
                    legendgroup="vary all",
                    showlegend=legend("vary all"),
                    visible=visible,
                    hovertext=_hover_texts(reference, "vary all", split, label),
                    hovertemplate="%{hovertext}<extra></extra>",
                    meta=_meta("vary-all", run, ALL, split, "groups", variant),
                ),
                row=row,
                col=col,
            )
        for group in variant.groups[run]:
            points = _variant_curve(of_run, variant, group, split)
            if points.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=_floats(points["alpha"]),
                    y=_plottable(_floats(points["loss"])),
                    mode="lines+markers",
                    line={"color": colours[group]},
                    marker={"size": 5},
                    name=group,
                    legendgroup=f"group:{group}",
                    showlegend=legend(f"group:{group}"),
                    visible=visible,
                    hovertext=_hover_texts(points, group, split, label),
                    hovertemplate="%{hovertext}<extra></extra>",
                    meta=_meta("group-line", run, group, split, "groups", variant),
                ),
                row=row,
                col=col,
            )
    fig.update_yaxes(title_text="loss", row=row, col=1)


def _add_heatmap(
    fig: go.Figure, results: pd.DataFrame, variant: _Variant, *, run: str, row: int, visible: bool
) -> None:
    """Group × α, colour = loss, for one split; rows in group order top to bottom, a gap where a loss is missing."""
    split = variant.heatmap_split
    groups = variant.groups[run]
    of_run = results[results[RUN] == run]
    curves = {g: _variant_curve(of_run, variant, g, split) for g in groups}
    alphas = sorted({a for points in curves.values() for a in _floats(points["alpha"]) if math.isfinite(a)})
    column = {a: j for j, a in enumerate(alphas)}
    # (G, A): groups × alphas; None (no colour) where a loss is missing or not finite, the text still says which.
    z: list[list[float | None]] = [[None] * len(alphas) for _ in groups]
    text = [[""] * len(alphas) for _ in groups]
    prefix = f"{run} · " if run else ""
    for i, group in enumerate(groups):
        points = curves[group]
        for a, loss in zip(_floats(points["alpha"]), _floats(points["loss"]), strict=True):
            if a not in column:
                continue
            j = column[a]
            z[i][j] = loss if math.isfinite(loss) else None
            text[i][j] = "<br>".join([f"{prefix}{group} · {split}", f"α={_fmt(a)}", f"loss={_fmt(loss)}"])

    # The colour bar sits beside this row only, not over the whole figure's height.
    y0, y1 = fig.get_subplot(row, 1).yaxis.domain
    fig.add_trace(
        go.Heatmap(
            x=alphas,
            y=groups,
            z=z,
            text=text,
            hovertemplate="%{text}<extra></extra>",
            hoverongaps=False,
            colorscale=_HEATMAP_COLOURS,
            colorbar={"title": {"text": "loss"}, "y": (y0 + y1) / 2, "len": y1 - y0, "yanchor": "middle"},
            name=f"{prefix}{split} loss by group",
            showlegend=False,
            visible=visible,
            meta=_meta("heatmap", run, "", split, "heatmap", variant),
        ),
        row=row,
        col=1,
    )
    fig.update_yaxes(title_text="group", type="category", autorange="reversed", row=row, col=1)


def _loss_axes(fig: go.Figure) -> list[str]:
    """Layout names (``yaxis``, ``yaxis3``, ...) of the axes that carry a loss: line panels other than accuracy."""
    names = []
    for trace in fig.data:
        meta = trace.meta or {}
        if trace.type == "scatter" and meta.get("panel") in ("loss", "groups"):
            name = "yaxis" + (trace.yaxis or "y")[1:]
            if name not in names:
                names.append(name)
    return names


def _paper_y(px_above_top: float, y_top: float, height: int) -> float:
    """Paper coordinate ``px_above_top`` pixels above ``y_top`` (a paper coordinate) in a figure ``height`` px
    tall with plotly's default top and bottom margins."""
    plot_px = max(height - 110 - 80, 1)
    return y_top + px_above_top / plot_px


def _log_y_menu(fig: go.Figure, height: int) -> dict[str, Any]:
    """Buttons at the top right that switch every loss axis between linear and log."""
    axes = _loss_axes(fig)

    def relayout(kind: str) -> dict[str, Any]:
        return {f"{axis}.{key}": value for axis in axes for key, value in (("type", kind), ("autorange", True))}

    return {
        "type": "buttons",
        "direction": "right",
        "buttons": [
            {"label": "linear loss", "method": "relayout", "args": [relayout("linear")]},
            {"label": "log loss", "method": "relayout", "args": [relayout("log")]},
        ],
        "active": 0,
        "showactive": True,
        # Above the legend, clear of the subplot titles and of plotly's toolbar at the figure's top right.
        "x": 1.02,
        "xanchor": "left",
        "y": _paper_y(6, 1.0, height),
        "yanchor": "bottom",
        "pad": {"l": 0, "b": 0},
        "name": "log-y",
    }


def _run_menu(fig: go.Figure, runs: Sequence[str], row: int, height: int) -> dict[str, Any]:
    """A drop-down above group row ``row`` that shows one run's group rows and heatmaps and hides the others'."""
    indices = [i for i, t in enumerate(fig.data) if (t.meta or {}).get("panel") in ("groups", "heatmap")]
    owners = [fig.data[i].meta["run"] for i in indices]
    _, y1 = fig.get_subplot(row, 1).yaxis.domain
    return {
        "type": "dropdown",
        "direction": "down",
        "buttons": [
            {
                "label": f"layer groups of {run}",
                "method": "restyle",
                "args": [{"visible": [owner == run for owner in owners]}, indices],
            }
            for run in runs
        ],
        "active": 0,
        "showactive": True,
        "x": 0.0,
        "xanchor": "left",
        "y": _paper_y(30, y1, height),
        "yanchor": "bottom",
        "pad": {"l": 0, "t": 0},
        "name": "run",
    }


def _linked_hover_script(fig: go.Figure) -> str:
    """JavaScript for figure_html: a dotted vertical line at the hovered α in every α panel (plotly's own spike
    line and hover box stay on the panel under the mouse)."""
    panels: list[list[str]] = []
    for trace in fig.data:
        if (trace.meta or {}).get("panel") in ("loss", "accuracy", "groups", "heatmap"):
            pair = [trace.xaxis or "x", trace.yaxis or "y"]
            if pair not in panels:
                panels.append(pair)
    if len(panels) < 2:
        return ""
    # Shapes, not plotly's coupled hover (Fx.hover over several subplots): in "x unified" mode that merges every
    # panel's points into one box as tall as the page. `last` keeps relayout to one call per grid point.
    return (
        "var gd = document.getElementById('{plot_id}');"
        f"var panels = {json.dumps(panels)};"
        "var base = (gd.layout.shapes || []).slice();"
        "var last = null;"
        "gd.on('plotly_hover', function (ev) {"
        "  if (!ev || !ev.points || !ev.points.length) { return; }"
        "  var x = ev.points[0].x;"
        "  if (typeof x !== 'number' || x === last) { return; }"
        "  last = x;"
        "  var cursor = panels.map(function (p) {"
        "    return {type: 'line', xref: p[0], yref: p[1] + ' domain', x0: x, x1: x, y0: 0, y1: 1, layer: 'above',"
        "            line: {color: 'rgba(110, 110, 110, 0.8)', width: 1, dash: 'dot'}};"
        "  });"
        "  Plotly.relayout(gd, {shapes: base.concat(cursor)});"
        "});"
        "gd.on('plotly_unhover', function () {"
        "  if (last === null) { return; }"
        "  last = null;"
        "  Plotly.relayout(gd, {shapes: base});"
        "});"
    )

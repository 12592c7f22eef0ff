"""Figures of a scan: loss and accuracy along the path as a Plotly figure, and its atomic HTML export.

Reads the tidy ``results`` and per-curve ``summary`` DataFrames; computes no metrics of its own.
"""

from __future__ import annotations

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
from .errors import UsageError

ALL = "all"
"""The ``curve`` value of the whole-network ("vary all") path."""

REQUIRED_COLUMNS = ("curve", "split", "alpha", "loss", "loss_se", "accuracy", "n")

# Known splits first, in the order a reader expects; any other split follows in order of appearance.
_SPLIT_ORDER = ("train", "test")
_SPLIT_COLOURS = qualitative.Plotly  # train blue, test red, ...
# Group colours: Dark2, then D3 for a deeper split, without their greys (grey is the dashed vary-all reference).
_GROUP_COLOURS = [c for c in (*qualitative.Dark2, *qualitative.D3) if c not in ("rgb(102,102,102)", "#7F7F7F")]
_ENDPOINT_SYMBOL = "diamond"
_BARRIER_SYMBOL = "star"
_BAND_OPACITY = 0.18
_VARY_ALL_COLOUR = "#555555"  # the whole-network reference among the group lines: dashed grey
_HEATMAP_COLOURS = "Viridis"  # high loss bright yellow, low loss dark
_ROW_HEIGHT_PX = 420
_ROW_GAP_PX = 110  # room for one row's α axis title and the next row's subplot titles

# Subplot titles of a group row: what moves, and where the rest of the network stays.
_VARIANT_TEXT = {
    ("final", "only"): "each group moves, others at final",
    ("init", "only"): "each group moves, others at init",
    ("final", "all-but"): "all but the group move, it stays at final",
    ("init", "all-but"): "all but the group move, it stays at init",
}


def path_figure(results: pd.DataFrame, summary: pd.DataFrame | None = None, *, title: str | None = None) -> go.Figure:
    """Plot loss (and accuracy) against α for every split, with endpoints and barrier, and the layer-wise curves.

    Row 1, the whole network (``curve == "all"``): left, loss vs α, one line per split with a shaded ±1 standard
    error band, diamonds at α=0 and α=1 and a star at the worst barrier; right (only when some accuracy is not
    NaN), accuracy vs α per split. Non-finite losses (NaN, ±inf) leave a gap in the line; the hover text still
    shows them.

    When the results hold group curves (any ``curve`` other than ``"all"``), each (``hold``, ``mode``) pair
    among them adds a row of loss vs α, one panel per split: the whole-network curve dashed grey ("vary all")
    and one line per group. A group keeps its colour in every panel and has one legend entry, so clicking it
    hides or shows the group everywhere. With two or more groups a heatmap row follows (group × α, colour =
    loss) for the ``test`` split if the groups have one, else their first split.

    Args:
        results: Tidy rows with columns ``curve``, ``split``, ``alpha``, ``loss``, ``loss_se``, ``accuracy``
            (in [0, 1], or NaN when the task has none) and ``n``; optional ``hold`` (``"final"``/``"init"``)
            and ``mode`` (``"only"``/``"all-but"``), empty or NaN on the whole-network rows (as read back from
            CSV); other columns are ignored.
        summary: Optional per-(curve, split) metrics. For each split's ``"all"`` row the barrier marker sits
            at ``barrier_max_alpha`` when ``barrier_max > 0``, else at ``barrier_linear_alpha`` when
            ``barrier_linear > 0``; with no positive barrier (or no summary) there is no marker.
        title: Figure title; none when omitted.

    Returns:
        A Plotly figure (template ``plotly_white``, hovermode ``x unified``, about 420 px per row when there
        is more than one). Every trace's ``meta`` is a dict ``{"role": ..., "curve": ..., "split": ...,
        "panel": ...}`` so callers can find traces without relying on their order: roles ``"line"``,
        ``"band"``, ``"endpoints"``, ``"barrier"`` on panels ``"loss"`` and ``"accuracy"`` (row 1);
        ``"vary-all"`` and ``"group-line"`` on panel ``"groups"``, and ``"heatmap"`` (curve ``""``) on panel
        ``"heatmap"``, these three also carrying ``"hold"`` and ``"mode"``.

    Raises:
        UsageError: ``results`` lacks a required column, or has no rows.
    """
    _check_columns(results, REQUIRED_COLUMNS, "results")
    if results.empty:
        raise UsageError("results has no rows: nothing to plot", hint="run a scan first")
    results = _normalised(results)

    splits = _split_order(results["split"])
    variants = _variants(results)
    accuracy = pd.to_numeric(results["accuracy"], errors="coerce")
    has_accuracy = bool(accuracy.notna().any())

    # Rows of the figure, top to bottom: (kind, variant, one title per panel).
    top_titles = ["loss", "accuracy"] if has_accuracy else ["loss"]
    plan: list[tuple[str, _Variant | None, list[str]]] = [("whole", None, top_titles)]
    for v in variants:
        plan.append(("groups", v, [f"{split}: {v.text}" for split in v.splits]))
        if len(v.groups) >= 2:
            plan.append(("heatmap", v, [f"{v.heatmap_split} loss by group and α ({v.text})"]))
    cols = max(len(titles) for _, _, titles in plan)
    rows = len(plan)

    fig = make_subplots(
        rows=rows,
        cols=cols,
        specs=[_row_spec(len(titles), cols) for _, _, titles in plan],
        subplot_titles=[t for _, _, titles in plan for t in titles],
        horizontal_spacing=0.08,
        vertical_spacing=_ROW_GAP_PX / (_ROW_HEIGHT_PX * rows),
    )

    for i, split in enumerate(splits):
        colour = _SPLIT_COLOURS[i % len(_SPLIT_COLOURS)]
        points = _curve(results, ALL, split)
        if points.empty:
            continue
        _add_path(fig, points, curve=ALL, split=split, colour=colour, dash="solid", col=1, legend=True)
        if has_accuracy:
            _add_path(fig, points, curve=ALL, split=split, colour=colour, dash="solid", col=2, legend=False)
        if summary is not None:
            _add_barrier(fig, points, summary, split=split, colour=colour)

    # A group's colour comes from its first appearance in the results, so it is the same in every row.
    all_groups = list(dict.fromkeys(g for v in variants for g in v.groups))
    colours = {g: _GROUP_COLOURS[j % len(_GROUP_COLOURS)] for j, g in enumerate(all_groups)}
    legend_shown: set[str] = set()
    for row, (kind, variant, _) in enumerate(plan, start=1):
        if variant is None:
            continue
        if kind == "groups":
            _add_group_row(fig, results, variant, row=row, colours=colours, legend_shown=legend_shown)
        else:
            _add_heatmap(fig, results, variant, row=row)

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
        legend_title_text="split" if not variants else "split / group",
    )
    if rows > 1:
        fig.update_layout(height=_ROW_HEIGHT_PX * rows)
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


def _normalised(results: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``curve`` and ``split`` as strings and ``hold``/``mode`` as strings, "" where empty or NaN."""
    out = results.copy()
    for column in ("curve", "split"):
        out[column] = out[column].astype(str)
    for column in ("hold", "mode"):
        # read_csv turns the whole-network curve's empty labels into NaN (a float column when all are empty);
        # older results lack the columns.
        values = out[column] if column in out.columns else pd.Series(math.nan, index=out.index)
        out[column] = ["" if pd.isna(v) else str(v) for v in values]
    return out


@dataclass(frozen=True)
class _Variant:
    """The group curves that share one (hold, mode): one row of line panels and, with ≥ 2 groups, a heatmap."""

    hold: str
    mode: str
    groups: list[str]  # in order of appearance in the results
    splits: list[str]  # in _split_order

    @property
    def text(self) -> str:
        known = _VARIANT_TEXT.get((self.hold, self.mode))
        if known is not None:
            return known
        labels = [f"hold {self.hold}" if self.hold else "", f"mode {self.mode}" if self.mode else ""]
        return ", ".join(label for label in labels if label) or "each group's curve"

    @property
    def heatmap_split(self) -> str:
        return "test" if "test" in self.splits else self.splits[0]


def _variants(results: pd.DataFrame) -> list[_Variant]:
    """The group curves' (hold, mode) pairs in order of appearance; none when the results hold only ``all``."""
    groups = results[results["curve"] != ALL]
    variants = []
    for hold, mode in dict.fromkeys(zip(groups["hold"], groups["mode"], strict=True)):
        rows = groups[(groups["hold"] == hold) & (groups["mode"] == mode)]
        names = [str(c) for c in pd.unique(rows["curve"])]
        variants.append(_Variant(str(hold), str(mode), names, _split_order(rows["split"])))
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


def _meta(role: str, curve: str, split: str, panel: str, variant: _Variant | None = None) -> dict[str, str]:
    meta = {"role": role, "curve": curve, "split": split, "panel": panel}
    if variant is not None:
        meta.update(hold=variant.hold, mode=variant.mode)
    return meta


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


def _variant_curve(results: pd.DataFrame, variant: _Variant, group: str, split: str) -> pd.DataFrame:
    """One group's rows for one split within one (hold, mode), sorted by α."""
    points = _curve(results, group, split)
    return points[(points["hold"] == variant.hold) & (points["mode"] == variant.mode)].reset_index(drop=True)


def _add_group_row(
    fig: go.Figure,
    results: pd.DataFrame,
    variant: _Variant,
    *,
    row: int,
    colours: dict[str, str],
    legend_shown: set[str],
) -> None:
    """One panel per split: the dashed vary-all reference, then a line per group, legend entries once each."""

    def legend(key: str) -> bool:
        first = key not in legend_shown
        legend_shown.add(key)
        return first

    for col, split in enumerate(variant.splits, start=1):
        reference = _curve(results, ALL, split)
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
                    hovertext=_hover_texts(reference, "vary all", split),
                    hovertemplate="%{hovertext}<extra></extra>",
                    meta=_meta("vary-all", ALL, split, "groups", variant),
                ),
                row=row,
                col=col,
            )
        for group in variant.groups:
            points = _variant_curve(results, variant, group, split)
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
                    hovertext=_hover_texts(points, group, split),
                    hovertemplate="%{hovertext}<extra></extra>",
                    meta=_meta("group-line", group, split, "groups", variant),
                ),
                row=row,
                col=col,
            )
    fig.update_yaxes(title_text="loss", row=row, col=1)


def _add_heatmap(fig: go.Figure, results: pd.DataFrame, variant: _Variant, *, row: int) -> None:
    """Group × α, colour = loss, for one split; rows in group order top to bottom, a gap where a loss is missing."""
    split = variant.heatmap_split
    curves = {g: _variant_curve(results, variant, g, split) for g in variant.groups}
    alphas = sorted({a for points in curves.values() for a in _floats(points["alpha"]) if math.isfinite(a)})
    column = {a: j for j, a in enumerate(alphas)}
    # (G, A): groups × alphas; None (no colour) where a loss is missing or not finite, the text still says which.
    z: list[list[float | None]] = [[None] * len(alphas) for _ in variant.groups]
    text = [[""] * len(alphas) for _ in variant.groups]
    for i, group in enumerate(variant.groups):
        points = curves[group]
        for a, loss in zip(_floats(points["alpha"]), _floats(points["loss"]), strict=True):
            if a not in column:
                continue
            j = column[a]
            z[i][j] = loss if math.isfinite(loss) else None
            text[i][j] = "<br>".join([f"{group} · {split}", f"α={_fmt(a)}", f"loss={_fmt(loss)}"])

    # The colour bar sits beside this row only, not over the whole figure's height.
    y0, y1 = fig.get_subplot(row, 1).yaxis.domain
    fig.add_trace(
        go.Heatmap(
            x=alphas,
            y=variant.groups,
            z=z,
            text=text,
            hovertemplate="%{text}<extra></extra>",
            hoverongaps=False,
            colorscale=_HEATMAP_COLOURS,
            colorbar={"title": {"text": "loss"}, "y": (y0 + y1) / 2, "len": y1 - y0, "yanchor": "middle"},
            name=f"{split} loss by group",
            showlegend=False,
            meta=_meta("heatmap", "", split, "heatmap", variant),
        ),
        row=row,
        col=1,
    )
    fig.update_yaxes(title_text="group", type="category", autorange="reversed", row=row, col=1)

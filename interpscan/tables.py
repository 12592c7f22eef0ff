"""A scan's tables: results.csv (one row per curve, split, segment and α) and summary.csv (one row per curve,
split and segment, plus the whole path of a multi-segment run: the shape metrics and distances), built from the
engine's point results, with fixed columns and dtypes."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .engine import PointResult
from .groups import Grouping
from .metrics import distances, summarize_curve
from .paths import POSITION_COLUMNS, position, to_position, whole_path_axis
from .schema import CI_COLUMNS, RESULT_COLUMNS, RESULT_DTYPES, SUMMARY_COLUMNS, SUMMARY_DTYPES, WHOLE_PATH

__all__ = [  # the schema lives with the reader (results.py, no torch); written here
    "RESULT_COLUMNS",
    "RESULT_DTYPES",
    "SUMMARY_COLUMNS",
    "SUMMARY_DTYPES",
    "Curve",
    "group_curves",
    "results_frame",
    "summary_frame",
]

if TYPE_CHECKING:
    import pandas as pd

_NO_INTERVALS = {**dict.fromkeys(CI_COLUMNS, math.nan), "rise_significant": None}


@dataclass(frozen=True)
class Curve:
    """One curve of a scan: its name, labels for the CSVs, the tensors that move and the parameters among them."""

    name: str
    hold: str  # "final", "init", or "" for the whole-network curve
    mode: str  # "only", "all-but", or ""
    moving: frozenset[str]
    parameters: list[str]


def group_curves(
    grouping: Grouping, names: Sequence[str], params: Sequence[str], hold: str, mode: str
) -> dict[str, Curve]:
    """A curve per group: the group's tensors move (``only``) or everything else does (``all-but``)."""
    curves = {}
    for g in grouping.groups:
        members = set(g.tensors)
        moving = frozenset(members if mode == "only" else set(names) - members)
        curves[g.name] = Curve(g.name, str(hold), str(mode), moving, [p for p in params if p in moving])
    return curves


def results_frame(
    point_results: Sequence[PointResult], split_order: Sequence[str], curves: Mapping[str, Curve] | None = None
) -> pd.DataFrame:
    """The tidy results table: one row per (curve, split, segment, alpha), RESULT_COLUMNS, sorted by curve
    order, then split, segment and α."""
    import pandas as pd

    rows = [
        {
            "curve": r.point.curve,
            "split": r.split,
            "alpha": r.point.alpha,
            "loss": r.loss,
            "loss_se": r.loss_se,
            "accuracy": r.accuracy,
            "n": r.n,
            "hold": curves[r.point.curve].hold if curves else "",
            "mode": curves[r.point.curve].mode if curves else "",
            "segment": r.point.segment,
            "t": position(r.point.segment, r.point.alpha),
            "refined": r.point.refined,
        }
        for r in point_results
    ]
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    curve_order = list(dict.fromkeys(df["curve"]))
    df["_c"] = df["curve"].map(curve_order.index)
    df["_s"] = df["split"].map(list(split_order).index)
    df = df.sort_values(["_c", "_s", "segment", "alpha"]).drop(columns=["_c", "_s"]).reset_index(drop=True)
    return df.astype(RESULT_DTYPES)


def summary_frame(
    results: pd.DataFrame,
    curves: Mapping[str, Curve],
    checkpoints: Sequence[Mapping[str, torch.Tensor]],
    tol: float,
    intervals: Mapping[tuple[str, str, int], Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """summary.csv: one row per (curve, split, segment), SUMMARY_COLUMNS; for a path through three or more
    ``checkpoints`` also one per (curve, split) for the whole path (segment WHOLE_PATH; see paths.py: its α
    columns hold t; its distance is the path's length, Σ of the segments', relative to ‖c0‖, and its cosine is
    between c0 and cm). Distances over the parameters that move; ``intervals`` (uncertainty.bootstrap_intervals)
    fill the CI columns, left NaN / NA without them."""
    import pandas as pd

    m = len(checkpoints) - 1
    rows = []
    for (curve, split), of_curve in results.groupby(["curve", "split"], sort=False):
        c = curves[str(curve)]
        parts = (
            [(int(str(s)), g) for s, g in of_curve.groupby("segment", sort=True)]
            if "segment" in of_curve.columns
            else [(1, of_curve)]
        )
        if m > 1:
            parts.append((WHOLE_PATH, of_curve))
        for segment, g in parts:
            rows.append(
                {
                    "curve": curve,
                    "split": split,
                    **_shape(g, segment, m, tol),
                    **_distances(checkpoints, segment, c.parameters),
                    "hold": c.hold,
                    "mode": c.mode,
                    "nonfinite_points": int((~g["loss"].apply(math.isfinite)).sum()),
                    **(intervals or {}).get((str(curve), str(split), segment), _NO_INTERVALS),
                    "segment": segment,
                }
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype(SUMMARY_DTYPES)


def _shape(points: pd.DataFrame, segment: int, m: int, tol: float) -> dict[str, Any]:
    """The shape metrics of one segment's points (on α), or of the whole path's (on t, paths.py)."""
    if segment != WHOLE_PATH:
        return summarize_curve(
            points["alpha"].tolist(), points["loss"].tolist(), points["accuracy"].tolist(), tol=tol
        ).to_dict()
    keep, u = whole_path_axis(points["segment"].tolist(), points["alpha"].tolist(), m)
    picked = points.iloc[keep]
    row = summarize_curve(u, picked["loss"].tolist(), picked["accuracy"].tolist(), tol=tol).to_dict()
    return {**row, **{name: to_position(row[name], m) for name in POSITION_COLUMNS}}


def _distances(
    checkpoints: Sequence[Mapping[str, torch.Tensor]], segment: int, parameters: Sequence[str]
) -> dict[str, float]:
    """A segment's distances between its two checkpoints; the whole path's length, Σ of its segments'."""
    if segment != WHOLE_PATH:
        d = distances(checkpoints[segment - 1], checkpoints[segment], parameters)
        return {"distance": d.distance, "relative_distance": d.relative_distance, "cosine": d.cosine}
    start, end = checkpoints[0], checkpoints[-1]
    length = sum(distances(a, b, parameters).distance for a, b in itertools.pairwise(checkpoints))
    norm = math.sqrt(sum(float(torch.sum(start[p].detach().double() ** 2)) for p in parameters))
    return {
        "distance": length,
        "relative_distance": length / norm if norm > 0 else math.nan,
        "cosine": distances(start, end, parameters).cosine,
    }

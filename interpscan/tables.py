"""A scan's tables: results.csv (one row per curve, split and α) and summary.csv (one row per curve and split,
the shape metrics and distances), built from the engine's point results, with fixed columns and dtypes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .engine import PointResult
from .groups import Grouping
from .metrics import distances, summarize_curve
from .results import CI_COLUMNS, RESULT_COLUMNS, RESULT_DTYPES, SUMMARY_COLUMNS, SUMMARY_DTYPES

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
    """The tidy results table: one row per (curve, split, alpha), RESULT_COLUMNS, sorted by curve order."""
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
        }
        for r in point_results
    ]
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    curve_order = list(dict.fromkeys(df["curve"]))
    df["_c"] = df["curve"].map(curve_order.index)
    df["_s"] = df["split"].map(list(split_order).index)
    df = df.sort_values(["_c", "_s", "alpha"]).drop(columns=["_c", "_s"]).reset_index(drop=True)
    return df.astype(RESULT_DTYPES)


def summary_frame(
    results: pd.DataFrame,
    curves: Mapping[str, Curve],
    init: Mapping[str, torch.Tensor],
    final: Mapping[str, torch.Tensor],
    tol: float,
    intervals: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """summary.csv: one row per (curve, split), SUMMARY_COLUMNS; distances over the parameters that move;
    ``intervals`` (uncertainty.bootstrap_intervals) fill the CI columns, left NaN / NA without them."""
    import pandas as pd

    rows = []
    for (curve, split), g in results.groupby(["curve", "split"], sort=False):
        m = summarize_curve(g["alpha"].tolist(), g["loss"].tolist(), g["accuracy"].tolist(), tol=tol)
        c = curves[str(curve)]
        d = distances(init, final, c.parameters)
        rows.append(
            {
                "curve": curve,
                "split": split,
                **m.to_dict(),
                "distance": d.distance,
                "relative_distance": d.relative_distance,
                "cosine": d.cosine,
                "hold": c.hold,
                "mode": c.mode,
                "nonfinite_points": int((~g["loss"].apply(math.isfinite)).sum()),
                **(intervals or {}).get((str(curve), str(split)), _NO_INTERVALS),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype(SUMMARY_DTYPES)

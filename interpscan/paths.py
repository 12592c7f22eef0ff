"""Paths through several checkpoints: c0 → c1 → … → cm is m ordinary paths, its segments, each scanned as a
path between two checkpoints (α local to the segment); t = segment − 1 + α is the position along the whole path.
The whole path's shape metrics use every segment's points with 0 ≤ α ≤ 1, in order of t (a junction's two
points both: each segment's end and the next one's start), on the axis u = t/m in [0, 1], so that metrics.py's
formulas apply unchanged (the straight line of B_lin runs from L(c0) to L(cm)); an α the metrics return is
turned back into t.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# summary.csv's columns that hold a position on the path: α in a segment's row, t in the whole path's
POSITION_COLUMNS = ("barrier_linear_alpha", "barrier_max_alpha", "plateau_alpha")


def position(segment: int, alpha: float) -> float:
    """t = segment − 1 + α: where a point of ``segment`` (1…m) lies along the whole path."""
    return (segment - 1) + alpha


def whole_path_axis(
    segments: Sequence[int], alphas: Sequence[float], m: int
) -> tuple[np.ndarray[Any, Any], list[float]]:
    """The points of the whole path among ``(segments[i], alphas[i])``: their indices, in order of (segment, α),
    and their u = t/m. Points with α outside [0, 1] (extrapolated beyond a segment's checkpoints) are left out."""
    order = sorted((i for i, a in enumerate(alphas) if 0.0 <= a <= 1.0), key=lambda i: (segments[i], alphas[i]))
    return np.asarray(order, dtype=np.int64), [position(segments[i], alphas[i]) / m for i in order]


def to_position(u: float, m: int) -> float:
    """u = t/m back to t (the grid's 12 decimals, so that t comes back exactly)."""
    return round(u * m, 12) + 0.0 if np.isfinite(u) else u

"""Shape metrics of a path, with the formulas of docs/design.md, "Metrics", and parameter-space distances.

Every curve metric is computed on the grid points with 0 ≤ α ≤ 1 (extrapolated points are plotted, not
scored); α=0 and α=1 must be on the grid. A curve with a non-finite loss in [0, 1] gets NaN metrics: no
number is made up for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class Barrier:
    """Height of a barrier and the α where it peaks (NaN when undefined)."""

    height: float
    alpha: float


def _clean(alphas: Sequence[float], values: Sequence[float]) -> tuple[Array, Array]:
    a = np.asarray(alphas, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if a.shape != v.shape:
        raise ValueError(f"alphas and values differ in length ({a.size} vs {v.size})")
    order = np.argsort(a, kind="stable")
    a, v = a[order], v[order]
    keep = (a >= 0.0) & (a <= 1.0)
    a, v = a[keep], v[keep]
    if a.size == 0 or a[0] != 0.0 or a[-1] != 1.0:
        raise ValueError("the grid must contain α=0 and α=1")
    return a, v


@dataclass(frozen=True)
class Rise:
    """The largest rise of a curve: from L(α_i) up to L(α_j), i < j. Both α are NaN when it never rises."""

    height: float
    start_alpha: float  # α_i: the lowest point before the rise
    end_alpha: float  # α_j: the top of the rise


def largest_rise(alphas: Sequence[float], values: Sequence[float]) -> Rise:
    """Lucas et al.'s Δ = max over i<j of [L(α_j) − L(α_i)] and where it happens (0, NaN, NaN: it never rises).

    Ties go to the earliest α_j, and to the earliest α_i among equally low points before it.
    """
    a, v = _clean(alphas, values)
    if not np.all(np.isfinite(v)):
        return Rise(math.nan, math.nan, math.nan)
    rise = v - np.minimum.accumulate(v)  # rise[j] = L(α_j) − min over i ≤ j of L(α_i), never negative
    j = int(np.argmax(rise))
    if rise[j] <= 0.0:
        return Rise(0.0, math.nan, math.nan)
    i = int(np.argmin(v[: j + 1]))
    return Rise(float(rise[j]), float(a[i]), float(a[j]))


def monotonicity_gap(alphas: Sequence[float], values: Sequence[float]) -> float:
    """Lucas et al.'s Δ = max over i<j of [L(α_j) − L(α_i)], and 0 when the curve never rises."""
    return largest_rise(alphas, values).height


PLATEAU_FRACTION = 0.1
"""ε of the plateau length as a fraction of the endpoints' gap: ε = 0.1·|L(0) − L(1)|."""


def plateau_alpha(alphas: Sequence[float], values: Sequence[float], *, fraction: float = PLATEAU_FRACTION) -> float:
    """Plateau length: the first grid α at which the loss falls within ε of L(1).

    α_plateau = min{α_i : L(α_i) ≤ L(1) + ε} with ε = ``fraction``·|L(0) − L(1)|, i.e. the first point that has
    covered (1 − fraction) of the way from L(0) down to L(1). A straight line gives 1 − fraction (0.9 by
    default); a curve sitting at chance until a cliff gives the α of the cliff's foot; a curve that falls at
    once gives a small α; 0 when L(0) ≤ L(1) + ε already (a path that does not fall). Relative, not in nats, so
    that runs with different loss scales compare. A grid point, so its resolution is the grid's. NaN when a
    loss in [0, 1] is not finite.

    Raises:
        ValueError: ``fraction`` is negative, or the grid lacks α=0 or α=1.
    """
    if not fraction >= 0.0:
        raise ValueError(f"fraction must be ≥ 0, got {fraction}")
    a, v = _clean(alphas, values)
    if not np.all(np.isfinite(v)):
        return math.nan
    eps = fraction * abs(v[0] - v[-1])
    return float(a[int(np.argmax(v <= v[-1] + eps))])  # α=1 always qualifies, so argmax finds a True


def barrier_linear(alphas: Sequence[float], values: Sequence[float]) -> Barrier:
    """B_lin = max_α [L(α) − ((1−α)·L(0) + α·L(1))], relative to the straight line between the endpoints."""
    a, v = _clean(alphas, values)
    if not np.all(np.isfinite(v)):
        return Barrier(math.nan, math.nan)
    excess = v - ((1.0 - a) * v[0] + a * v[-1])
    i = int(np.argmax(excess))
    return Barrier(float(excess[i]), float(a[i]))


def barrier_max(alphas: Sequence[float], values: Sequence[float]) -> Barrier:
    """B_max = max_α L(α) − max(L(0), L(1)); ≤ 0 means no barrier."""
    a, v = _clean(alphas, values)
    if not np.all(np.isfinite(v)):
        return Barrier(math.nan, math.nan)
    i = int(np.argmax(v))
    return Barrier(float(v[i] - max(v[0], v[-1])), float(a[i]))


def endpoint_values(alphas: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(L(0), L(1))."""
    _, v = _clean(alphas, values)
    return float(v[0]), float(v[-1])


@dataclass(frozen=True)
class CurveSummary:
    """The summary.csv columns for one (curve, split)."""

    loss_start: float
    loss_end: float
    delta: float
    monotone: bool | None  # None when Δ is undefined (non-finite losses)
    barrier_linear: float
    barrier_linear_alpha: float
    barrier_max: float
    barrier_max_alpha: float
    error_barrier_linear: float
    error_barrier_max: float
    plateau_alpha: float  # first α with L(α) ≤ L(1) + ε, ε = PLATEAU_FRACTION·|L(0) − L(1)|

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def perplexity(loss: float) -> float:
    """Perplexity exp(L) of a language model whose L is the mean next-token cross-entropy (in nats); inf past
    float's range, NaN for a NaN loss."""
    return math.exp(loss) if loss < 709.0 else math.inf  # exp(709.8) is float64's largest


def summarize_curve(
    alphas: Sequence[float],
    loss: Sequence[float],
    accuracy: Sequence[float] | None = None,
    *,
    tol: float = 0.0,
    plateau_fraction: float = PLATEAU_FRACTION,
) -> CurveSummary:
    """All shape metrics of one curve. The path is monotone when Δ ≤ ``tol``. Error is 1 − accuracy; the plateau
    length uses ε = ``plateau_fraction``·|L(0) − L(1)| (see plateau_alpha)."""
    start, end = endpoint_values(alphas, loss)
    delta = monotonicity_gap(alphas, loss)
    b_lin, b_max = barrier_linear(alphas, loss), barrier_max(alphas, loss)
    if accuracy is not None and np.all(np.isfinite(np.asarray(accuracy, dtype=np.float64))):
        error = [1.0 - a for a in accuracy]
        e_lin, e_max = barrier_linear(alphas, error).height, barrier_max(alphas, error).height
    else:
        e_lin = e_max = math.nan
    return CurveSummary(
        loss_start=start,
        loss_end=end,
        delta=delta,
        monotone=None if math.isnan(delta) else bool(delta <= tol),
        barrier_linear=b_lin.height,
        barrier_linear_alpha=b_lin.alpha,
        barrier_max=b_max.height,
        barrier_max_alpha=b_max.alpha,
        error_barrier_linear=e_lin,
        error_barrier_max=e_max,
        plateau_alpha=plateau_alpha(alphas, loss, fraction=plateau_fraction),
    )


@dataclass(frozen=True)
class Distance:
    """‖θ_T − θ_0‖₂, ‖θ_T − θ_0‖ / ‖θ_0‖ and cosine(θ_0, θ_T) over a set of tensors."""

    distance: float
    relative_distance: float
    cosine: float


def distances(start: Mapping[str, Any], end: Mapping[str, Any], names: Sequence[str]) -> Distance:
    """Distances between two states over ``names`` (callers pass parameters only, not running statistics).

    Tensors are flattened and concatenated; sums run in float64.
    """
    import torch

    diff_sq = norm0_sq = norm1_sq = dot = 0.0
    for name in names:
        a = start[name].detach().to(torch.float64).flatten()
        b = end[name].detach().to(torch.float64).flatten()
        diff_sq += float(torch.sum((b - a) ** 2))
        norm0_sq += float(torch.sum(a * a))
        norm1_sq += float(torch.sum(b * b))
        dot += float(torch.sum(a * b))
    d = math.sqrt(diff_sq)
    rel = d / math.sqrt(norm0_sq) if norm0_sq > 0 else math.nan
    cos = dot / math.sqrt(norm0_sq * norm1_sq) if norm0_sq > 0 and norm1_sq > 0 else math.nan
    return Distance(d, rel, cos)


def curve_metrics(
    alphas: Sequence[float],
    loss: Any,
    error: Any = None,
    *,
    plateau_fraction: float = PLATEAU_FRACTION,
) -> dict[str, Array]:
    """The shape metrics of many curves on one grid at once: ``loss`` (and ``error``) (R, P) for R curves at the P
    grid α. Row r gets what summarize_curve gives curve r (same formulas, same ties); NaN for a row with a
    non-finite value in [0, 1]. Returns metric name -> (R,) values: delta, barrier_linear, barrier_max,
    plateau_alpha, and error_barrier_linear, error_barrier_max when ``error`` is given."""
    a = np.asarray(alphas, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    keep = order[(a[order] >= 0.0) & (a[order] <= 1.0)]
    a = a[keep]
    if a.size == 0 or a[0] != 0.0 or a[-1] != 1.0:
        raise ValueError("the grid must contain α=0 and α=1")
    line = 1.0 - a

    def barriers(v: Array) -> tuple[Array, Array]:
        excess = v - (line * v[:, :1] + a * v[:, -1:])
        return excess.max(1), v.max(1) - np.maximum(v[:, 0], v[:, -1])

    v = np.asarray(loss, dtype=np.float64)[:, keep]
    bad = ~np.isfinite(v).all(1)
    out: dict[str, Array] = {}
    out["delta"] = (v - np.minimum.accumulate(v, axis=1)).max(1)
    out["barrier_linear"], out["barrier_max"] = barriers(v)
    eps = plateau_fraction * np.abs(v[:, 0] - v[:, -1])
    out["plateau_alpha"] = a[np.argmax(v <= (v[:, -1] + eps)[:, None], axis=1)]
    if error is not None:
        e = np.asarray(error, dtype=np.float64)[:, keep]
        out["error_barrier_linear"], out["error_barrier_max"] = barriers(e)
        bad_error = ~np.isfinite(e).all(1)
        for name in ("error_barrier_linear", "error_barrier_max"):
            out[name][bad_error] = math.nan
    for name in ("delta", "barrier_linear", "barrier_max", "plateau_alpha"):
        out[name][bad] = math.nan
    return out

"""Adaptive α refinement (``--refine N``): after the grid, N more points per curve and segment, added in rounds
where the curve is least resolved, so that a cliff is found without a fine grid everywhere.

Each round scores every interval between neighbouring α of a curve by how much the loss changes across it
(relative to the curve's whole range, the largest over the splits) and doubles the score of the intervals next
to the curve's features — both ends of the largest rise Δ, the peaks of B_lin and B_max, and the foot of the
plateau — then adds the midpoints of the best intervals. Every point is exact wherever it lies: the engine
computes each point from the two checkpoints, never by stepping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .metrics import barrier_linear, barrier_max, largest_rise, plateau_alpha

ROUNDS = 5  # N points are added in at most this many rounds: each round's scores see the points of the last
FEATURE_WEIGHT = 2.0  # how much more an interval next to a feature (Δ's ends, a barrier's peak, the plateau) counts
DECIMALS = 12  # α is resolved to 12 decimals, as on the grid (options.parse_grid)


def round_sizes(points: int, rounds: int = ROUNDS) -> list[int]:
    """``points`` split into at most ``rounds`` nearly equal rounds, larger first: 10 → [2, 2, 2, 2, 2]."""
    k = min(points, rounds)
    return [points // k + (1 if i < points % k else 0) for i in range(k)] if k else []


def most_added(intervals: int, points: int, rounds: int = ROUNDS) -> int:
    """The most points ``points`` asked for can add to a curve of ``intervals`` intervals: a round adds at most one
    midpoint per interval (so it at most doubles them), and each round adds at most its share of
    ``round_sizes``. A grid of 3 α and --refine 10000 add at most 2 + 4 + 8 + 16 + 32 = 62."""
    total = 0
    for size in round_sizes(points, rounds):
        added = min(size, intervals)
        total, intervals = total + added, intervals + added
    return total


def largest_refine(intervals: int, up_to: int, rounds: int = ROUNDS) -> int:
    """The largest N ≤ ``up_to`` whose points can all be added to a curve of ``intervals`` intervals (its rounds
    are sized by N, so a smaller N may fit where a larger one does not)."""
    return next((n for n in range(up_to, 0, -1) if most_added(intervals, n, rounds) >= n), 0)


def alphas_for(points: int, rounds: int = ROUNDS) -> int:
    """The fewest grid α for which ``points`` can all be added (``most_added``): the first round, of the largest
    size, needs as many intervals."""
    return max(round_sizes(points, rounds), default=0) + 1


def _features(alphas: Sequence[float], loss: Sequence[float]) -> set[float]:
    """The α where a curve's metrics are decided: Δ's two ends, the barriers' peaks, the plateau's foot."""
    if not (0.0 in alphas and 1.0 in alphas) or not all(math.isfinite(v) for v in loss):
        return set()
    rise, b_lin, b_max = largest_rise(alphas, loss), barrier_linear(alphas, loss), barrier_max(alphas, loss)
    found = {rise.start_alpha, rise.end_alpha, plateau_alpha(alphas, loss)}
    found |= {b.alpha for b in (b_lin, b_max) if b.height > 0}
    return {a for a in found if math.isfinite(a)}


def next_alphas(alphas: Sequence[float], losses: Sequence[Sequence[float]], count: int) -> list[float]:
    """``count`` new α for one curve, sorted: the midpoints of its least resolved intervals.

    Args:
        alphas: the curve's α so far, sorted, distinct.
        losses: per split, the curve's loss at each of ``alphas``.
        count: how many to add; fewer come back when fewer intervals can still be halved at 12 decimals.

    Returns:
        New α, none already among ``alphas``.
    """
    a = np.asarray(alphas, dtype=np.float64)
    score = np.zeros(max(len(a) - 1, 0))
    for values in losses:
        v = np.asarray(values, dtype=np.float64)
        finite = v[np.isfinite(v)]
        span = float(finite.max() - finite.min()) if finite.size else 0.0
        change = np.nan_to_num(np.abs(np.diff(v)), nan=0.0, posinf=0.0)
        score = np.maximum(score, change / span if span > 0 else change)
        features = _features(list(alphas), list(values))
        near = np.array([a[i] in features or a[i + 1] in features for i in range(len(a) - 1)], dtype=bool)
        score = np.where(near & (change > 0), score * FEATURE_WEIGHT, score)
    picked = []
    for i in np.argsort(-score, kind="stable"):
        mid = round(float(a[i] + a[i + 1]) / 2, DECIMALS) + 0.0
        if a[i] < mid < a[i + 1] and score[i] > 0:
            picked.append(mid)
        if len(picked) == count:
            break
    return sorted(picked)

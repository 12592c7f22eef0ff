"""How sure a shape metric is: a bootstrap over examples.

Every α of a scan is evaluated on the same examples, so the examples are the unit of randomness: one resample of
them (with replacement) gives a whole curve at once, and the metric computed on it. Repeated ``replicates``
times (seeded), the 2.5th and 97.5th percentiles of a metric are its 95% interval. Because every point of a
resample shares its examples, differences between points (Δ, the barriers) are judged on paired data, far more
tightly than per-point standard errors would allow. The assumption: examples are independent draws from the
distribution the scan stands for; the interval says nothing about other seeds, other data or other training
runs. Curves of one split share their resamples, so intervals of different groups are paired too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .engine import PointResult
from .metrics import PLATEAU_FRACTION, curve_metrics
from .results import CI_COLUMNS, CI_METRICS

__all__ = ["CI_COLUMNS", "CI_METRICS", "LEVEL", "bootstrap_intervals", "per_example_arrays", "resamples"]

LEVEL = 0.95
MAX_REPLICATES = 100_000
_CHUNK_ELEMENTS = 1 << 24  # resampling weights held at once: 16 Mi float64 (128 MiB)


def resamples(n: int, replicates: int, seed: int) -> Iterator[torch.Tensor]:
    """Bootstrap weights in chunks: (b, n) float64, each row how often each of the n examples was drawn in one
    resample of n (rows sum to n). Seeded: the same seed gives the same resamples."""
    gen = torch.Generator().manual_seed(seed)
    step = max(1, min(replicates, _CHUNK_ELEMENTS // max(n, 1)))
    for lo in range(0, replicates, step):
        b = min(step, replicates - lo)
        drawn = torch.randint(0, n, (b, n), generator=gen)
        yield torch.zeros(b, n, dtype=torch.float64).scatter_add_(1, drawn, torch.ones(b, n, dtype=torch.float64))


def _curves(
    results: Sequence[PointResult],
) -> dict[tuple[str, str], tuple[list[float], torch.Tensor, torch.Tensor | None]]:
    """(curve, split) -> the kept examples of its points, rows in the order of α: (alphas, losses (P, N) float32,
    hits (P, N) bool or None without accuracy). Curves whose points kept no examples are left out."""
    grouped: dict[tuple[str, str], list[PointResult]] = {}
    for r in results:
        grouped.setdefault((r.point.curve, r.split), []).append(r)
    curves = {}
    for key, rows in grouped.items():
        rows = sorted(rows, key=lambda r: r.point.alpha)
        losses = [r.losses for r in rows if r.losses is not None]
        if len(losses) < len(rows):
            continue
        hits = [r.hits for r in rows if r.hits is not None]
        curves[key] = (
            [r.point.alpha for r in rows],
            torch.stack(losses),
            torch.stack(hits) if len(hits) == len(rows) else None,
        )
    return curves


def bootstrap_intervals(
    results: Sequence[PointResult],
    *,
    replicates: int,
    seed: int,
    plateau_fraction: float = PLATEAU_FRACTION,
) -> dict[tuple[str, str], dict[str, Any]]:
    """The 95% bootstrap interval of every shape metric of every (curve, split), from the per-example losses the
    engine kept (EngineOptions.keep_examples), and whether the path rises for sure (``rise_significant``: the
    interval of Δ lies above 0). NaN (and NA) where a metric is undefined: non-finite losses, or no accuracy.

    Raises:
        ValueError: a result without per-example losses.
    """
    if any(r.losses is None for r in results):
        raise ValueError("the engine did not keep per-example losses (EngineOptions.keep_examples)")
    curves = _curves(results)
    splits = list(dict.fromkeys(split for _, split in curves))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for si, split in enumerate(splits):
        keys = [k for k in curves if k[1] == split]
        stacked = {}
        for key in keys:
            alphas, losses, hits = curves[key]
            stacked[key] = (alphas, losses.double(), None if hits is None else 1.0 - hits.double())
        n = int(next(iter(stacked.values()))[1].shape[1])
        draws: dict[tuple[str, str], dict[str, list[Any]]] = {k: {} for k in keys}
        if n:
            for weights in resamples(n, replicates, seed + si):
                for key, (alphas, losses, errors) in stacked.items():
                    loss = (weights @ losses.T / n).numpy()
                    error = None if errors is None else (weights @ errors.T / n).numpy()
                    for name, values in curve_metrics(alphas, loss, error, plateau_fraction=plateau_fraction).items():
                        draws[key].setdefault(name, []).append(values)
        for key in keys:
            out[key] = _interval({name: np.concatenate(parts) for name, parts in draws[key].items()})
    return out


def _interval(draws: Mapping[str, Any]) -> dict[str, Any]:
    tail = 100 * (1 - LEVEL) / 2
    row: dict[str, Any] = {}
    for name in CI_METRICS:
        values = draws.get(name)
        if values is None or not len(values) or not np.isfinite(values).all():
            low = high = math.nan
        else:
            low, high = (float(v) for v in np.percentile(values, [tail, 100 - tail]))
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low, high
    low = row["delta_ci_low"]
    row["rise_significant"] = None if math.isnan(low) else bool(low > 0)
    return row


def per_example_arrays(results: Sequence[PointResult]) -> dict[str, np.ndarray[Any, Any]]:
    """Every kept per-example loss as arrays, for per_example.npz: ``CURVE/SPLIT/alpha`` (P,) float64,
    ``CURVE/SPLIT/loss`` (P, N) float32 and, for classification, ``CURVE/SPLIT/correct`` (P, N) bool, rows in
    the order of alpha, columns the split's examples in the order the scan read them (those labelled -100 left
    out). Empty when the engine kept none."""
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for (curve, split), (alphas, losses, hits) in _curves(results).items():
        arrays[f"{curve}/{split}/alpha"] = np.array(alphas, dtype=np.float64)
        arrays[f"{curve}/{split}/loss"] = losses.numpy()
        if hits is not None:
            arrays[f"{curve}/{split}/correct"] = hits.numpy()
    return arrays

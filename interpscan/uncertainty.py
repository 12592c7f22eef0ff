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
from .paths import position, whole_path_axis
from .schema import CI_COLUMNS, CI_METRICS, WHOLE_PATH

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


Key = tuple[str, str, int]  # (curve, split, segment); segment WHOLE_PATH for a multi-segment path as a whole


def _curves(results: Sequence[PointResult]) -> dict[Key, tuple[list[float], torch.Tensor, torch.Tensor | None]]:
    """(curve, split, segment) -> the kept examples of its points, rows in the order of α: (alphas, losses (P, N)
    float32, hits (P, N) bool or None without accuracy). Curves whose points kept no examples are left out."""
    grouped: dict[Key, list[PointResult]] = {}
    for r in results:
        grouped.setdefault((r.point.curve, r.split, r.point.segment), []).append(r)
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


def _with_whole_paths(
    curves: Mapping[Key, tuple[list[float], torch.Tensor, torch.Tensor | None]],
) -> dict[Key, tuple[list[float], torch.Tensor, torch.Tensor | None, int]]:
    """The curves, each with its scale (1), and for a path of m ≥ 2 segments its whole path as one more curve
    (segment WHOLE_PATH) on u = t/m, with scale m (paths.whole_path_axis)."""
    out = {key: (*value, 1) for key, value in curves.items()}
    segments: dict[tuple[str, str], list[int]] = {}
    for curve, split, segment in curves:
        segments.setdefault((curve, split), []).append(segment)
    for (curve, split), present in segments.items():
        m = max(present)
        if m < 2 or sorted(present) != list(range(1, m + 1)):
            continue
        parts = [curves[(curve, split, s)] for s in range(1, m + 1)]
        seg = [s for s, part in enumerate(parts, 1) for _ in part[0]]
        alphas = [a for part in parts for a in part[0]]
        keep, u = whole_path_axis(seg, alphas, m)
        rows = torch.from_numpy(keep)
        losses = torch.cat([part[1] for part in parts])[rows]
        hit_parts = [part[2] for part in parts]
        hits = None if any(h is None for h in hit_parts) else torch.cat([h for h in hit_parts if h is not None])[rows]
        out[(curve, split, WHOLE_PATH)] = (u, losses, hits, m)
    return out


def bootstrap_intervals(
    results: Sequence[PointResult],
    *,
    replicates: int,
    seed: int,
    plateau_fraction: float = PLATEAU_FRACTION,
) -> dict[Key, dict[str, Any]]:
    """The 95% bootstrap interval of every shape metric of every (curve, split, segment), from the per-example
    losses the engine kept (EngineOptions.keep_examples), and whether the path rises for sure
    (``rise_significant``: the interval of Δ lies above 0). NaN (and NA) where a metric is undefined: non-finite
    losses, or no accuracy. A path through three or more checkpoints also gets its whole path (segment
    WHOLE_PATH, plateau α as t), resampled with the same draws as its segments.

    Raises:
        ValueError: a result without per-example losses.
    """
    if any(r.losses is None for r in results):
        raise ValueError("the engine did not keep per-example losses (EngineOptions.keep_examples)")
    curves = _with_whole_paths(_curves(results))
    splits = list(dict.fromkeys(key[1] for key in curves))
    out: dict[Key, dict[str, Any]] = {}
    for si, split in enumerate(splits):
        keys = [k for k in curves if k[1] == split]
        stacked = {}
        for key in keys:
            alphas, losses, hits, _ = curves[key]
            stacked[key] = (alphas, losses.double(), None if hits is None else 1.0 - hits.double())
        n = int(next(iter(stacked.values()))[1].shape[1])
        draws: dict[Key, dict[str, list[Any]]] = {k: {} for k in keys}
        if n:
            for weights in resamples(n, replicates, seed + si):
                for key, (alphas, losses, errors) in stacked.items():
                    loss = (weights @ losses.T / n).numpy()
                    error = None if errors is None else (weights @ errors.T / n).numpy()
                    for name, values in curve_metrics(alphas, loss, error, plateau_fraction=plateau_fraction).items():
                        draws[key].setdefault(name, []).append(values)
        for key in keys:
            row = _interval({name: np.concatenate(parts) for name, parts in draws[key].items()})
            scale = curves[key][3]
            for side in ("low", "high"):  # plateau α of a whole path: u = t/m back to t
                row[f"plateau_alpha_ci_{side}"] *= scale
            out[key] = row
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


KEPT_BYTES = 5  # per point and example: the engine keeps a float32 loss and a bool hit (EngineOptions.keep_examples)
# per point and example of the split being resampled: its curves stacked (float32 + bool), their losses as float64,
# their errors as float64 and that conversion's float64 temporary
RESAMPLED_BYTES = 5 + 8 + 8 + 8


def kept_bytes(points: int, examples: Sequence[int], *, replicates: int, arrays: bool) -> int:
    """Host memory that keeping every example's loss takes at its peak, for ``points`` points (every curve's and
    segment's, refined ones included) and each split's ``examples`` (tokens, for a language model): all kept
    (KEPT_BYTES), and for the largest split its batches joined into one tensor and the copy a resumable snapshot
    takes; the bootstrap's copies of one split (RESAMPLED_BYTES) and a chunk of its resampling weights
    (``replicates`` > 0: ``resamples`` draws int64 indices and float64 counts); per_example.npz's arrays
    (``arrays``). Measured (peak RSS) on 100 points × 400,000 examples with 200 resamples: 1.72 GiB above the same
    run without the bootstrap; this says 2.01 GiB."""
    total, largest = sum(examples), max(examples, default=0)
    need = KEPT_BYTES * points * (total + 2 * largest)
    if replicates:
        weights = min(replicates * largest, max(_CHUNK_ELEMENTS, largest))
        need += RESAMPLED_BYTES * points * largest + 24 * weights
    if arrays:
        need += KEPT_BYTES * points * total
    return need


def per_example_arrays(results: Sequence[PointResult]) -> dict[str, np.ndarray[Any, Any]]:
    """Every kept per-example loss as arrays, for per_example.npz: ``CURVE/SPLIT/alpha`` (P,) float64,
    ``CURVE/SPLIT/segment`` (P,) int64, ``CURVE/SPLIT/t`` (P,) float64, ``CURVE/SPLIT/loss`` (P, N) float32 and,
    for classification, ``CURVE/SPLIT/correct`` (P, N) bool, rows in the order of (segment, α), columns the
    split's examples in the order the scan read them (those labelled -100 left out). Empty when the engine kept
    none."""
    grouped: dict[tuple[str, str], list[tuple[int, list[float], torch.Tensor, torch.Tensor | None]]] = {}
    for (curve, split, segment), (alphas, losses, hits) in sorted(_curves(results).items(), key=lambda kv: kv[0][2]):
        grouped.setdefault((curve, split), []).append((segment, alphas, losses, hits))
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for (curve, split), parts in grouped.items():
        segments = [s for s, alphas, _, _ in parts for _ in alphas]
        alphas = [a for _, part, _, _ in parts for a in part]
        arrays[f"{curve}/{split}/alpha"] = np.array(alphas, dtype=np.float64)
        arrays[f"{curve}/{split}/segment"] = np.array(segments, dtype=np.int64)
        arrays[f"{curve}/{split}/t"] = np.array([position(s, a) for s, a in zip(segments, alphas, strict=True)])
        arrays[f"{curve}/{split}/loss"] = torch.cat([p[2] for p in parts]).numpy()
        if all(p[3] is not None for p in parts):
            arrays[f"{curve}/{split}/correct"] = torch.cat([p[3] for p in parts if p[3] is not None]).numpy()
    return arrays

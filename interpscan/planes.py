"""Planes of networks: the basis of a surface (through three checkpoints, along random directions around one, or
along the principal directions of a training trajectory), its grid of points as the engine's ``mix`` points, and
its tables (results.csv and summary.csv of a plane run).

Every basis is a few states the engine combines linearly (engine/runners.mix_state), so each point is computed
afresh from them, never accumulated:

- ``checkpoints`` (Garipov et al. 2018): the states are C0, C1, C2 and a point's coefficients are barycentric,
  ``θ = C0 + a1·(C1 − C0) + a2·(C2 − C0)``; x and y are its coordinates in the orthonormal basis u (toward C1)
  and v (toward C2, Gram–Schmidt against u) of the parameters, in units of parameter distance. Each checkpoint's
  own point has the coefficients (1, 0, 0), (0, 1, 0), (0, 0, 1): that checkpoint exactly. Buffers (BN running
  statistics) follow the same combination.
- ``directions`` (Li et al. 2018): the states are C, d1, d2 with coefficients (1, x, y); the directions are zero on
  buffers (they stay at C's values) and, unless asked, on tensors of one dimension.
- ``trajectory`` (Li et al. 2018, Fig. 10): the states are Cm, u, v, with u and v the top two principal directions
  of the centred differences Ci − Cm (i < m) of the parameters, computed in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .engine import Point, PointResult
from .errors import UsageError, opt
from .options import Directions
from .schema import PLANE_RESULT_COLUMNS, PLANE_RESULT_DTYPES, PLANE_SUMMARY_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

State = Mapping[str, torch.Tensor]

CHECKPOINTS, DIRECTIONS, TRAJECTORY = "checkpoints", "directions", "trajectory"
CURVE = "plane"  # the curve name of every plane point (results.csv has no curve column)


@dataclass(frozen=True)
class Anchor:
    """A checkpoint's place on the plane: its label, its index among the checkpoints given, its coordinates,
    and whether its own network lies on the plane (every checkpoint of a plane does; of a trajectory, only the
    last: the others are projected onto it)."""

    label: str
    index: int
    x: float
    y: float
    on_plane: bool = True


@dataclass(frozen=True)
class Basis:
    """The states the engine combines, the directions u and v (float32, every floating tensor of the model: what
    directions.safetensors holds, θ(x, y) = origin + x·u + y·v), the checkpoints' coordinates, and how the basis
    was made (for run.json)."""

    kind: str
    description: str
    states: tuple[dict[str, torch.Tensor], ...]
    u: dict[str, torch.Tensor]
    v: dict[str, torch.Tensor] | None
    anchors: tuple[Anchor, ...]
    # checkpoints: (‖C1 − C0‖, ⟨C2 − C0, u⟩, ‖the part of C2 − C0 orthogonal to u‖), the barycentric map's frame
    frame: tuple[float, float, float] | None = None
    seed: int | None = None
    normalization: str | None = None
    keep_1d: bool | None = None
    explained_variance_ratio: tuple[float, ...] | None = None

    @property
    def dims(self) -> int:
        return 1 if self.v is None else 2

    def mix(self, x: float, y: float) -> tuple[float, ...]:
        """The engine's coefficients of the point (x, y), one per state."""
        if self.frame is not None:
            n1, p, q = self.frame
            a2 = y / q
            a1 = (x - a2 * p) / n1
            return (1.0 - a1 - a2, a1, a2)
        return (1.0, x) if self.v is None else (1.0, x, y)


def _parameters(names: Sequence[str], state: State) -> list[str]:
    return [n for n in names if state[n].is_floating_point()]


def _flat(state: State, names: Sequence[str]) -> torch.Tensor:
    return torch.cat([state[n].detach().double().flatten() for n in names])


def _floating(state: State) -> list[str]:
    return [n for n, t in state.items() if t.is_floating_point()]


def _unflatten(vector: torch.Tensor, state: State, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """A flat float64 vector over ``names`` as float32 tensors of ``state``'s shapes, zero on its other floating
    tensors."""
    out = {n: torch.zeros(state[n].shape, dtype=torch.float32) for n in _floating(state)}
    offset = 0
    for n in names:
        size = state[n].numel()
        out[n] = vector[offset : offset + size].view(state[n].shape).float()
        offset += size
    return out


def _as_state(directions: Mapping[str, torch.Tensor], like: State) -> dict[str, torch.Tensor]:
    """A state the engine can combine: the directions on floating tensors, ``like``'s own integer tensors."""
    return {n: directions.get(n, t) for n, t in like.items()}


def checkpoint_basis(states: Sequence[State], parameters: Sequence[str], labels: Sequence[str]) -> Basis:
    """The plane through three checkpoints (Garipov et al.): origin C0, u toward C1, v toward C2 orthogonal to u.

    Raises:
        UsageError: C1 equals C0, or C2 lies on the line through C0 and C1 (no plane).
    """
    c0, c1, c2 = states
    params = _parameters(parameters, c0)
    d1 = _flat(c1, params) - _flat(c0, params)
    d2 = _flat(c2, params) - _flat(c0, params)
    n1 = float(d1.norm())
    if n1 == 0.0:
        raise UsageError(f"{labels[0]} and {labels[1]} are the same network: no plane runs through them")
    u = d1 / n1
    p = float(d2 @ u)
    residual = d2 - p * u
    q = float(residual.norm())
    if q <= 1e-9 * max(float(d2.norm()), n1):
        raise UsageError(
            f"{labels[2]} lies on the line through {labels[0]} and {labels[1]}: the three span no plane",
            hint="give three checkpoints that are not on one line",
        )
    # u and v over every floating tensor, buffers included: the same linear map as the coefficients, so that
    # C0 + x·u + y·v rebuilds each point's buffers as well as its parameters
    full_u, full_v = {}, {}
    for n in _floating(c0):
        a, b, c = (s[n].detach().double() for s in (c0, c1, c2))
        uu = (b - a) / n1
        full_u[n] = uu.float()
        full_v[n] = ((c - a - p * uu) / q).float()
    anchors = (Anchor(labels[0], 0, 0.0, 0.0), Anchor(labels[1], 1, n1, 0.0), Anchor(labels[2], 2, p, q))
    return Basis(
        CHECKPOINTS,
        f"origin {labels[0]}; u the unit vector toward {labels[1]}, v toward {labels[2]} orthogonal to u "
        "(Gram–Schmidt over the parameters); x, y in units of parameter distance; buffers follow the same "
        "affine combination",
        tuple(dict(s) for s in states),
        full_u,
        full_v,
        anchors,
        frame=(n1, p, q),
    )


def _scaled(d: torch.Tensor, w: torch.Tensor, how: Directions) -> torch.Tensor:
    """``d`` rescaled to ``w``: per slice along the first dimension (filter), as a whole (layer), or not."""
    if how is Directions.NONE:
        return d
    if how is Directions.LAYER or d.dim() == 0:
        scaled: torch.Tensor = d * (w.norm() / d.norm())
        return scaled
    flat_d, flat_w = d.reshape(d.shape[0], -1), w.reshape(w.shape[0], -1)
    scale = flat_w.norm(dim=1) / flat_d.norm(dim=1)
    per_slice: torch.Tensor = (flat_d * scale[:, None]).view(d.shape)
    return per_slice


def direction_basis(
    state: State, parameters: Sequence[str], label: str, *, seed: int, how: Directions, keep_1d: bool, dims: int
) -> Basis:
    """Random Gaussian directions around one network (Li et al.): drawn seeded, parameter by parameter in the
    model's order, then scaled per ``how``; zero on buffers and, without ``keep_1d``, on tensors of one
    dimension. Not orthogonalised: per-slice scaling would undo it, and two Gaussian directions in many
    dimensions are orthogonal to about 1/√n."""
    generator = torch.Generator().manual_seed(seed)
    params = _parameters(parameters, state)
    drawn: list[dict[str, torch.Tensor]] = []
    for _ in range(dims):
        direction = {n: torch.zeros(state[n].shape, dtype=torch.float32) for n in _floating(state)}
        for n in params:
            w = state[n].detach().double()
            d = torch.randn(w.shape, generator=generator, dtype=torch.float64)  # drawn always: same seed, same d
            if w.dim() <= 1 and not keep_1d:
                continue
            direction[n] = _scaled(d, w, how).float()
        drawn.append(direction)
    u, v = drawn[0], drawn[1] if dims == 2 else None
    kept = "kept" if keep_1d else "zero"
    return Basis(
        DIRECTIONS,
        f"random Gaussian directions around {label} (seed {seed}), normalised per {how.value} "
        f"(tensors of one dimension {kept}); x, y in units of the directions; buffers stay at {label}'s values",
        (dict(state), *(_as_state(d, state) for d in drawn)),
        u,
        v,
        (Anchor(label, 0, 0.0, 0.0),),
        seed=seed,
        normalization=how.value,
        keep_1d=keep_1d,
    )


def trajectory_basis(states: Sequence[State], parameters: Sequence[str], labels: Sequence[str]) -> Basis:
    """The top two principal directions of the centred differences Ci − Cm (i < m) of the parameters (Li et al.;
    float64 SVD), each checkpoint projected onto them: ((Ci − Cm)·u, (Ci − Cm)·v). Each direction's sign makes
    its largest entry positive.

    Raises:
        UsageError: fewer than four checkpoints (three differences, centred, span at most two directions), or
            checkpoints whose differences span fewer than two.
    """
    if len(states) < 4:
        raise UsageError(
            f"a trajectory needs four or more checkpoints, got {len(states)}",
            hint="the centred differences of three checkpoints span one direction; give the checkpoints saved along "
            "training",
        )
    last = states[-1]
    params = _parameters(parameters, last)
    end = _flat(last, params)
    diffs = torch.stack([_flat(s, params) - end for s in states[:-1]])
    centred = diffs - diffs.mean(0, keepdim=True)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    if len(singular) < 2 or float(singular[1]) <= 1e-12 * max(float(singular[0]), 1e-300):
        raise UsageError("the checkpoints' differences span fewer than two directions: no plane to draw")
    directions = []
    for k in range(2):
        d = vh[k]
        if float(d[d.abs().argmax()]) < 0:
            d = -d
        directions.append(d)
    variance = singular.square()
    ratio = tuple(float(r) for r in (variance / variance.sum())[:2])
    anchors = tuple(
        Anchor(
            labels[i],
            i,
            float((_flat(s, params) - end) @ directions[0]) if i < len(states) - 1 else 0.0,
            float((_flat(s, params) - end) @ directions[1]) if i < len(states) - 1 else 0.0,
            on_plane=i == len(states) - 1,
        )
        for i, s in enumerate(states)
    )
    u, v = (_unflatten(d, last, params) for d in directions)
    return Basis(
        TRAJECTORY,
        f"around {labels[-1]}: the top two principal directions of the centred differences Ci − {labels[-1]} of the "
        "parameters (float64 SVD); checkpoints projected as ((Ci − Cm)·u, (Ci − Cm)·v); buffers stay at "
        f"{labels[-1]}'s values",
        (dict(last), _as_state(u, last), _as_state(v, last)),
        u,
        v,
        anchors,
        explained_variance_ratio=ratio,
    )


# ---------------------------------------------------------------------------------------------------- the grid


def _steps(lo: float, hi: float, n: int) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def box(anchors: Sequence[Anchor], margin: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """The anchors' bounding box widened by ``margin`` of its size on each side (x range, y range)."""
    spans = []
    for values in ([a.x for a in anchors], [a.y for a in anchors]):
        lo, hi = min(values), max(values)
        size = hi - lo or max(abs(lo), 1.0)  # a flat side still gets a width to draw
        spans.append((lo - margin * size, hi + margin * size))
    return spans[0], spans[1]


@dataclass(frozen=True)
class GridPoint:
    x: float
    y: float
    anchor: int | None = None  # the checkpoint whose own network this point is
    on_grid: bool = True  # on the N × N lattice (False: an anchor the lattice misses, added)


@dataclass(frozen=True)
class PlaneGrid:
    points: tuple[GridPoint, ...]
    x_range: tuple[float, float]
    y_range: tuple[float, float] | None
    size: int
    margin: float | None
    clamped: tuple[bool, ...] = field(default=())  # per point: a BN running variance clamped at 0


def make_grid(basis: Basis, size: int, *, margin: float | None, span: tuple[float, float] | None) -> PlaneGrid:
    """The lattice (size × size, or size points on a line) over the checkpoints' box widened by ``margin``, or
    over ``span`` in each coordinate; every anchor on the plane is on it, added where the lattice misses it."""
    if span is not None:
        xr = span
        yr: tuple[float, float] | None = span if basis.dims == 2 else None
    else:
        assert margin is not None
        xr, yr = box(basis.anchors, margin)
    xs = _steps(*xr, size)
    ys = _steps(*yr, size) if yr is not None else [0.0]
    on_plane = {(a.x, a.y): a.index for a in basis.anchors if a.on_plane}
    points = [GridPoint(x, y, on_plane.pop((x, y), None)) for y in ys for x in xs]
    points += [GridPoint(x, y, i, on_grid=False) for (x, y), i in on_plane.items()]
    return PlaneGrid(tuple(points), xr, yr, size, margin)


def engine_points(basis: Basis, grid: PlaneGrid) -> list[Point]:
    return [Point(CURVE, 0.0, mix=basis.mix(p.x, p.y)) for p in grid.points]


def clamped_variances(basis: Basis, points: Sequence[Point], variances: Sequence[str]) -> list[bool]:
    """Per point, whether a combined BN running variance is negative (the engine clamps it at 0): computed as
    the engine combines them (float32 products summed in order), so the same points."""
    flags = [False] * len(points)
    if not variances:
        return flags
    mixes = torch.tensor([p.mix for p in points], dtype=torch.float32)
    for name in variances:
        stacked = [s[name].detach().float() for s in basis.states]
        total = stacked[0] * mixes[:, :1]
        for k in range(1, len(stacked)):
            total = total + stacked[k] * mixes[:, k : k + 1]
        negative = (total < 0).any(dim=1)
        flags = [f or bool(n) for f, n in zip(flags, negative.tolist(), strict=True)]
    return flags


# -------------------------------------------------------------------------------------------------- the tables


def results_frame(grid: PlaneGrid, results: Sequence[PointResult], splits: Sequence[str]) -> pd.DataFrame:
    """results.csv of a plane: a row per (point, split), points in grid order (lattice by rows of y, then the
    added anchors), ``anchor`` the checkpoint's index on its own point."""
    import pandas as pd

    by_point = len(splits)
    rows = []
    clamped = grid.clamped or (False,) * len(grid.points)
    for i, (p, flag) in enumerate(zip(grid.points, clamped, strict=True)):
        for r in results[i * by_point : (i + 1) * by_point]:
            rows.append(
                {
                    "x": p.x,
                    "y": p.y,
                    "split": r.split,
                    "loss": r.loss,
                    "loss_se": r.loss_se,
                    "accuracy": r.accuracy,
                    "n": r.n,
                    "anchor": p.anchor,
                    "on_grid": p.on_grid,
                    "bn_clamped": flag,
                }
            )
    frame = pd.DataFrame(rows, columns=PLANE_RESULT_COLUMNS)
    return typed(frame)


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """results.csv's dtypes: anchor a nullable whole number, the flags nullable booleans."""
    return frame.astype({**PLANE_RESULT_DTYPES, "anchor": "Int64"})


def summary_frame(results: pd.DataFrame, anchors: Sequence[Anchor]) -> pd.DataFrame:
    """summary.csv of a plane: per split, a row per checkpoint on the plane (its loss and accuracy there) and
    the grid's minimum loss (``point`` minimum; its x, y; NaN when no loss is finite)."""
    import numpy as np
    import pandas as pd

    labels = {a.index: a.label for a in anchors}
    rows: list[dict[str, Any]] = []
    for split, g in results.groupby("split", sort=False):
        for _, r in g[g["anchor"].notna()].sort_values("anchor").iterrows():
            a = int(r["anchor"])
            rows.append(
                {"split": split, "point": labels[a], "anchor": a, "x": r["x"], "y": r["y"]}
                | {"loss": r["loss"], "accuracy": r["accuracy"]}
            )
        finite = g[np.isfinite(g["loss"].to_numpy(dtype=float))]
        best = finite.loc[finite["loss"].idxmin()] if len(finite) else None
        rows.append(
            {
                "split": split,
                "point": "minimum",
                "anchor": None,
                "x": math.nan if best is None else best["x"],
                "y": math.nan if best is None else best["y"],
                "loss": math.nan if best is None else best["loss"],
                "accuracy": math.nan if best is None else best["accuracy"],
            }
        )
    frame = pd.DataFrame(rows, columns=PLANE_SUMMARY_COLUMNS)
    return frame.astype({"anchor": "Int64", "x": "float64", "y": "float64", "loss": "float64", "accuracy": "float64"})


def direction_tensors(basis: Basis) -> dict[str, torch.Tensor]:
    """directions.safetensors' tensors: ``u.<name>`` and ``v.<name>`` (no v for one direction), contiguous."""
    out = {f"u.{n}": t.contiguous() for n, t in basis.u.items()}
    if basis.v is not None:
        out |= {f"v.{n}": t.contiguous() for n, t in basis.v.items()}
    return out


def check_kind(kind: str, count: int, directions: Directions | None) -> None:
    """The checkpoints a plane takes: three, or one with directions; a trajectory four or more.

    Raises:
        UsageError: another count, or directions with other than one checkpoint.
    """
    if kind == TRAJECTORY:
        return
    if directions is not None and count != 1:
        raise UsageError(
            f"{opt('directions')} draws random directions around one checkpoint, and {count} were given",
            hint="give one checkpoint, or three for the plane through them (without directions)",
        )
    if count not in (1, 3):
        raise UsageError(
            f"a plane goes through three checkpoints, or around one along random directions; got {count}",
            hint="give three (the plane through them) or one (random directions around it); the line between two is "
            "what run scans, and four or more checkpoints of one training run make a trajectory",
        )

"""Points on the path: which network each one is, what it measured, and which of them coincide."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Point:
    """One network on the path: tensors in ``moving`` (all when None) sit at ``alpha``; the others at ``hold``.

    ``hold`` is an interpolation coefficient too: 1.0 keeps a tensor at its final value (the seed paper's
    layer-wise scan), 0.0 at its initial value. ``segment`` says which segment of a path through several
    checkpoints the point lies on (1 for a path between two); the engine evaluates one segment at a time, so
    "initial" and "final" are that segment's two checkpoints. ``refined`` marks a point added by adaptive
    refinement (api.py), not on the grid.

    ``mix`` makes the point a linear combination of the engine's K states instead (start, end, then the
    ``basis`` states; one coefficient each, every tensor alike): Σ_k mix[k]·state_k. A plane through three
    checkpoints gives barycentric coefficients (summing to 1, so (1, 0, 0) is the first checkpoint exactly); a
    surface around one network along directions gives (1, x, y). ``alpha`` and ``moving`` do not apply then.
    """

    curve: str
    alpha: float
    moving: frozenset[str] | None = None
    hold: float = 1.0
    segment: int = 1
    refined: bool = False
    mix: tuple[float, ...] | None = None

    def coefficient(self, name: str) -> float:
        return self.alpha if self.moving is None or name in self.moving else self.hold


@dataclass(frozen=True)
class PointResult:
    """Loss and accuracy of one point on one split. ``loss_se`` is the standard error of the mean loss."""

    point: Point
    split: str
    loss: float
    loss_se: float
    accuracy: float
    n: int
    losses: torch.Tensor | None = None  # (n,) float32: each example's loss, when the engine keeps examples
    hits: torch.Tensor | None = None  # (n,) bool: each example classified right (classification only)


def untie(point: Point, aliases: Mapping[str, str]) -> Point:
    """A point that moves any name of a tied tensor moves the tensor (under its first name)."""
    if point.moving is None or not aliases or not (point.moving & aliases.keys()):
        return point
    moving = point.moving | {aliases[n] for n in point.moving if n in aliases}
    return replace(point, moving=frozenset(moving))


def dedupe(points: Sequence[Point], names: Sequence[str]) -> tuple[list[Point], list[int]]:
    """Evaluate each distinct network once: points with equal coefficients on every tensor coincide.

    Returns the distinct points (first occurrence first) and, for each input point, its index among them.
    """
    unique: list[Point] = []
    where: dict[tuple[float, ...], int] = {}
    index: list[int] = []
    for p in points:
        key = p.mix if p.mix is not None else tuple(p.coefficient(n) for n in names)
        if key not in where:
            where[key] = len(unique)
            unique.append(p)
        index.append(where[key])
    return unique, index

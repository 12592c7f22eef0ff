"""Plane runs made by hand, with a known surface: a quadratic bowl whose minimum sits away from the checkpoints, on
a lattice plus the checkpoints' own points, in the files `interpscan plane` and `trajectory` write (results.csv
with x, y, anchor, on_grid and bn_clamped; summary.csv a row per checkpoint and the minimum per split; run.json
with its plane section)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import old_runs
import pandas as pd

LATTICE = np.linspace(-1.0, 2.0, 7)  # x and y: c0 = (0, 0) falls on it ... (step 0.5)
# ... c1 and c2 do not: they are extra rows, marked by their index.
CHECKPOINTS = [(0.0, 0.0), (1.3, 0.0), (0.4, 1.1)]
TEST_OFFSET = 0.25  # the test loss sits this much above the train loss everywhere


def bowl(x: float, y: float, split: str = "train") -> float:
    """The loss: lowest (0.2 on train) at (0.8, 0.6), rising as a quadratic."""
    return 0.2 + (x - 0.8) ** 2 + 2.0 * (y - 0.6) ** 2 + (TEST_OFFSET if split == "test" else 0.0)


def accuracy(x: float, y: float) -> float:
    return max(0.1, 0.95 - 0.2 * ((x - 0.8) ** 2 + (y - 0.6) ** 2))


def plane_rows(
    checkpoints: Sequence[tuple[float, float]] = CHECKPOINTS,
    *,
    lattice: Sequence[float] = tuple(LATTICE),
    splits: Sequence[str] = ("test", "train"),
    line: bool = False,
    blowup: dict[tuple[float, float], float] | None = None,
    evaluated: Sequence[int] | None = None,
) -> pd.DataFrame:
    """A row per (split, point): the lattice (y = 0 throughout on a ``line``), then each checkpoint's point
    off the lattice; a lattice point that is a checkpoint carries its index. ``evaluated``: the checkpoints that
    have their own point [default: all] (a trajectory's origin alone). ``blowup`` sets the loss at some lattice
    points (NaN, inf, a huge number) as a far point's can be."""
    own = [(i, c) for i, c in enumerate(checkpoints) if evaluated is None or i in evaluated]
    ys = [0.0] if line else list(lattice)
    rows: list[dict[str, Any]] = []
    on_lattice = {(x, y) for x in lattice for y in ys}
    for split in splits:  # test first: the figure orders splits itself
        for y in ys:
            for x in lattice:
                index = next((i for i, c in own if c == (x, y)), None)
                rows.append(_row(split, x, y, index, (blowup or {}).get((x, y))))
        for i, (x, y) in own:
            if (x, y) not in on_lattice:
                rows.append(_row(split, x, y, i) | {"on_grid": False})
    return pd.DataFrame(rows).astype({"anchor": "Int64"})


def _row(split: str, x: float, y: float, anchor: int | None, loss: float | None = None) -> dict[str, Any]:
    return {
        "x": x,
        "y": y,
        "split": split,
        "loss": bowl(x, y, split) if loss is None else loss,
        "loss_se": 0.01,
        "accuracy": accuracy(x, y),
        "n": 500 if split == "test" else 1000,
        "anchor": anchor,
        "on_grid": True,
        "bn_clamped": False,
    }


def plane_section(
    kind: str,
    checkpoints: Sequence[tuple[float, float]],
    *,
    on_plane: Sequence[int] | None = None,
    explained_variance_ratio: Sequence[float] | None = None,
    bn_clamped_points: int = 0,
) -> dict[str, Any]:
    """run.json's plane section, every key `interpscan plane` writes; checkpoints labelled c<i>.pt, all on the
    plane unless ``on_plane`` says which (a trajectory's last)."""
    directions = kind == "directions"
    return {
        "kind": kind,
        "basis": f"made by hand ({kind})",
        "dims": 2,
        "anchors": [
            {"label": f"c{i}.pt", "index": i, "x": x, "y": y, "on_plane": on_plane is None or i in on_plane}
            for i, (x, y) in enumerate(checkpoints)
        ],
        "grid": len(LATTICE),
        "margin": None if directions else 0.2,
        "x_range": [float(LATTICE[0]), float(LATTICE[-1])],
        "y_range": [float(LATTICE[0]), float(LATTICE[-1])],
        "seed": 0 if directions else None,
        "normalization": "filter" if directions else None,
        "keep_1d": False if directions else None,
        "orthogonalised": not directions,
        "explained_variance_ratio": None if explained_variance_ratio is None else list(explained_variance_ratio),
        "bn_clamped_points": bn_clamped_points,
    }


def write_plane_run(directory: Path, rows: pd.DataFrame, section: dict[str, Any]) -> Path:
    """results.csv, summary.csv (per split: the loss at each checkpoint's own point, then the grid's minimum) and
    a run.json (an old run's, with ``section`` as its ``plane``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    rows.to_csv(directory / "results.csv", index=False, float_format="%.10g")
    table = []
    for split, of_split in rows.groupby("split", sort=False):
        anchored = of_split[of_split["anchor"].notna()].sort_values("anchor")
        for r in anchored.itertuples(index=False):
            point = {"split": split, "point": f"c{int(r.anchor)}.pt", "anchor": int(r.anchor)}
            table.append(point | {"x": r.x, "y": r.y, "loss": r.loss, "accuracy": r.accuracy})
        lowest = of_split.loc[of_split["loss"].astype(float).idxmin()]
        table.append(
            {"split": split, "point": "minimum", "anchor": None}
            | {k: lowest[k] for k in ("x", "y", "loss", "accuracy")}
        )
    pd.DataFrame(table).to_csv(directory / "summary.csv", index=False, float_format="%.10g")
    obj = old_runs.manifest().to_json()
    obj["plane"] = section
    (directory / "run.json").write_text(json.dumps(obj, indent=2, allow_nan=False))
    return directory


def finite(values: Sequence[Any]) -> list[float]:
    """The finite numbers among plotly's cells (None for a hole), flattened."""
    out: list[float] = []
    for v in values:
        if isinstance(v, (list, tuple, np.ndarray)):
            out += finite(list(v))
        elif v is not None and math.isfinite(float(v)):
            out.append(float(v))
    return out

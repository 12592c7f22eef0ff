"""The scan engine: evaluate a model at many points of the path between two states, in one pass over a stream
of batches.

| module | owns |
| --- | --- |
| ``core.py`` | ``scan_points``: the loop (data outer, points inner), the sums, ``EngineOptions``, ``EngineReport`` |
| ``points.py`` | ``Point`` (one network on the path), ``PointResult``, which points coincide |
| ``plan.py`` | the working copy of the model and the endpoint tensors, BN modules, autocast/TF32 |
| ``runners.py`` | the strategies behind one protocol: ``Sequential``, ``Batched`` (vmap) |
| ``prefix.py`` | the ``Prefix`` strategy: the forward pass up to each group shared (torch.fx) |
| ``calibration.py`` | batch-norm re-estimation for ``recompute`` |
| ``forward.py`` | the one place the user's forward pass is called, and its errors translated |
| ``snapshot.py`` | ``SplitSums`` and the typed ``Snapshot`` a scan resumes from |
"""

from __future__ import annotations

from ..progress import Progress
from .core import EngineOptions, EngineReport, scan_points
from .plan import batchnorm_modules, has_running_stats
from .points import Point, PointResult
from .snapshot import ScanSnapshot, Snapshot, SplitSums

__all__ = [
    "EngineOptions",
    "EngineReport",
    "Point",
    "PointResult",
    "Progress",
    "ScanSnapshot",
    "Snapshot",
    "SplitSums",
    "batchnorm_modules",
    "has_running_stats",
    "scan_points",
]

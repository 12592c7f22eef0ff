"""interpscan: the loss landscape along the straight line between two checkpoints, whole and layer-wise.

The public API is imported lazily so that ``interpscan --help`` does not pay for torch, pandas or plotly; type
checkers and IDEs read the same names from the static imports below (a test keeps the two lists equal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the same names, as explicit re-exports (`name as name`) for type checkers
    from .api import Hooks as Hooks
    from .api import ScanConfig as ScanConfig
    from .api import plane as plane
    from .api import run_plane as run_plane
    from .api import run_scan as run_scan
    from .api import scan as scan
    from .api import trajectory as trajectory
    from .checkpoints import load_checkpoint as load_checkpoint
    from .data import Split as Split
    from .data import Stream as Stream
    from .data import load_split as load_split
    from .data import open_data as open_data
    from .engine import EngineOptions as EngineOptions
    from .engine import Point as Point
    from .engine import scan_points as scan_points
    from .errors import InterpscanError as InterpscanError
    from .inputs import DataLike as DataLike
    from .inputs import ModelLike as ModelLike
    from .inputs import StateLike as StateLike
    from .layers import layer_report as layer_report
    from .manifest import Manifest as Manifest
    from .metrics import summarize_curve as summarize_curve
    from .models import build_model as build_model
    from .models import parse_model_spec as parse_model_spec
    from .options import BNPolicy as BNPolicy
    from .options import DType as DType
    from .options import Hold as Hold
    from .options import Inputs as Inputs
    from .options import MemoryFormat as MemoryFormat
    from .options import Mode as Mode
    from .options import OutputOptions as OutputOptions
    from .options import PlaneOptions as PlaneOptions
    from .options import ReadOptions as ReadOptions
    from .options import ScanOptions as ScanOptions
    from .options import Strategy as Strategy
    from .results import ScanResult as ScanResult
    from .results import load_runs as load_runs
    from .rundir import RunDirectory as RunDirectory
    from .rundir import write_outputs as write_outputs
    from .values import parse_grid as parse_grid

_API = {
    "scan": "api",
    "run_scan": "api",
    "plane": "api",
    "trajectory": "api",
    "run_plane": "api",
    "ScanResult": "results",
    "Manifest": "manifest",
    "ScanConfig": "api",
    "Hooks": "api",
    "StateLike": "inputs",
    "DataLike": "inputs",
    "ModelLike": "inputs",
    "Inputs": "options",
    "ReadOptions": "options",
    "ScanOptions": "options",
    "OutputOptions": "options",
    "PlaneOptions": "options",
    "Strategy": "options",
    "MemoryFormat": "options",
    "BNPolicy": "options",
    "DType": "options",
    "Hold": "options",
    "Mode": "options",
    "parse_grid": "values",
    "RunDirectory": "rundir",
    "write_outputs": "rundir",
    "load_runs": "results",
    "layer_report": "layers",
    "load_checkpoint": "checkpoints",
    "build_model": "models",
    "parse_model_spec": "models",
    "open_data": "data",
    "load_split": "data",
    "Split": "data",
    "Stream": "data",
    "Point": "engine",
    "EngineOptions": "engine",
    "scan_points": "engine",
    "summarize_curve": "metrics",
    "InterpscanError": "errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'interpscan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

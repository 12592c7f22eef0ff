"""interpscan: the loss landscape along the straight line between two checkpoints, whole and layer-wise.

The public API is imported lazily so that ``interpscan --help`` does not pay for torch, pandas or plotly.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "scan": "api",
    "ScanResult": "api",
    "ScanConfig": "api",
    "ReadOptions": "options",
    "run_scan": "api",
    "ScanOptions": "options",
    "Strategy": "options",
    "MemoryFormat": "options",
    "BNPolicy": "options",
    "DType": "options",
    "Hold": "options",
    "Mode": "options",
    "parse_grid": "options",
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

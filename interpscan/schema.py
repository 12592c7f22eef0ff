"""The output contract's tables: results.csv's and summary.csv's columns in order, their dtypes, the columns older
files may lack, and the names of a run directory's files. Written by tables.py and rundir.py, read by results.py;
standard library only, so that every layer may import it."""

from __future__ import annotations

from collections.abc import Iterable

# segment, t and refined are appended (column order is part of the contract): a path through checkpoints
# c0 → c1 → … → cm has segments 1…m, α local to its segment and t = segment − 1 + α the position along the whole
# path; refined marks the points --refine added to the grid.
RESULT_COLUMNS = [
    *("curve", "split", "alpha", "loss", "loss_se", "accuracy", "n", "hold", "mode"),
    *("segment", "t", "refined"),
]
WHOLE_PATH = 0  # summary.csv's segment of the rows that describe the whole path of a multi-segment run
# The shape metrics with a 95% bootstrap interval (uncertainty.py), and their summary.csv columns.
CI_METRICS = ("delta", "barrier_linear", "barrier_max", "error_barrier_linear", "error_barrier_max", "plateau_alpha")
CI_COLUMNS = [*(f"{m}_ci_{side}" for m in CI_METRICS for side in ("low", "high")), "rise_significant"]
SUMMARY_COLUMNS = [
    "curve",
    "split",
    "loss_start",
    "loss_end",
    "delta",
    "monotone",
    "barrier_linear",
    "barrier_linear_alpha",
    "barrier_max",
    "barrier_max_alpha",
    "error_barrier_linear",
    "error_barrier_max",
    "distance",
    "relative_distance",
    "cosine",
    "hold",
    "mode",
    "plateau_alpha",  # appended, not inserted: column order is part of the contract
    "nonfinite_points",  # grid points whose loss is NaN or ±inf (kept as they are in results.csv)
    *CI_COLUMNS,  # 95% bootstrap intervals over examples; NaN / NA without --bootstrap
    "segment",  # 1…m; WHOLE_PATH (0) for the whole path through three or more checkpoints (its α columns hold t)
]
# Numeric columns and their dtypes (text columns are strings; ``monotone`` a nullable boolean).
RESULT_DTYPES = {
    "alpha": "float64",
    "loss": "float64",
    "loss_se": "float64",
    "accuracy": "float64",
    "n": "int64",
    "segment": "int64",
    "t": "float64",
    "refined": "boolean",
}
SUMMARY_DTYPES = {
    **{c: "float64" for c in SUMMARY_COLUMNS if c not in ("curve", "split", "monotone", "hold", "mode")},
    "monotone": "boolean",
    "nonfinite_points": "int64",
    "rise_significant": "boolean",
    "segment": "int64",
}
# Columns a file may lack: hold and mode came with layer groups, plateau_alpha and nonfinite_points later still,
# then the bootstrap's intervals, then paths through several checkpoints (segment, t) and refinement.
OPTIONAL_COLUMNS = frozenset(
    {"hold", "mode", "plateau_alpha", "nonfinite_points", *CI_COLUMNS, "segment", "t", "refined"}
)
RESULT_REQUIRED = tuple(c for c in RESULT_COLUMNS if c not in OPTIONAL_COLUMNS)
SUMMARY_REQUIRED = tuple(c for c in SUMMARY_COLUMNS if c not in OPTIONAL_COLUMNS)
RUN_FILES = ("results.csv", "summary.csv", "run.json")  # what makes a run; results.html is drawn from them
PARTIAL_NAME = ".interpscan-partial.pt"  # what an interrupted run leaves beside them (one per rank under torchrun)

# A plane's results.csv (``interpscan plane`` and ``trajectory``): a row per (point, split), the point's
# coordinates x, y in the plane instead of α, and ``anchor``, a checkpoint's index on its own point (empty
# elsewhere). y is absent or constant on a 1-D random line.
PLANE_RESULT_REQUIRED = ("x", "split", "loss", "loss_se", "accuracy", "n")
PLANE_RESULT_DTYPES = {
    "x": "float64",
    "y": "float64",
    "loss": "float64",
    "loss_se": "float64",
    "accuracy": "float64",
    "n": "int64",
    "anchor": "float64",  # an index, NaN where empty
}


def is_plane_header(columns: Iterable[object]) -> bool:
    """Whether a results table with these columns is a plane's (x, no α) rather than a line's."""
    names = {str(c) for c in columns}
    return "x" in names and "alpha" not in names

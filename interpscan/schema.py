"""The output contract's tables: results.csv's and summary.csv's columns in order, their dtypes, the columns older
files may lack, and the names of a run directory's files. Written by tables.py and rundir.py, read by results.py;
standard library only, so that every layer may import it."""

from __future__ import annotations

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

# A plane run (interpscan plane, trajectory): a row per (point, split); x, y the point's coordinates, anchor the
# index of the checkpoint whose own network the point is (empty elsewhere), on_grid False for such a point added
# beside the lattice, bn_clamped True where an interpolated BN running variance was clamped at 0.
PLANE_RESULT_COLUMNS = ["x", "y", "split", "loss", "loss_se", "accuracy", "n", "anchor", "on_grid", "bn_clamped"]
PLANE_RESULT_DTYPES = {
    "x": "float64",
    "y": "float64",
    "loss": "float64",
    "loss_se": "float64",
    "accuracy": "float64",
    "n": "int64",
    "anchor": "float64",  # read as numbers (empty: NaN), then a nullable whole number
    "on_grid": "boolean",
    "bn_clamped": "boolean",
}
PLANE_RESULT_REQUIRED = tuple(PLANE_RESULT_COLUMNS)
# per split: a row per checkpoint on the plane (point = its label) and one for the grid's minimum loss
PLANE_SUMMARY_COLUMNS = ["split", "point", "anchor", "x", "y", "loss", "accuracy"]
PLANE_SUMMARY_DTYPES = {"anchor": "float64", "x": "float64", "y": "float64", "loss": "float64", "accuracy": "float64"}
PLANE_SUMMARY_REQUIRED = tuple(PLANE_SUMMARY_COLUMNS)

"""Comparing runs: the shape of each run's path against its final loss and accuracy, with Spearman rank
correlations across runs — the seed paper's question, whether the shape of the path predicts how well the
network does, as one table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import OutputError, UsageError, opt
from .metrics import plateau_alpha
from .report import PLOTLYJS_FILE, page_files, refuse_inputs, render_page, run_labels, table_html
from .results import ScanResult
from .rundir import csv_text, open_output_dir
from .schema import RUN_FILES
from .values import check_label, check_path

SHAPE_METRICS = {
    "delta": "Δ",
    "monotone": "monotone",
    "barrier_linear": "B_lin",
    "barrier_max": "B_max",
    "plateau_alpha": "plateau α",
    "loss_start": "L(0)",
    "distance": "‖θ_final − θ_init‖",
}
"""The whole-network summary.csv columns compared, with their short names."""

OUTCOMES = {"final_loss": "final loss", "final_accuracy": "final accuracy"}
"""How well each run does: its scan's α=1 point on the compared split."""

GROUP_PREFIX = "loss_start:"
"""Per-group columns: ``loss_start:GROUP``, L(0) of the group's curve (the network with that group rewound)."""

MIN_RUNS = 3
"""Spearman's ρ is reported from this many runs on: with two it is always ±1."""

COMPARE_FILES = ("compare.csv", "correlations.csv", "compare.html")


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, int]:
    """Spearman's rank correlation ρ: Pearson's correlation of the two samples' ranks (ties averaged), as pandas
    computes it (``DataFrame.corr``, which ranks on its own; ``Series.corr`` would need scipy).

    Pairs where either value is NaN or infinite are left out. Returns (ρ, number of pairs used); ρ is NaN with
    fewer than ``MIN_RUNS`` pairs or when one side is constant (its ranks have no variance).

    Raises:
        ValueError: ``x`` and ``y`` differ in length.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)})")
    pairs = pd.DataFrame({"x": x, "y": y}, dtype="float64").replace([math.inf, -math.inf], math.nan).dropna()
    rho = pairs.corr(method="spearman", min_periods=MIN_RUNS).to_numpy()[0, 1]
    return float(rho), len(pairs)


@dataclass(frozen=True)
class Comparison:
    """What ``interpscan compare`` shows: a row per run, a row per (metric, outcome) correlation, and notes."""

    table: pd.DataFrame  # run, bn, split, final_loss, final_accuracy, SHAPE_METRICS, loss_start:GROUP…, path
    correlations: pd.DataFrame  # metric, outcome, n, spearman: one row per (metric, outcome)
    split: str  # the split the metrics and outcomes come from
    notes: tuple[str, ...]  # what a reader must know: the split chosen, differing policies, too few runs
    runs: tuple[ScanResult, ...]
    labels: tuple[str, ...]

    @property
    def metrics(self) -> list[tuple[str, str]]:
        """(column, name) of every compared metric: the shape metrics, then each group's L(0)."""
        groups = [c for c in self.table.columns if str(c).startswith(GROUP_PREFIX)]
        return [*SHAPE_METRICS.items(), *((c, f"L(0), {c[len(GROUP_PREFIX) :]} rewound") for c in groups)]


def _splits(run: ScanResult) -> list[str]:
    rows = run.results[run.results["curve"].astype(str) == "all"]
    return [str(s) for s in pd.unique(rows["split"])]


def _choose_split(runs: Sequence[ScanResult], labels: Sequence[str], split: str) -> tuple[str, list[str]]:
    """The split to compare on, and a note when it is not the test split asked for by default."""
    available = {label: _splits(run) for run, label in zip(runs, labels, strict=True)}
    held = {label: ",".join(splits) or "none" for label, splits in available.items()}
    if split != "auto":
        lacking = [label for label, splits in available.items() if split not in splits]
        if lacking:
            raise UsageError(
                f"{opt('split', split)}: not in {', '.join(lacking)} "
                f"(which hold {'; '.join(f'{x}: {held[x]}' for x in lacking)})",
                hint="compare on a split every run has",
            )
        return split, []
    if all("test" in splits for splits in available.values()):
        return "test", []
    common = [s for s in ("train", *next(iter(available.values()))) if all(s in v for v in available.values())]
    if not common:
        raise UsageError(
            "the runs share no split: " + "; ".join(f"{x}: {held[x]}" for x in available),
            hint=f"scan every run on the same split ({opt('splits', 'test')})",
        )
    lacking = [label for label, splits in available.items() if "test" not in splits]
    return common[0], [
        f"no test split in {', '.join(lacking)}: the final loss and accuracy and the shape metrics are from the "
        f"{common[0]} split of every run"
    ]


def _group_column(curve: str, hold: Any, mode: Any) -> str:
    """``loss_start:GROUP``; a variant other than the seed paper's (others at final, the group alone moves)
    is named too: ``loss_start:GROUP[init,all-but]``."""
    hold = "" if pd.isna(hold) else str(hold)
    mode = "" if pd.isna(mode) else str(mode)
    suffix = "" if (hold, mode) in (("final", "only"), ("", "")) else f"[{hold},{mode}]"
    return f"{GROUP_PREFIX}{curve}{suffix}"


def _first_segment(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the path's first segment, init → final (all rows of a run without segments): on a path
    through several checkpoints, compare judges the trained network at the end of the first segment."""
    if "segment" not in frame.columns:
        return frame
    return frame[pd.to_numeric(frame["segment"], errors="coerce") == 1]


def _run_row(run: ScanResult, label: str, split: str) -> dict[str, Any]:
    results = _first_segment(run.results)
    whole = results[(results["curve"].astype(str) == "all") & (results["split"].astype(str) == split)]
    alphas = pd.to_numeric(whole["alpha"], errors="coerce")
    at_end = whole[(alphas - 1.0).abs() < 1e-9]
    row: dict[str, Any] = {
        "run": label,
        "bn": run.manifest.bn.policy if run.has_manifest else "",
        "split": split,
        "final_loss": float(at_end["loss"].iloc[0]) if len(at_end) else math.nan,
        "final_accuracy": float(at_end["accuracy"].iloc[0]) if len(at_end) else math.nan,
    }
    summary = _first_segment(run.summary) if run.has_summary else pd.DataFrame(columns=["curve", "split"])
    of_split = summary[summary["split"].astype(str) == split]
    mine = of_split[of_split["curve"].astype(str) == "all"]
    for column in SHAPE_METRICS:
        value = mine[column].iloc[0] if len(mine) and column in mine.columns else math.nan
        row[column] = None if column == "monotone" and pd.isna(value) else value
    if "plateau_alpha" not in summary.columns and len(whole):
        # summary.csv from before the plateau column: compute it from the points, as the scan would have
        row["plateau_alpha"] = plateau_alpha(alphas.tolist(), pd.to_numeric(whole["loss"], errors="coerce").tolist())
    for _, group in of_split[of_split["curve"].astype(str) != "all"].iterrows():
        row[_group_column(str(group["curve"]), group.get("hold"), group.get("mode"))] = float(group["loss_start"])
    row["path"] = str(run.source or "")
    return row


def compare_runs(runs: Sequence[ScanResult], labels: Sequence[str] = (), *, split: str = "auto") -> Comparison:
    """Each run's shape metrics and final loss and accuracy, and their Spearman correlations across runs.

    The shape metrics are the whole-network row of each run's summary.csv on the compared split (plus each
    group's L(0)); the outcomes are the α=1 point of that split in its results.csv — the final weights,
    evaluated under the run's own BN policy. On a path through several checkpoints both come from its first
    segment, init → final.

    Args:
        runs: The runs, each with a summary (see ``results.load_runs(..., need_summary=True)``).
        labels: One label per run [default: ``report.run_labels``].
        split: ``auto`` (test when every run has it, else a split they all have, with a note saying so), or a
            split every run holds.

    Raises:
        UsageError: no runs, bad labels, or no split the runs share.
    """
    if not runs:
        raise UsageError("nothing to compare: give at least one run directory")
    plane = next((r for r in runs if r.is_plane), None)
    if plane is not None:
        raise UsageError(
            f"{plane.source or 'a run'} is a plane's run (x, y, no α): compare sets the shape of paths between "
            "checkpoints against how well the networks do, and a plane has no path to measure",
            hint="draw a plane with `interpscan plot`; compare the runs of `interpscan run`",
        )
    split = check_label(split, "split").strip()
    names = run_labels(runs, labels)
    chosen, notes = _choose_split(runs, names, split)
    table = pd.DataFrame([_run_row(run, label, chosen) for run, label in zip(runs, names, strict=True)])
    groups = sorted(c for c in table.columns if c.startswith(GROUP_PREFIX))
    columns = ["run", "bn", "split", *OUTCOMES, *SHAPE_METRICS, *groups, "path"]
    table = table[columns]
    table["monotone"] = table["monotone"].astype("boolean")

    comparison = Comparison(table, pd.DataFrame(), chosen, (), tuple(runs), tuple(names))
    rows = []
    for metric, _ in comparison.metrics:
        x = _numbers(table[metric])
        for outcome in OUTCOMES:
            rho, n = spearman(x, _numbers(table[outcome]))
            rows.append({"metric": metric, "outcome": outcome, "n": n, "spearman": rho})
    correlations = pd.DataFrame(rows, columns=["metric", "outcome", "n", "spearman"])

    policies = sorted({p for p in table["bn"] if p})
    if len(policies) > 1:
        notes.append(
            f"the runs use different BN policies ({', '.join(policies)}): their paths and L(1) differ for that "
            "reason alone; compare runs scanned under one policy"
        )
    notes.append(
        f"final loss and accuracy: each run's α=1 point on the {chosen} split, under its BN policy; "
        "the shape metrics are the whole network's on the same split"
    )
    if len(runs) < MIN_RUNS:
        notes.append(f"Spearman's ρ needs at least {MIN_RUNS} runs; {len(runs)} given")
    return Comparison(table, correlations, chosen, tuple(notes), tuple(runs), tuple(names))


def _numbers(column: pd.Series[Any]) -> list[float]:
    """Floats, NaN where missing; booleans as 0/1."""
    if pd.api.types.is_bool_dtype(column):
        column = column.astype("Float64")
    return [float(v) for v in pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=math.nan)]


def comparison_page(comparison: Comparison, *, plotlyjs: str = "inline") -> str:
    """The HTML page: scatter plots of each metric against each outcome with ρ, the table, the correlations,
    and each run's run.json."""
    from .plots import compare_figure

    title = f"{len(comparison.runs)} runs: shape of the path vs final {comparison.split} loss and accuracy"
    # A metric with one value in every run has nothing to show against the outcomes: tabled, not plotted.
    varying = [
        (c, name)
        for c, name in comparison.metrics
        if len({v for v in _numbers(comparison.table[c]) if math.isfinite(v)}) > 1
    ]
    same = [name for c, name in comparison.metrics if (c, name) not in varying]
    notes = list(comparison.notes)
    if same:
        notes.append(f"not plotted, the same in every run (or missing): {', '.join(same)}")
    figure = compare_figure(
        comparison.table,
        comparison.correlations,
        metrics=varying or comparison.metrics[:1],
        outcomes=[(c, f"{name} ({comparison.split})") for c, name in OUTCOMES.items()],
        title=title,
    )
    wide = comparison.correlations.pivot(index="metric", columns="outcome", values="spearman")
    wide = wide.reindex([c for c, _ in comparison.metrics])[list(OUTCOMES)].reset_index()
    wide.columns = ["metric", *(f"ρ vs {name}" for name in OUTCOMES.values())]
    wide.insert(1, "name", [dict(comparison.metrics)[m] for m in wide["metric"]])
    counts = comparison.correlations.groupby("metric", sort=False)["n"].min()
    wide["n"] = [int(counts[m]) for m in wide["metric"]]
    return render_page(
        title=title,
        figures=[("interpscan-compare", figure)],
        tables=[
            ("Runs", table_html(comparison.table, table_id="runs", caption="compare.csv; click a header to sort")),
            (
                "Spearman rank correlations across runs",
                table_html(wide, table_id="correlations", caption="from correlations.csv; NaN (blank) when undefined"),
            ),
        ],
        manifests=[
            (f"run.json of {label}", run.manifest)
            for run, label in zip(comparison.runs, comparison.labels, strict=True)
            if run.has_manifest
        ],
        notes=notes,
        plotlyjs=plotlyjs,
    )


def write_comparison(
    comparison: Comparison, out: Path, *, force: bool = False, plotlyjs: str = "inline"
) -> dict[str, Path]:
    """Write compare.csv (the table), correlations.csv (tidy: metric, outcome, n, spearman) and compare.html.

    Raises:
        OutputError: ``out`` holds a run (an input's or another's: a comparison gets a directory of its own), is
            not empty and ``force`` is not set, holds a file of these names that interpscan did not write (or a
            link), or cannot be written.
        UsageError: an unknown ``plotlyjs`` mode, or a path no file system can hold.
    """
    out = check_path(out, "out")
    refuse_inputs([out / name for name in (*COMPARE_FILES, PLOTLYJS_FILE)], comparison.runs)
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held:
        raise OutputError(
            f"{opt('out', str(out))} holds a run ({', '.join(held)}); a comparison goes in a directory of its own",
            hint=f"choose another {opt('out')}, e.g. the default interpscan-compare",
        )
    page = comparison_page(comparison, plotlyjs=plotlyjs)  # before touching the disk: a bad mode writes nothing
    files = {
        "compare.csv": csv_text(comparison.table),
        "correlations.csv": csv_text(comparison.correlations),
        **page_files("compare.html", page),
    }
    with open_output_dir(out, force=force, writes=(*COMPARE_FILES, PLOTLYJS_FILE)) as folder, folder.lock():
        return folder.write(files)

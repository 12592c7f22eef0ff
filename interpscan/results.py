"""Reading runs back: a run directory's (or a results.csv's) tables and manifest, and a short label per run."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OutputError, UsageError


def json_safe(obj: Any) -> Any:
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@dataclass(frozen=True)
class LoadedRun:
    """One run's outputs, read back (or just computed): its results, and the summary and manifest if any."""

    source: Path  # what the user named: a run directory or a results.csv
    csv: Path  # the results.csv
    results: Any  # pandas.DataFrame, the results.csv columns
    summary: Any | None  # pandas.DataFrame, the summary.csv columns; None when there is no summary.csv
    manifest: dict[str, Any] | None  # run.json; None when there is none


def _read_csv(path: Path) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot read {path} as CSV: {exc}") from exc


def load_run(path: Path, *, need_summary: bool = False) -> LoadedRun:
    """Read a run directory, or a results.csv and the summary.csv and run.json beside it.

    Raises:
        OutputError: the results.csv (or, with ``need_summary``, the summary.csv) is missing or unreadable, or
            run.json is not JSON.
    """
    path = Path(path)
    csv = path / "results.csv" if path.is_dir() else path
    if not csv.is_file():
        raise OutputError(f"results file not found: {csv}", hint="pass a results.csv written by `interpscan run`")
    summary_path, manifest_path = csv.with_name("summary.csv"), csv.with_name("run.json")
    if need_summary and not summary_path.is_file():
        raise OutputError(f"no summary.csv beside {csv}", hint="pass a run directory written by `interpscan run`")
    results = _read_csv(csv)
    summary = _read_csv(summary_path) if summary_path.is_file() else None
    manifest = None
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot read {manifest_path} as JSON: {exc}") from exc
    return LoadedRun(path, csv, results, summary, manifest if isinstance(manifest, dict) else None)


def load_runs(paths: Sequence[Path], *, need_summary: bool = False) -> list[LoadedRun]:
    """``load_run`` for each path; every problem is reported, in one error.

    Raises:
        OutputError: one or more runs cannot be read (each one's problem, in input order).
    """
    runs, problems = [], []
    for path in paths:
        try:
            runs.append(load_run(path, need_summary=need_summary))
        except OutputError as exc:
            problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise OutputError(
            f"{len(problems)} of {len(paths)} inputs cannot be read: " + "; ".join(p.message for p in problems),
            hint=problems[0].hint,
        )
    return runs


def get(manifest: Mapping[str, Any] | None, *keys: str) -> Any:
    value: Any = manifest
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def run_labels(runs: Sequence[LoadedRun], labels: Sequence[str] = ()) -> list[str]:
    """A short, distinct label per run: ``labels`` when given, else from each run's run.json.

    The default is the directory of the run's final checkpoint (``runs/wd0/final.pt`` gives ``wd0``), else of
    its results.csv; when the runs' BN policies differ, `` · POLICY`` is appended; when labels still collide,
    the results' directories relative to their common ancestor are used, and a last resort numbers them.

    Raises:
        UsageError: ``labels`` does not give exactly one distinct label per run.
    """
    if labels:
        if len(labels) != len(runs):
            raise UsageError(
                f"{len(labels)} --label value(s) for {len(runs)} input(s)", hint="give one --label per input, in order"
            )
        repeated = sorted({x for x in labels if list(labels).count(x) > 1})
        if repeated:
            raise UsageError(
                f"--label {', '.join(map(repr, repeated))} given more than once", hint="labels must differ"
            )
        return list(labels)

    def base(run: LoadedRun) -> str:
        final = get(run.manifest, "checkpoints", "final", "path")
        if isinstance(final, str) and Path(final).parent.name:
            return Path(final).parent.name
        return run.csv.parent.name or run.csv.stem

    policies = [str(get(r.manifest, "bn", "policy") or "") for r in runs]
    differ = len({p for p in policies if p}) > 1

    def with_policy(names: Sequence[str]) -> list[str]:
        return [f"{n} · {p}" if differ and p else n for n, p in zip(names, policies, strict=True)]

    names = with_policy([base(r) for r in runs])
    if len(set(names)) < len(names):
        dirs = [r.csv.parent.resolve() for r in runs]
        common = Path(os.path.commonpath(dirs)) if len(runs) > 1 else dirs[0].parent
        names = with_policy([str(d.relative_to(common)) if d != common else d.name for d in dirs])
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out

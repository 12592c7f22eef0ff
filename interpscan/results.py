"""Writing a scan's outputs: the output directory, atomic files, and the four products of a run.

results.csv (tidy points), summary.csv (one row per curve and split), run.json (the manifest) and
results.html (the interactive figure). Every file is written to a temporary sibling and renamed, so a reader
never sees half a file and an interrupted run never leaves one.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from .atomic import write_atomic
from .errors import OutputError

OUTPUT_FILES = ("results.csv", "summary.csv", "run.json", "results.html")


def prepare_output_dir(out: Path, *, force: bool) -> Path:
    """Create ``out``, refusing a non-empty directory unless ``force`` (then only our files are replaced).

    Raises:
        OutputError: ``out`` is a file, is non-empty without ``force``, or cannot be created or written.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a directory", hint="choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputError(
            f"output directory {out} is not empty",
            hint="choose another --out, or pass --force to replace interpscan's files in it",
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".interpscan-probe-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write to output directory {out}: {exc.strerror or exc}", hint="choose a writable --out"
        ) from exc
    return out


def _json_safe(obj: Any) -> Any:
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_csv(df: Any, path: Path) -> None:
    # 10 significant digits: far below any standard error, and the files stay readable and diffable.
    write_atomic(path, df.to_csv(index=False, float_format="%.10g", lineterminator="\n"))


def write_json(obj: Any, path: Path) -> None:
    write_atomic(path, json.dumps(_json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_outputs(result: Any, out: Path, *, html: bool = True) -> dict[str, Path]:
    """Write results.csv, summary.csv, run.json and (unless ``html`` is False) results.html into ``out``.

    ``out`` must already be prepared (see prepare_output_dir). Returns file name -> path.
    """
    paths = {name: out / name for name in OUTPUT_FILES}
    write_csv(result.results, paths["results.csv"])
    write_csv(result.summary, paths["summary.csv"])
    manifest = dict(result.manifest)
    manifest["outputs"] = [n for n in OUTPUT_FILES if html or n != "results.html"]
    write_json(manifest, paths["run.json"])
    if html:
        from .plots import path_figure, write_html

        model = manifest.get("model", {}).get("spec", "model")
        data = manifest.get("data", {}).get("name", "data")
        fig = path_figure(
            result.results,
            result.summary,
            title=f"{model} on {data}: θ(α) = (1−α)·θ_init + α·θ_final "
            f"(BN policy {manifest.get('bn', {}).get('policy', '?')})",
        )
        write_html(fig, paths["results.html"])
    else:
        del paths["results.html"]
    return paths


def plot_results(results: Path, out: Path | None = None, *, force: bool = False) -> Path:
    """Draw a results.csv (and the summary.csv beside it, if any) into a self-contained HTML page.

    Raises:
        OutputError: the CSV is missing or unreadable, or ``out`` exists and ``force`` is not set.
    """
    import pandas as pd

    from .plots import path_figure, write_html

    csv = results / "results.csv" if results.is_dir() else results
    if not csv.is_file():
        raise OutputError(f"results file not found: {csv}", hint="pass a results.csv written by `interpscan run`")
    try:
        frame = pd.read_csv(csv)
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot read {csv} as CSV: {exc}") from exc
    summary_path = csv.with_name("summary.csv")
    summary = pd.read_csv(summary_path) if summary_path.is_file() else None
    target = out or csv.with_name("results.html")
    if target.exists() and not force:
        raise OutputError(f"{target} exists", hint="pass --force to replace it, or --out to write elsewhere")
    write_html(path_figure(frame, summary, title=str(csv)), target)
    return target

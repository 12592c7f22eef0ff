"""Writing a scan's outputs and reading them back: the output directory, atomic files, the four products of a
run, and the HTML page that ``run``, ``plot`` and ``compare`` share.

results.csv (tidy points), summary.csv (one row per curve and split), run.json (the manifest) and
results.html (the interactive page). Every file is written to a temporary sibling and renamed, so a reader
never sees half a file and an interrupted run never leaves one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_path, write_atomic
from .errors import OutputError, UsageError

OUTPUT_FILES = ("results.csv", "summary.csv", "run.json", "results.html")


def prepare_output_dir(out: Path, *, force: bool) -> Path:
    """Create ``out``, refusing a non-empty directory unless ``force`` (then only our files are replaced).

    Raises:
        OutputError: ``out`` is a file, is non-empty without ``force``, or cannot be created or written.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a directory", hint="choose another --out")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()) and not force:
        if (out / PARTIAL_NAME).exists():
            raise OutputError(
                f"output directory {out} holds an interrupted scan",
                hint="add --resume to finish it, or --force to start afresh",
            )
        raise OutputError(
            f"output directory {out} is not empty",
            hint="choose another --out, or pass --force to replace interpscan's files in it",
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".interpscan-probe-"):
            pass
        free = shutil.disk_usage(out).free
    except OSError as exc:
        raise OutputError(
            f"cannot write to output directory {out}: {exc.strerror or exc}", hint="choose a writable --out"
        ) from exc
    if free < MIN_FREE_BYTES:
        raise OutputError(
            f"only {free / 2**20:.1f} MiB free where {out} is; a run writes up to about "
            f"{MIN_FREE_BYTES // 2**20} MiB (results.html inlines plotly.js)",
            hint="free some space or choose another --out",
        )
    return out


LOCK_NAME = ".interpscan.lock"
MIN_FREE_BYTES = 16 * 2**20  # the HTML page (~5 MB with plotly.js inlined), CSVs, run.json and a partial scan


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, and belongs to someone else
    return True


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.interpscan.lock`` (it holds the pid) while a command writes into ``out``, so that two runs
    never write one directory. A lock whose process no longer exists (a killed run) is taken over.

    Raises:
        OutputError: another live interpscan process holds the lock.
    """
    lock = out / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise OutputError(
                    f"another interpscan run (pid {pid}) is writing to {out}",
                    hint=f"wait for it to finish, or choose another --out (a stale lock is {lock})",
                ) from None
            lock.unlink(missing_ok=True)  # stale: the run that left it is gone
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    else:
        raise OutputError(f"cannot take the lock {lock}", hint="remove it if no interpscan run is writing there")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


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

    results.html is the page ``interpscan plot`` draws from these files (``path_page``), so a run's page and a
    redrawn one look the same. ``out`` must already be prepared (see prepare_output_dir). Returns file name ->
    path.
    """
    paths = {name: out / name for name in OUTPUT_FILES}
    write_csv(result.results, paths["results.csv"])
    write_csv(result.summary, paths["summary.csv"])
    manifest = dict(result.manifest)
    manifest["outputs"] = [n for n in OUTPUT_FILES if html or n != "results.html"]
    write_json(manifest, paths["run.json"])
    if html:
        run = LoadedRun(out, paths["results.csv"], result.results, result.summary, manifest)
        page, _ = path_page([run])
        write_page(paths["results.html"], page)
    else:
        del paths["results.html"]
    return paths


# --- reading runs back -------------------------------------------------------------------------------------


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


def _get(manifest: Mapping[str, Any] | None, *keys: str) -> Any:
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
        final = _get(run.manifest, "checkpoints", "final", "path")
        if isinstance(final, str) and Path(final).parent.name:
            return Path(final).parent.name
        return run.csv.parent.name or run.csv.stem

    policies = [str(_get(r.manifest, "bn", "policy") or "") for r in runs]
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


PATH_FORMULA = "θ(α) = (1−α)·θ_init + α·θ_final"


def run_title(manifest: Mapping[str, Any]) -> str:
    """The title of one run's page: model, data and BN policy, as ``interpscan run`` and ``plot`` both write it."""
    model = _get(manifest, "model", "spec") or "model"
    data = _get(manifest, "data", "name") or "data"
    policy = _get(manifest, "bn", "policy") or "?"
    return f"{model} on {data}: {PATH_FORMULA} (BN policy {policy})"


def runs_title(runs: Sequence[LoadedRun]) -> str:
    """The title of a page of ``runs``: ``run_title`` for one run with a run.json (its CSV's path without); for
    several, what they share (model, data, BN policy) and how many they are."""
    if len(runs) == 1:
        return run_title(runs[0].manifest) if runs[0].manifest is not None else str(runs[0].csv)
    manifests = [r.manifest for r in runs if r.manifest is not None]
    if not manifests:
        return f"{len(runs)} runs: {PATH_FORMULA}"

    def shared(*keys: str, several: str) -> str:
        values = {str(_get(m, *keys)) for m in manifests}
        return values.pop() if len(values) == 1 and len(manifests) == len(runs) else several

    model = shared("model", "spec", several="several models")
    data = shared("data", "name", several="several datasets")
    policy = shared("bn", "policy", several="per run, in the legend")
    return f"{model} on {data}, {len(runs)} runs: {PATH_FORMULA} (BN policy {policy})"


# --- the HTML page -----------------------------------------------------------------------------------------

_PAGE_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em 2em; color: #222; }
h1 { font-size: 1.3em; font-weight: 600; }
h2 { font-size: 1.1em; font-weight: 600; margin-top: 2em; }
p.note { color: #555; font-size: 0.9em; margin: 0.3em 0; }
table.sortable { border-collapse: collapse; font-size: 0.85em; font-variant-numeric: tabular-nums; }
table.sortable caption { caption-side: top; text-align: left; color: #555; padding-bottom: 0.4em; }
div.table { overflow-x: auto; }
table.sortable th, table.sortable td {
  border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; white-space: nowrap;
}
table.sortable th { cursor: pointer; user-select: none; background: #f4f4f4; position: sticky; top: 0; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
table.sortable td.text, table.sortable th.text { text-align: left; }
details { margin: 0.5em 0; }
details summary { cursor: pointer; }
details pre { background: #f7f7f7; padding: 0.8em; font-size: 0.8em; max-height: 40em; overflow: auto; }
footer { margin-top: 2em; color: #888; font-size: 0.8em; }
"""

# Click a header to sort by that column (numbers as numbers, blanks last); click again to reverse.
_SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var headers = table.querySelectorAll("thead th");
  headers.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-value"), y = b.cells[col].getAttribute("data-value");
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = Number(x), ny = Number(y);
        var cmp = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return ascending ? cmp : -cmp;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _cell(value: Any) -> tuple[str, str, bool]:
    """(shown text, sort value, is text) of one table cell: 4 significant digits, blanks for NaN."""
    import numpy as np
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return "", "", False
    if isinstance(value, (bool, np.bool_)):
        return ("yes" if value else "no"), ("1" if value else "0"), False
    if isinstance(value, (int, np.integer)):
        return str(value), str(value), False
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return (format(v, ".4g") if math.isfinite(v) else str(v)), repr(v), False
    return str(value), str(value), True


def table_html(frame: Any, *, table_id: str, caption: str = "") -> str:
    """A DataFrame as a sortable HTML table (click a header); numbers shown to 4 significant digits, sorted by
    their full value."""
    from html import escape

    columns = [str(c) for c in frame.columns]
    rows = [[_cell(v) for v in record] for record in frame.itertuples(index=False, name=None)]
    text_cols = [
        all(r[j][2] or r[j][0] == "" for r in rows) and any(r[j][2] for r in rows) for j in range(len(columns))
    ]
    parts = [f'<table class="sortable" id="{escape(table_id)}">']
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    align = [' class="text"' if is_text else "" for is_text in text_cols]  # text left, numbers right
    parts.append("<thead><tr>")
    parts += [f'<th scope="col"{a}>{escape(c)}</th>' for c, a in zip(columns, align, strict=True)]
    parts.append("</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>")
        parts += [
            f'<td data-value="{escape(sort)}"{a}>{escape(shown)}</td>'
            for (shown, sort, _), a in zip(row, align, strict=True)
        ]
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _compact_json(obj: Any, indent: int = 0) -> str:
    """JSON with sorted keys, two-space indents, and lists of scalars on one line (index lists stay short)."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {_compact_json(obj[k], indent + 1)}" for k in sorted(obj, key=str)]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(f"{inner}{_compact_json(v, indent + 1)}" for v in obj) + f"\n{pad}]"
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


def manifest_html(manifest: Mapping[str, Any], *, label: str) -> str:
    """run.json in a collapsed block, so a page sent to someone says how its numbers were made."""
    from html import escape

    text = _compact_json(_json_safe(dict(manifest)))
    return f"<details><summary>{escape(label)}</summary><pre>{escape(text)}</pre></details>"


def render_page(
    *,
    title: str,
    figures: Sequence[tuple[str, Any]] = (),
    tables: Sequence[tuple[str, str]] = (),
    manifests: Sequence[tuple[str, Mapping[str, Any]]] = (),
    notes: Sequence[str] = (),
    plotlyjs: str = "inline",
) -> str:
    """One self-contained HTML page: title, notes, figures, sortable tables, collapsed manifests.

    Args:
        title: The page's title and heading.
        figures: (div id, Plotly figure) pairs; ids must be unique on the page.
        tables: (heading, ``table_html`` output) pairs.
        manifests: (label, run.json) pairs, shown collapsed.
        notes: Short lines under the heading (plain text).
        plotlyjs: ``inline`` (default: works offline), ``cdn`` or ``directory`` (see ``plots.plotlyjs_html``).

    Raises:
        UsageError: an unknown ``plotlyjs`` mode.
    """
    from html import escape

    from . import __version__
    from .plots import figure_html, plotlyjs_html

    loader = plotlyjs_html(plotlyjs)
    body = [f"<h1>{escape(title)}</h1>"]
    body += [f'<p class="note">{escape(note)}</p>' for note in notes]
    body += [figure_html(fig, div_id) for div_id, fig in figures]
    for heading, table in tables:
        body += [f"<h2>{escape(heading)}</h2>", f'<div class="table">{table}</div>']
    if manifests:
        body.append("<h2>How these numbers were made</h2>")
        body += [manifest_html(m, label=label) for label, m in manifests]
    body.append(f"<footer>written by interpscan {escape(__version__)}</footer>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_PAGE_STYLE}</style>\n{loader}\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{_SORT_SCRIPT}</script>\n</body>\n</html>\n"
    )


def write_page(path: Path, page: str) -> list[Path]:
    """Write ``page`` to ``path`` atomically; a page that loads ``plotly.min.js`` from its directory gets that
    file beside it. Returns the paths written."""
    from .plots import write_plotlyjs

    write_atomic(path, page)
    written = [path]
    if '<script charset="utf-8" src="plotly.min.js"></script>' in page:
        written.append(write_plotlyjs(path.parent))
    return written


def _with_run(frames: Sequence[Any], labels: Sequence[str]) -> Any:
    """Several runs' frames as one, a ``run`` column first."""
    import pandas as pd

    return pd.concat([f.assign(run=label) for f, label in zip(frames, labels, strict=True)], ignore_index=True)[
        ["run", *[c for c in frames[0].columns if c != "run"]]
    ]


def path_page(runs: Sequence[LoadedRun], labels: Sequence[str] = (), *, plotlyjs: str = "inline") -> tuple[str, Any]:
    """The page of one run or several overlaid: ``path_figure``, the summary rows (sortable) and each run.json.

    Labels default to ``run_labels``; the title is ``runs_title``. Returns (HTML, the figure).
    """
    from .plots import path_figure

    if not runs:
        raise UsageError("nothing to plot: no runs given")
    labels = list(labels) or run_labels(runs)
    several = len(runs) > 1
    title = runs_title(runs)
    summaries = [(r.summary, label) for r, label in zip(runs, labels, strict=True) if r.summary is not None]
    if several:
        results = _with_run([r.results for r in runs], labels)
        summary = _with_run([s for s, _ in summaries], [label for _, label in summaries]) if summaries else None
    else:
        results, summary = runs[0].results, runs[0].summary
    fig = path_figure(results, summary, title=title)
    tables = []
    if summary is not None:
        caption = (
            "summary.csv: one row per curve and split" + (", per run" if several else "") + "; click a header to sort"
        )
        tables.append(("Summary", table_html(summary, table_id="summary", caption=caption)))
    manifests = [
        (f"run.json of {label}" if several else "run.json", r.manifest)
        for r, label in zip(runs, labels, strict=True)
        if r.manifest is not None
    ]
    notes = [f"{label}: {r.csv}" for r, label in zip(runs, labels, strict=True)] if several else []
    missing = [label for r, label in zip(runs, labels, strict=True) if r.summary is None]
    if missing:
        notes.append(f"no summary.csv for {', '.join(missing)}: no barrier star or summary row for it")
    page = render_page(
        title=title,
        figures=[("interpscan-path", fig)],
        tables=tables,
        manifests=manifests,
        notes=notes,
        plotlyjs=plotlyjs,
    )
    return page, fig


def _refuse_existing(paths: Sequence[Path], force: bool) -> None:
    taken = [p for p in paths if p.exists()]
    if taken and not force:
        raise OutputError(
            f"{', '.join(map(str, taken))} exist{'s' if len(taken) == 1 else ''}",
            hint="pass --force to replace, or --out to write elsewhere",
        )
    for p in taken:
        if p.is_dir():
            raise OutputError(f"{p} is a directory", hint="pass --out with a file name")


def plot_results(
    results: Path | Sequence[Path],
    out: Path | None = None,
    *,
    labels: Sequence[str] = (),
    force: bool = False,
    plotlyjs: str = "inline",
    static: Sequence[str] = (),
) -> list[Path]:
    """Draw one or more runs (results.csv files or run directories; summary.csv and run.json beside each are
    used when present) into one self-contained HTML page, the same page ``interpscan run`` writes.

    Args:
        results: One input or several; several are overlaid, a colour per run.
        out: The HTML file, or an existing directory to write into [default: beside the first input's CSV,
            ``results.html`` for one input and ``plot.html`` for several].
        labels: One label per input [default: ``run_labels``].
        force: Replace existing output files.
        plotlyjs: ``inline`` (works offline), ``cdn`` or ``directory``.
        static: Also write the figure as ``png`` and/or ``svg`` beside the HTML (needs kaleido).

    Returns:
        The files written: the HTML first.

    Raises:
        OutputError: an input is missing or unreadable, or an output exists and ``force`` is not set.
        UsageError: bad labels, an unknown ``plotlyjs`` mode, or static export without kaleido.
    """
    from .plots import STATIC_FORMATS, check_static_export, plotlyjs_html, write_static

    inputs = [Path(results)] if isinstance(results, (str, Path)) else [Path(p) for p in results]
    if not inputs:
        raise UsageError("nothing to plot: give at least one results.csv or run directory")
    plotlyjs_html(plotlyjs)  # an unknown mode fails before anything is read
    unknown = sorted(set(static) - set(STATIC_FORMATS))
    if unknown:
        raise UsageError(f"static format(s) {', '.join(unknown)} unknown; use {' or '.join(STATIC_FORMATS)}")
    if static:
        check_static_export()
    runs = load_runs(inputs)
    names = run_labels(runs, labels)
    default_name = "results.html" if len(runs) == 1 else "plot.html"
    target = out or runs[0].csv.with_name(default_name)
    if target.is_dir():
        target = target / default_name
    images = [target.with_suffix(f".{fmt}") for fmt in STATIC_FORMATS if fmt in static]
    _refuse_existing([target, *images], force)
    page, fig = path_page(runs, names, plotlyjs=plotlyjs)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = write_page(target, page)
    for image in images:
        write_static(fig, image)
        written.append(image)
    return written


PARTIAL_NAME = ".interpscan-partial.pt"


class PartialSaver:
    """Keeps the latest resumable snapshot of a scan and writes it to ``out/.interpscan-partial.pt`` at most every
    ``every`` seconds (and on ``flush``), atomically, so an interrupted scan loses at most that much work."""

    def __init__(self, out: Path, every: float | None = None) -> None:
        self.path = out / PARTIAL_NAME
        self.every = float(os.environ.get("INTERPSCAN_SAVE_EVERY", "2")) if every is None else every
        self.latest: dict[str, Any] | None = None
        self.written: dict[str, Any] | None = None
        self.last = time.monotonic()

    def keep(self, snapshot: dict[str, Any]) -> None:
        self.latest = snapshot
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> bool:
        """Write the latest snapshot if it is not on disk yet; whether there is one on disk now."""
        import torch

        if self.latest is not None and self.latest is not self.written:
            with atomic_path(self.path) as tmp:
                torch.save(self.latest, tmp)
            self.written, self.last = self.latest, time.monotonic()
        return self.path.exists()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def load_partial(out: Path) -> dict[str, Any]:
    """The snapshot an interrupted scan left in ``out``.

    Raises:
        OutputError: there is none, or it cannot be read.
    """
    import torch

    path = out / PARTIAL_NAME
    if not path.is_file():
        raise OutputError(f"nothing to resume in {out} (no {PARTIAL_NAME})", hint="run without --resume")
    try:
        snapshot = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: torch raises several kinds
        raise OutputError(f"cannot read the partial scan {path}: {exc}", hint="start afresh with --force") from exc
    if not isinstance(snapshot, dict) or "engine" not in snapshot:
        raise OutputError(f"{path} is not a partial scan", hint="start afresh with --force")
    return snapshot

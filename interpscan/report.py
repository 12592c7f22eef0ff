"""The HTML page that ``run``, ``plot`` and ``compare`` share: one self-contained page of figures, sortable
tables and the manifests that say how the numbers were made; and ``plot_results``, which draws runs into one."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import Content, OutputFolder, write_atomic
from .errors import OutputError, UsageError
from .results import LoadedRun, get, json_safe, load_runs, run_labels
from .schema import RUN_FILES
from .values import check_path

PATH_FORMULA = "θ(α) = (1−α)·θ_init + α·θ_final"


def run_title(manifest: Mapping[str, Any]) -> str:
    """The title of one run's page: model, data and BN policy, as ``interpscan run`` and ``plot`` both write it."""
    model = get(manifest, "model", "spec") or "model"
    data = get(manifest, "data", "name") or "data"
    policy = get(manifest, "bn", "policy") or "?"
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
        values = {str(get(m, *keys)) for m in manifests}
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
h3 { font-size: 1em; font-weight: 600; margin-top: 1.5em; }
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

    text = _compact_json(json_safe(dict(manifest)))
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
    return _page(title, body, loader)


def _page(title: str, body: list[str], loader: str) -> str:
    """The HTML document around ``body`` (its parts joined by newlines): head, style, plotly.js, footer,
    and the script that sorts tables."""
    from html import escape

    from . import __version__

    body = [*body, f"<footer>written by interpscan {escape(__version__)}</footer>"]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_PAGE_STYLE}</style>\n{loader}\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{_SORT_SCRIPT}</script>\n</body>\n</html>\n"
    )


@dataclass(frozen=True)
class Section:
    """One part of a report page (``render_report``): a heading, then short paragraphs, figures and tables."""

    heading: str
    notes: Sequence[str] = ()  # paragraphs of plain text
    figures: Sequence[tuple[str, Any]] = ()  # (div id, Plotly figure); ids unique on the page
    tables: Sequence[tuple[str, str]] = ()  # (heading, ``table_html`` output)


def render_report(
    *,
    title: str,
    sections: Sequence[Section],
    notes: Sequence[str] = (),
    manifests: Sequence[tuple[str, Mapping[str, Any]]] = (),
    plotlyjs: str = "inline",
) -> str:
    """One self-contained HTML page of several sections, each with its own text, figures (under their titles)
    and tables (the page ``render_page`` writes has one of each kind); the manifests come last, collapsed.

    Raises:
        UsageError: an unknown ``plotlyjs`` mode, or two figures with one div id.
    """
    from html import escape

    from .plots import figure_html, plotlyjs_html

    loader = plotlyjs_html(plotlyjs)
    ids = [div_id for section in sections for div_id, _ in section.figures]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise UsageError(f"figure ids used twice on one page: {', '.join(repeated)}")
    body = [f"<h1>{escape(title)}</h1>"]
    body += [f'<p class="note">{escape(note)}</p>' for note in notes]
    for section in sections:
        body.append(f"<h2>{escape(section.heading)}</h2>")
        body += [f"<p>{escape(text)}</p>" for text in section.notes]
        for div_id, fig in section.figures:
            if fig.layout.title.text:  # figure_html leaves the title to the page: it becomes the figure's heading
                body.append(f"<h3>{escape(fig.layout.title.text)}</h3>")
            body.append(figure_html(fig, div_id))
        for heading, table in section.tables:
            body += [f"<h3>{escape(heading)}</h3>", f'<div class="table">{table}</div>']
    if manifests:
        body.append("<h2>How these numbers were made</h2>")
        body += [manifest_html(m, label=label) for label, m in manifests]
    return _page(title, body, loader)


PLOTLYJS_FILE = "plotly.min.js"  # beside a page written with plotlyjs="directory"


def page_files(name: str, page: str) -> dict[str, str]:
    """The files of the page ``page`` saved as ``name``: the page, and ``plotly.min.js`` when it loads that from
    its directory."""
    files = {name: page}
    if f'<script charset="utf-8" src="{PLOTLYJS_FILE}"></script>' in page:
        from plotly.offline import get_plotlyjs

        files[PLOTLYJS_FILE] = get_plotlyjs()
    return files


def write_page(path: Path, page: str) -> list[Path]:
    """Write ``page`` to the file ``path`` atomically, replacing it (and ``plotly.min.js`` beside it when the page
    loads that from its directory). Returns the paths written."""
    return [write_atomic(path.parent / name, text) for name, text in page_files(path.name, page).items()]


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


def run_files(runs: Sequence[LoadedRun]) -> dict[Path, LoadedRun]:
    """Every file that makes up one of ``runs`` (its results.csv, summary.csv and run.json, resolved), and the
    run: what no output may replace, ``--force`` or not."""
    return {(r.csv.parent / name).resolve(): r for r in runs for name in (r.csv.name, *RUN_FILES)}


def refuse_inputs(outputs: Sequence[Path], runs: Sequence[LoadedRun]) -> None:
    """Refuse to write over any file of an input run: drawing or comparing a run must never destroy it.

    Raises:
        OutputError: an output is one of the inputs' files.
    """
    inputs = run_files(runs)
    for out in outputs:
        run = inputs.get(out.resolve())
        if run is not None:
            raise OutputError(
                f"--out {out} is {out.name} of the input run {run.source}; writing there would destroy the run",
                hint="write the page elsewhere: leave out --out (results.html beside the CSV), or name another file",
            )


def _refuse_existing(paths: Sequence[Path], force: bool) -> None:
    taken = [p for p in paths if os.path.lexists(p)]
    if taken and not force:
        raise OutputError(
            f"{', '.join(map(str, taken))} exist{'s' if len(taken) == 1 else ''}",
            hint="pass --force to replace, or --out to write elsewhere",
        )
    for p in taken:
        if p.is_dir() and not p.is_symlink():
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
        force: Replace existing output files: the page ``out`` names, and files interpscan wrote (a run's
            results.html, an earlier page's images); never the user's other files, never through a link.
        plotlyjs: ``inline`` (works offline), ``cdn`` or ``directory``.
        static: Also write the figure as ``png`` and/or ``svg`` beside the HTML (needs kaleido).

    Returns:
        The files written: the HTML first.

    Raises:
        OutputError: an input is missing or unreadable, an output exists and ``force`` is not set, or a file to
            be replaced is a link or a file interpscan did not write.
        UsageError: bad labels, an unknown ``plotlyjs`` mode, or static export without kaleido.
    """
    from .plots import STATIC_FORMATS, check_static_export, plotlyjs_html, static_image

    inputs = [Path(results)] if isinstance(results, (str, Path)) else [Path(p) for p in results]
    if not inputs:
        raise UsageError("nothing to plot: give at least one results.csv or run directory")
    plotlyjs_html(plotlyjs)  # an unknown mode fails before anything is read
    unknown = sorted(set(static) - set(STATIC_FORMATS))
    if unknown:
        raise UsageError(f"static format(s) {', '.join(unknown)} unknown; use {' or '.join(STATIC_FORMATS)}")
    if static:
        check_static_export()
    if out is not None:
        out = check_path(out, "out")
    runs = load_runs(inputs)
    names = run_labels(runs, labels)
    default_name = "results.html" if len(runs) == 1 else "plot.html"
    target = out or runs[0].csv.with_name(default_name)
    named = target.name if out is not None and not target.is_dir() else None  # the page's file, as the user named it
    if target.is_dir():
        target = target / default_name
    images = [target.with_suffix(f".{fmt}") for fmt in STATIC_FORMATS if fmt in static]
    beside = [target.with_name(PLOTLYJS_FILE)] if plotlyjs == "directory" else []
    refuse_inputs([target, *images, *beside], runs)
    _refuse_existing([target, *images], force)
    blocking = next((p for p in target.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise OutputError(f"cannot write {target}: {blocking} is a file, not a directory", hint="choose another --out")
    page, fig = path_page(runs, names, plotlyjs=plotlyjs)
    files: dict[str, Content] = dict(page_files(target.name, page))
    for image in images:
        files[image.name] = static_image(fig, image.suffix.lstrip("."))
    with OutputFolder.open(target.parent) as folder, folder.lock():
        try:
            written = folder.write(files, named=[named] if named else [])
        except OutputError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}", hint="choose a writable --out") from exc
    return list(written.values())

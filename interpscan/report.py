"""The HTML page that ``run``, ``plot`` and ``compare`` share: one self-contained page of figures, sortable
tables and the manifests that say how the numbers were made; and each run's label and title on it."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import write_atomic
from .errors import OutputError, UsageError, opt
from .manifest import Manifest, json_safe
from .schema import RUN_FILES
from .values import check_label

if TYPE_CHECKING:
    from .results import ScanResult

PATH_FORMULA = "θ(α) = (1−α)·θ_init + α·θ_final"


def run_title(manifest: Manifest) -> str:
    """The title of one run's page: model, data and BN policy, as ``interpscan run`` and ``plot`` both write it."""
    return f"{manifest.model.spec} on {manifest.data.name}: {PATH_FORMULA} (BN policy {manifest.bn.policy})"


def runs_title(runs: Sequence[ScanResult]) -> str:
    """The title of a page of ``runs``: ``run_title`` for one run with a run.json (its CSV's path without); for
    several, what they share (model, data, BN policy) and how many they are."""
    if len(runs) == 1:
        if runs[0].has_manifest:
            return run_title(runs[0].manifest)
        return str(results_path(runs[0]) or f"results: {PATH_FORMULA}")
    manifests = [r.manifest for r in runs if r.has_manifest]
    if not manifests:
        return f"{len(runs)} runs: {PATH_FORMULA}"

    def shared(values: set[str], several: str) -> str:
        return values.pop() if len(values) == 1 and len(manifests) == len(runs) else several

    model = shared({m.model.spec for m in manifests}, "several models")
    data = shared({m.data.name for m in manifests}, "several datasets")
    policy = shared({m.bn.policy for m in manifests}, "per run, in the legend")
    return f"{model} on {data}, {len(runs)} runs: {PATH_FORMULA} (BN policy {policy})"


def results_path(run: ScanResult) -> Path | None:
    """The run's results.csv, where it has one on disk (a run read back, or a scan saved with ``out``)."""
    return run.files.get("results.csv")


def run_labels(runs: Sequence[ScanResult], labels: Sequence[str] = ()) -> list[str]:
    """A short, distinct label per run: ``labels`` when given, else from each run's run.json.

    The default is the directory of the run's final checkpoint (``runs/wd0/final.pt`` gives ``wd0``), else of
    its results.csv; when the runs' BN policies differ, `` · POLICY`` is appended; when labels still collide,
    the results' directories relative to their common ancestor are used, and a last resort numbers them.

    Raises:
        UsageError: ``labels`` does not give exactly one distinct label per run.
    """
    if labels:
        labels = [check_label(label, "label") for label in labels]
        if len(labels) != len(runs):
            raise UsageError(
                f"{len(labels)} {opt('label')} value(s) for {len(runs)} input(s)",
                hint=f"give one {opt('label')} per input, in order",
            )
        repeated = sorted({x for x in labels if list(labels).count(x) > 1})
        if repeated:
            raise UsageError(
                f"{opt('label')} {', '.join(map(repr, repeated))} given more than once", hint="labels must differ"
            )
        return list(labels)

    def base(run: ScanResult) -> str:
        final = run.manifest.checkpoints.final.path if run.has_manifest else ""
        if Path(final).parent.name:
            return Path(final).parent.name
        csv_path = results_path(run)
        return (csv_path.parent.name or csv_path.stem) if csv_path is not None else "run"

    policies = [r.manifest.bn.policy if r.has_manifest else "" for r in runs]
    differ = len({p for p in policies if p}) > 1

    def with_policy(names: Sequence[str]) -> list[str]:
        return [f"{n} · {p}" if differ and p else n for n, p in zip(names, policies, strict=True)]

    names = with_policy([base(r) for r in runs])
    if len(set(names)) < len(names):
        dirs = [(p.parent if (p := results_path(r)) is not None else Path()).resolve() for r in runs]
        common = Path(os.path.commonpath(dirs)) if len(runs) > 1 else dirs[0].parent
        names = with_policy([str(d.relative_to(common)) if d != common else d.name for d in dirs])
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


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


def manifest_html(manifest: Manifest, *, label: str) -> str:
    """run.json in a collapsed block, so a page sent to someone says how its numbers were made."""
    from html import escape

    text = _compact_json(json_safe(manifest.to_json()))
    return f"<details><summary>{escape(label)}</summary><pre>{escape(text)}</pre></details>"


def render_page(
    *,
    title: str,
    figures: Sequence[tuple[str, Any]] = (),
    tables: Sequence[tuple[str, str]] = (),
    manifests: Sequence[tuple[str, Manifest]] = (),
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
    manifests: Sequence[tuple[str, Manifest]] = (),
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


def path_page(runs: Sequence[ScanResult], labels: Sequence[str] = (), *, plotlyjs: str = "inline") -> tuple[str, Any]:
    """The page of one run or several overlaid: ``path_figure``, the summary rows (sortable) and each run.json.

    Labels default to ``run_labels``; the title is ``runs_title``. Returns (HTML, the figure).
    """
    from .plots import path_figure

    if not runs:
        raise UsageError("nothing to plot: no runs given")
    labels = list(labels) or run_labels(runs)
    several = len(runs) > 1
    title = runs_title(runs)
    summaries = [(r.summary, label) for r, label in zip(runs, labels, strict=True) if r.has_summary]
    if several:
        results = _with_run([r.results for r in runs], labels)
        summary = _with_run([s for s, _ in summaries], [label for _, label in summaries]) if summaries else None
    else:
        results, summary = runs[0].results, runs[0].summary if runs[0].has_summary else None
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
        if r.has_manifest
    ]
    notes = [f"{label}: {results_path(r)}" for r, label in zip(runs, labels, strict=True)] if several else []
    missing = [label for r, label in zip(runs, labels, strict=True) if not r.has_summary]
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


# What each kind of plane is, as its page's title writes it, and its axes.
_PLANE_FORMULAS = {
    "checkpoints": "θ(x, y) = θ_c0 + x·u + y·v",
    "directions": "θ(x, y) = θ_c0 + x·d₁ + y·d₂",
    "trajectory": "θ(x, y) = θ_cm + x·u₁ + y·u₂",
}
_PLANE_AXES = {
    "checkpoints": ("x: distance from c0 toward c1", "y: distance toward c2, square to x"),
    "directions": ("x: steps along direction d₁", "y: steps along direction d₂"),
    "trajectory": ("x: first principal direction", "y: second principal direction"),
}
_PLANE_NOTES = {
    "checkpoints": "The plane through three checkpoints: c0 at the origin, c1 on the x axis, c2 above it; x and y "
    "are distances in weight space (the L2 norm over the parameters), both axes to one scale.",
    "directions": "Random directions around one checkpoint (c0, at the origin): x and y count steps along each "
    "direction, each direction scaled to the size of the weights it moves.",
    "trajectory": "The training trajectory: the surface around the last checkpoint along the two directions in "
    "which the checkpoints differ most (the principal directions of their differences from it); each "
    "checkpoint is drawn at its projection onto that plane, the path in training order.",
}


def plane_section(run: ScanResult) -> dict[str, Any]:
    """run.json's ``plane`` section of a plane run: what its manifest holds, else what its run.json file says
    (an empty dict when there is neither)."""
    if run.has_manifest:
        section = run.manifest.to_json().get("plane")
        if isinstance(section, dict):
            return section
    path = run.files.get("run.json")
    if path is not None:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if isinstance(obj, dict) and isinstance(obj.get("plane"), dict):
            return dict(obj["plane"])
    return {}


def _plane_anchors(section: dict[str, Any]) -> tuple[list[tuple[float, float]], list[str]] | None:
    """Each checkpoint's (x, y) and label by index, as run.json's ``anchors`` list them (a trajectory's
    projections too); None when it lists none."""
    listed = [a for a in section.get("anchors") or () if isinstance(a, dict) and isinstance(a.get("index"), int)]
    if not listed:
        return None

    def number(value: Any) -> float:
        return float(value) if isinstance(value, (int, float)) else math.nan

    by_index = {a["index"]: a for a in listed}
    points = [
        (number(by_index.get(i, {}).get("x")), number(by_index.get(i, {}).get("y", 0.0)))
        for i in range(max(by_index) + 1)
    ]
    labels = [str(by_index.get(i, {}).get("label", "")) for i in range(max(by_index) + 1)]
    return points, labels


def _explained(section: dict[str, Any]) -> list[float]:
    ratios = section.get("explained_variance_ratio", section.get("explained_variance"))
    return [float(r) for r in ratios if isinstance(r, (int, float))] if isinstance(ratios, list) else []


def plane_page(run: ScanResult, *, plotlyjs: str = "inline") -> tuple[str, Any]:
    """The page of a plane run (``interpscan plane`` or ``trajectory``): ``plots_plane.plane_figure``, the
    summary rows (sortable) and run.json. The plane's kind, the checkpoints' coordinates and a trajectory's
    explained variance come from run.json's ``plane`` section (``plane_section``); without one the checkpoints
    are the anchors in results.csv. Returns (HTML, the figure)."""
    from .plots_plane import is_line, plane_figure

    section = plane_section(run)
    kind = str(section.get("kind", ""))
    x_title, y_title = _PLANE_AXES.get(kind, ("x", "y"))
    ratios = _explained(section)
    if kind == "trajectory" and len(ratios) >= 2:
        x_title, y_title = f"{x_title} ({ratios[0]:.1%} of the variance)", f"{y_title} ({ratios[1]:.1%})"
    formula = _PLANE_FORMULAS.get(kind, "a plane of weights")
    if run.has_manifest:
        m = run.manifest
        title = f"{m.model.spec} on {m.data.name}: {formula} (BN policy {m.bn.policy})"
    else:
        title = f"{results_path(run) or 'results'}: {formula}"
    anchors = _plane_anchors(section)
    fig = plane_figure(
        run.results,
        checkpoints=anchors[0] if anchors else None,
        names=anchors[1] if anchors else None,
        axis_titles=(x_title, y_title),
        title=title,
    )
    notes = [_PLANE_NOTES[kind]] if kind in _PLANE_NOTES else []
    if kind == "directions" and is_line(run.results):
        notes = ["A random line through one checkpoint (c0, at x = 0): x counts steps along the direction."]
    losses = run.results["loss"].astype(float)
    bad = int((~losses.map(math.isfinite)).sum())
    if bad:
        notes.append(
            f"{bad} point(s) have a loss that is NaN or infinite: left out of the colours (a hole), shown on hover"
        )
    clamped = section.get("bn_clamped_points")
    if isinstance(clamped, int) and clamped > 0:
        notes.append(
            f"{clamped} point(s) had an interpolated batch-norm running variance below 0, clamped at 0 (column "
            "bn_clamped of results.csv): their losses are of that clamped network"
        )
    tables = []
    if run.has_summary:
        tables.append(
            ("Summary", table_html(run.summary, table_id="summary", caption="summary.csv; click a header to sort"))
        )
    manifests = [("run.json", run.manifest)] if run.has_manifest else []
    page = render_page(
        title=title,
        figures=[("interpscan-plane", fig)],
        tables=tables,
        manifests=manifests,
        notes=notes,
        plotlyjs=plotlyjs,
    )
    return page, fig


def run_files(runs: Sequence[ScanResult]) -> dict[Path, ScanResult]:
    """Every file that makes up one of ``runs`` (its results.csv, summary.csv and run.json, resolved), and the
    run: what no output may replace, ``--force`` or not."""
    csvs = [(r, p) for r in runs if (p := results_path(r)) is not None]
    return {(p.parent / name).resolve(): r for r, p in csvs for name in (p.name, *RUN_FILES)}


def refuse_inputs(outputs: Sequence[Path], runs: Sequence[ScanResult]) -> None:
    """Refuse to write over any file of an input run: drawing or comparing a run must never destroy it.

    Raises:
        OutputError: an output is one of the inputs' files.
    """
    inputs = run_files(runs)
    for out in outputs:
        run = inputs.get(out.resolve())
        if run is not None:
            raise OutputError(
                f"{opt('out', str(out))} is {out.name} of the input run {run.source}; writing there would destroy "
                "the run",
                hint=f"write the page elsewhere: leave out {opt('out')} (results.html beside the CSV), or name another "
                "file",
            )

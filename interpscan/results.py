"""A run's outputs as data (ScanResult: what a scan returns and what ``ScanResult.load`` reads back); reading runs
back: a run directory's (or a results.csv's) tables and manifest, checked against the schema (schema.py) and each
other to be one whole run before anything is drawn or compared; and ``plot_results``, which draws runs read back
into one page."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OutputError, UsageError, opt
from .manifest import Manifest
from .schema import (
    PARTIAL_NAME,
    RESULT_DTYPES,
    RESULT_REQUIRED,
    SUMMARY_DTYPES,
    SUMMARY_REQUIRED,
    TEXT_QUOTE,
    WHOLE_PATH,
    csv_text_value,
)
from .values import check_path

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

ALPHA_TOL = 1e-9  # the CSVs hold 10 significant digits; run.json holds α in full
_PLOTLYJS_SHOWN = False  # ScanResult.show in a notebook: plotly.js goes into the first figure's output only


@dataclass(frozen=True, repr=False)
class ScanResult:
    """One run's outputs as data: results.csv and summary.csv as DataFrames (their columns and dtypes: see
    docs/outputs.md) and run.json as a typed Manifest. ``scan`` returns one; ``ScanResult.load`` reads one back
    from the files ``save`` wrote.

    A scan's result always has its summary and manifest; a run read back from a results.csv alone has neither:
    ``has_summary`` and ``has_manifest`` say so, and reading ``summary`` or ``manifest`` there raises a UsageError.
    (Typed as always present, so that ``scan(...).summary["delta"]`` needs no None check.)"""

    results: pd.DataFrame
    _summary: pd.DataFrame | None
    _manifest: Manifest | None
    # with per_example: name -> array, as per_example.npz holds them (uncertainty.per_example_arrays)
    examples: dict[str, Any] | None = field(default=None, repr=False)
    files: dict[str, Path] = field(default_factory=dict)  # file name -> path, where the run's files are
    source: Path | None = None  # what ``load`` was given: a run directory or a results.csv; None for a scan
    # a plane run's directions.safetensors: u.<tensor>, v.<tensor> (planes.direction_tensors)
    directions: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def is_plane(self) -> bool:
        """A plane or trajectory run (results.csv has x and y, run.json a plane section), not a path."""
        return "x" in self.results.columns and "alpha" not in self.results.columns

    @property
    def summary(self) -> pd.DataFrame:
        """summary.csv as a DataFrame.

        Raises:
            UsageError: a run read from a results.csv alone, which has none (``has_summary`` is False).
        """
        if self._summary is None:
            raise UsageError(f"{self._where}has no summary.csv: it was read from a results.csv alone")
        return self._summary

    @property
    def manifest(self) -> Manifest:
        """run.json as a typed Manifest (``manifest["bn"]`` reads the JSON as it is on disk).

        Raises:
            UsageError: a run read from a results.csv alone, which has none (``has_manifest`` is False).
        """
        if self._manifest is None:
            raise UsageError(f"{self._where}has no run.json: it was read from a results.csv alone")
        return self._manifest

    @property
    def has_summary(self) -> bool:
        return self._summary is not None

    @property
    def has_manifest(self) -> bool:
        return self._manifest is not None

    @property
    def _where(self) -> str:
        return "this run " if self.source is None else f"the run {self.source} "

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, examples: bool = True) -> ScanResult:
        """The run that ``save`` (or ``interpscan run``) wrote into directory ``path``, or the run of the
        results.csv ``path`` names: its tables, its manifest, and (with ``examples``) per_example.npz when it is
        there; each checked as ``load_run`` checks them.

        Raises:
            OutputError: a file is missing, unreadable, not what its name says, or does not fit the others.
        """
        return load_run(Path(path), examples=examples)

    def figure(self) -> go.Figure:
        """The interactive figure ``interpscan run`` puts in results.html (plots.path_figure; a plane's:
        plots_plane.plane_figure, as report.plane_page draws it)."""
        from .plots import path_figure
        from .report import plane_page, runs_title

        if self.is_plane:
            return plane_page(self)[1]
        return path_figure(self.results, self._summary, title=runs_title([self]))

    def to_html(self, path: str | os.PathLike[str] | None = None) -> str:
        """The page ``interpscan run`` writes as results.html (self-contained: plotly.js inline, no network), as a
        string; with ``path`` also written there (atomically)."""
        from .atomic import write_atomic
        from .report import path_page, plane_page

        page, _ = plane_page(self) if self.is_plane else path_page([self])
        if path is not None:
            write_atomic(Path(path), page)
        return page

    def show(self) -> None:
        """Display the figure. In a notebook it goes into the cell's output as HTML (plotly.js inline once per
        kernel, not a widget), so it stays in a saved or exported notebook; elsewhere it opens as
        ``Figure.show()`` does."""
        from .progress import place

        fig = self.figure()
        if place() != "notebook":
            fig.show()
            return
        from IPython.display import HTML, display

        global _PLOTLYJS_SHOWN
        display(HTML(fig.to_html(full_html=False, include_plotlyjs=not _PLOTLYJS_SHOWN)))  # type: ignore[no-untyped-call]
        _PLOTLYJS_SHOWN = True

    def __repr__(self) -> str:
        return f"<ScanResult: {self._headline()}>"

    def _repr_html_(self) -> str:
        """A notebook's view: what was scanned, then summary.csv (or the first rows of results.csv)."""
        import html

        table = self._summary if self._summary is not None else self.results.head(10)
        caption = "summary.csv" if self._summary is not None else "results.csv (first rows)"
        body = table.to_html(index=False, max_rows=40, float_format=lambda v: f"{v:.4g}", na_rep="")
        return f"<div><p><b>ScanResult</b>: {html.escape(self._headline())}</p><p>{caption}</p>{body}</div>"

    def _headline(self) -> str:
        frame = self.results
        curves = sorted(frame["curve"].unique()) if "curve" in frame else []
        splits = list(dict.fromkeys(frame["split"])) if "split" in frame else []
        parts = []
        if self._manifest is not None:
            parts.append(f"{self._manifest.model.spec} on {self._manifest.data.name}")
        elif self.source is not None:
            parts.append(str(self.source))
        parts.append(f"{len(frame)} rows")
        if curves:
            parts.append(
                f"{len(curves)} curve{'s' if len(curves) != 1 else ''} ({', '.join(curves[:4])}"
                + (", …)" if len(curves) > 4 else ")")
            )
        if splits:
            parts.append(f"splits {', '.join(splits)}")
        return "; ".join(parts)

    def save(self, directory: str | Path, *, force: bool = False, html: bool = True) -> dict[str, Path]:
        """Write results.csv, summary.csv, run.json and results.html (and per_example.npz when the scan kept
        examples) into ``directory`` (created; a non-empty one only with ``force``), as ``interpscan run`` does.
        Returns file name -> path.

        Raises:
            UsageError: a run read back from a results.csv alone, which has no summary or manifest to write.
            OutputError: the directory is not empty (without ``force``), locked by a run, or not writable.
        """
        from .rundir import RunDirectory

        if not (self.has_summary and self.has_manifest):
            raise UsageError(
                "this run was read from a results.csv without its summary.csv and run.json: it cannot be saved "
                "as a run",
                hint="write the table itself with result.results.to_csv(...)",
            )
        with RunDirectory(Path(directory), force=force) as run_dir:
            return run_dir.write(self, html=html)


def _problem(path: Path, what: str, hint: str | None = None) -> OutputError:
    return OutputError(
        f"{path}: {what}", hint=hint or "pass a run directory, or its results.csv, written by `interpscan run`"
    )


_SNIFF = 8192  # bytes read to tell a text file from a binary one


def _read_text(path: Path) -> str:
    """The file's text, or an error saying what the file is instead (empty, binary, UTF-16, not UTF-8)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF)
            data = head + fh.read()
    except OSError as exc:
        raise _problem(path, f"cannot read it ({exc.strerror or exc})") from exc
    if not data.strip():
        raise _problem(path, "the file is empty")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _problem(path, "UTF-16 text; interpscan's files are UTF-8")
    if b"\0" in head:
        kind = "a zip archive (a checkpoint?)" if head.startswith(b"PK\x03\x04") else "binary data"
        raise _problem(path, f"{kind}, not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _problem(path, f"not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x})") from None


def _cells(path: Path, text: str) -> tuple[list[str], list[int], list[list[str]]]:
    """The header, every row's line number, and the cells column by column; a row with another number of fields
    than the header, or a last row without its newline, is a file cut short or damaged."""
    if text.lstrip()[:1] in ("{", "["):
        hint = f"pass the run's directory, {path.parent}" if path.name == "run.json" else None
        raise _problem(path, "JSON, not a CSV file", hint)
    lines = text.split("\n")
    body = lines[1:-1] if lines[-1] == "" else lines[1:]
    # No quotes, carriage returns, NULs or blank lines, and no field over the csv module's limit: a record per
    # line, its fields between commas, which is what csv.reader makes of the text.
    plain = not any(c in text for c in '"\r\0') and "" not in body and max(map(len, lines)) <= csv.field_size_limit()
    if plain:
        header = lines[0].split(",")
        numbers, widths = list(range(2, len(body) + 2)), [line.count(",") + 1 for line in body]
        last = len(lines)
    else:
        records = _csv_records(path, text)
        header, numbers, widths = records[0][1], [n for n, _ in records[1:]], [len(f) for _, f in records[1:]]
        last = records[-1][0]
    header = [h.strip() for h in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise _problem(path, f"column {', '.join(map(repr, repeated))} appears more than once in the header")
    for k, width in enumerate(widths):
        if width != len(header):
            cut = " (the file is cut short)" if k == len(widths) - 1 and width < len(header) else ""
            raise _problem(path, f"line {numbers[k]} has {width} fields, the header {len(header)}{cut}")
    if not text.endswith("\n"):
        raise _problem(path, f"the file ends in the middle of line {last} (cut short?)")
    if not plain:
        return header, numbers, [[fields[j] for _, fields in records[1:]] for j in range(len(header))]
    # One list of every cell, sliced into columns: a list per row would cost more than the rest of the reading.
    flat = ",".join(body).split(",") if body else []
    return header, numbers, [flat[j :: len(header)] for j in range(len(header))]


def _csv_records(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty record, read by the csv module (quoted fields may span lines:
    the number is the record's last line)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            if fields:
                records.append((reader.line_num, fields))
    except csv.Error as exc:
        raise _problem(path, f"line {reader.line_num + 1} is not CSV ({exc})") from None
    return records


def _number(path: Path, line: int, column: str, text: str) -> float:
    value = text.strip()
    if not value:
        return math.nan
    try:
        if not value.isascii():
            raise ValueError
        return float(value)
    except ValueError:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise _problem(path, f"line {line}, column {column}: {shown!r} is not a number") from None


def _numbers(path: Path, column: str, lines: Sequence[int], cells: Sequence[str]) -> Any:
    """The cells as a float64 array (an empty cell NaN, see _number), or an error naming the first that is not
    a number."""
    import numpy as np

    joined = "".join(cells)
    if joined.isascii() and not any(c in joined for c in _ASCII_SPACE):
        # _number's strip and ASCII check would change nothing here: float() alone, at C speed
        with contextlib.suppress(ValueError):  # a cell that is not a number: _number says which
            if all(cells):
                return np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
            return np.array([float(c) if c else math.nan for c in cells], dtype=np.float64)
    return np.array([_number(path, n, column, c) for n, c in zip(lines, cells, strict=True)], dtype=np.float64)


_ASCII_SPACE = "".join(chr(c) for c in range(128) if chr(c).isspace())  # what str.strip removes, in ASCII
_BOOLEANS = {"true": True, "false": False, "": None}
_LABELS = {"hold": ("", "final", "init"), "mode": ("", "only", "all-but")}
_WHOLE_LIMIT = 2.0**63  # int64's range


def _table(path: Path, required: Sequence[str], dtypes: Mapping[str, str], *, kind: str) -> tuple[Any, list[int]]:
    """A CSV that interpscan wrote, as a DataFrame with the schema's dtypes, and each row's line number; one line
    on the first thing wrong, with the line and column of a bad cell."""
    import pandas as pd

    header, lines, cells = _cells(path, _read_text(path))
    missing = [c for c in required if c not in header]
    if missing:
        other = "summary.csv" if kind == "results.csv" else "results.csv"
        other_required = SUMMARY_REQUIRED if kind == "results.csv" else RESULT_REQUIRED
        if all(c in header for c in other_required):
            raise _problem(
                path,
                f"a run's {other}, not its {kind}",
                hint=f"pass the run's directory, {path.parent}" if path.parent.name else None,
            )
        shown = ", ".join(header[:8]) + (", …" if len(header) > 8 else "")
        raise _problem(path, f"not a {kind}: it lacks column(s) {', '.join(missing)} (it has {shown})")
    columns = {name: _column(path, name, dtypes.get(name), lines, cells[j]) for j, name in enumerate(header)}
    return pd.DataFrame(columns, columns=header), lines


def _column(path: Path, name: str, dtype: str | None, lines: Sequence[int], cells: Sequence[str]) -> Any:
    """One column's cells (``lines``: their line numbers) as the schema's dtype; text columns stay text. Each rule
    is checked on the whole column at once; the first cell that breaks it is named, with its line."""
    import numpy as np
    import pandas as pd

    def first(bad: Callable[[str], bool]) -> tuple[int, str]:
        k = next(k for k, c in enumerate(cells) if bad(c))
        return lines[k], cells[k]

    if dtype == "float64":
        return pd.array(_numbers(path, name, lines, cells), dtype="float64")
    if dtype == "int64":
        values = _numbers(path, name, lines, cells)
        whole = np.isfinite(values) & (values >= 0) & (values < _WHOLE_LIMIT) & (values == np.floor(values))
        if not whole.all():
            k = int(np.argmin(whole))
            raise _problem(path, f"line {lines[k]}, column {name}: {cells[k].strip()[:40]!r} is not a whole number ≥ 0")
        return pd.array(values.astype(np.int64), dtype="int64")
    if dtype == "boolean":
        spelled = {c: c.strip().lower() for c in set(cells)}
        if not set(spelled.values()) <= _BOOLEANS.keys():
            n, c = first(lambda c: spelled[c] not in _BOOLEANS)
            raise _problem(path, f"line {n}, column {name}: {c.strip()[:40]!r} is not True or False")
        return pd.array([_BOOLEANS[spelled[c]] for c in cells], dtype="boolean")
    if any(c.startswith(TEXT_QUOTE) for c in cells):  # names the writer quoted (schema.csv_cell)
        cells = [csv_text_value(c) for c in cells]
    if name in ("curve", "split") and any(not c.strip() for c in set(cells)):
        n, _ = first(lambda c: not c.strip())
        raise _problem(path, f"line {n}: the {name} is empty")
    allowed = _LABELS.get(name)
    if allowed is not None and not set(cells) <= set(allowed):
        n, c = first(lambda c: c not in allowed)
        raise _problem(path, f"line {n}, column {name}: {c[:40]!r} is not one of {', '.join(allowed[1:])}")
    return pd.array(cells, dtype=object)


def segment_keys(frame: Any) -> list[str]:
    """The columns that name one curve of a table: curve and split, and segment when the table has it."""
    return ["curve", "split", *(["segment"] if "segment" in frame.columns else [])]


def _where(key: Sequence[Any]) -> str:
    """'curve C on S', and ' (segment K)' or ' (whole path)' for a path through several checkpoints."""
    curve, split, *rest = key
    segment = int(rest[0]) if rest else 1
    return f"curve {curve} on {split}" + (
        "" if segment == 1 else " (whole path)" if segment == WHOLE_PATH else f" (segment {segment})"
    )


def _check_results(path: Path, frame: Any, lines: Sequence[int], manifest: Manifest | None) -> None:
    """One whole run: a row per (curve, split, segment, α) once, every curve on the same α grid (points that
    --refine added aside), one n per split, and, when run.json says, the grid, the segments, the splits and the
    curves it lists."""
    import numpy as np

    if frame.empty:
        raise _problem(path, "the header alone, no rows")
    bad_alpha = frame.index[~np.isfinite(frame["alpha"].to_numpy(dtype=float))]
    if len(bad_alpha):
        raise _problem(path, f"line {lines[bad_alpha[0]]}: α must be a finite number")
    if "segment" in frame.columns and bool((frame["segment"] < 1).any()):
        raise _problem(path, f"line {lines[frame.index[frame['segment'] < 1][0]]}: segments count from 1")
    reference: tuple[str, list[float]] | None = None
    for key, g in frame.groupby(segment_keys(frame), sort=False):
        alphas = g["alpha"]
        twice = alphas[alphas.duplicated()]
        if len(twice):
            first = lines[alphas.index[alphas == twice.iloc[0]][0]]
            again = lines[twice.index[0]]
            raise _problem(path, f"α={twice.iloc[0]:g} of {_where(key)} appears twice (lines {first}, {again})")
        on_grid = alphas[~g["refined"].fillna(False).astype(bool)] if "refined" in g.columns else alphas
        grid = sorted(on_grid.tolist())
        if reference is None:
            reference = (_where(key), grid)
        elif not _same_grid(grid, reference[1]):
            raise _problem(
                path,
                f"{_where(key)} has {len(grid)} α values, {reference[0]} {len(reference[1])}: the file is "
                "incomplete or mixes runs",
            )
    for split, g in frame.groupby("split", sort=False):
        counts = g["n"].unique()
        if len(counts) > 1:
            raise _problem(path, f"split {split} has rows of {counts[0]} and of {counts[1]} examples (column n)")
    if manifest is not None:
        _check_against_manifest(path, frame, reference[1] if reference else [], manifest)


def _same_grid(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= ALPHA_TOL * max(1.0, abs(y)) for x, y in zip(a, b, strict=True))


def _check_against_manifest(path: Path, frame: Any, grid: Sequence[float], manifest: Manifest) -> None:
    listed = manifest.grid.alphas
    if not _same_grid(grid, sorted(listed)):
        raise _problem(
            path,
            f"{len(grid)} α values per curve where run.json lists {len(listed)}: the file is incomplete "
            "or belongs to another run",
        )
    if manifest.path is not None and "segment" in frame.columns:
        segments = manifest.path.segments
        found = sorted({int(s) for s in frame["segment"]})
        if found != list(range(1, segments + 1)):
            raise _problem(
                path,
                f"rows for segment(s) {', '.join(map(str, found))} where run.json has {segments}: the file is "
                "incomplete or belongs to another run",
            )
    lacking = [s for s in manifest.data.splits if s not in set(frame["split"])]
    if lacking:
        raise _problem(path, f"no rows for split {', '.join(lacking)}, which run.json lists: the file is incomplete")
    groups = manifest.groups.groups if manifest.groups is not None else ()
    lacking = [g.name for g in groups if g.name not in set(frame["curve"])]
    if lacking:
        shown = ", ".join(lacking[:3]) + (", …" if len(lacking) > 3 else "")
        raise _problem(path, f"no rows for {len(lacking)} group(s) run.json lists ({shown}): the file is incomplete")


def _check_summary(path: Path, summary: Any, results: Any) -> None:
    """A row per (curve, split, segment) of the results, once, and for a path through three or more checkpoints
    one per (curve, split) for the whole path (segment WHOLE_PATH)."""
    keys = segment_keys(summary) if "segment" in results.columns else ["curve", "split"]
    pairs = [tuple(k) for k in summary[keys].itertuples(index=False)]
    twice = [p for p in pairs if pairs.count(p) > 1]
    if twice:
        raise _problem(path, f"{_where(twice[0])} has more than one row")
    mine = [tuple(k) for k in results[keys].drop_duplicates().itertuples(index=False)]
    if len(keys) == 3 and results["segment"].max() > 1:
        mine += [(c, s, WHOLE_PATH) for c, s in dict.fromkeys(zip(results["curve"], results["split"], strict=True))]
    extra = [p for p in pairs if p not in mine]
    lacking = [p for p in mine if p not in pairs]
    if extra or lacking:
        what = f"{_where(extra[0])}, which results.csv lacks" if extra else f"no row for {_where(lacking[0])}"
        raise _problem(path, f"{what}: the summary belongs to another run, or is incomplete")


def _read_manifest(path: Path) -> Manifest:
    """run.json, checked key by key (manifest.py): an earlier version's reads back, a damaged one is named."""
    text = _read_text(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _problem(path, f"not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise _problem(path, "JSON nested too deeply to be a run's manifest") from None
    if not isinstance(obj, dict):
        raise _problem(path, f"a JSON {type(obj).__name__}, not a run's manifest (an object)")
    return Manifest.from_json(obj, source=str(path))


def _read_examples(path: Path, results: Any) -> dict[str, Any]:
    """per_example.npz, its arrays by name; each curve and split in it must be one of the results', with a row per
    point (uncertainty.per_example_arrays wrote it)."""
    import zipfile

    import numpy as np

    try:
        with path.open("rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            arrays = {name: loaded[name] for name in loaded.files} if hasattr(loaded, "files") else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _problem(path, f"not an .npz archive of arrays ({exc})") from None
    if arrays is None:  # a lone .npy array: np.load gives the array itself
        raise _problem(path, "a single array, not an .npz archive")
    points = results.groupby(["curve", "split"], sort=False).size()
    for name, array in arrays.items():
        parts = name.rsplit("/", 2)  # CURVE/SPLIT/what
        key = (parts[0], parts[1]) if len(parts) == 3 else None
        if key is None or key not in points.index:
            raise _problem(path, f"{name!r} names no curve and split of the results: the file belongs to another run")
        if len(array) != points[key]:
            raise _problem(path, f"{name} has {len(array)} rows where results.csv has {points[key]} points")
    return arrays


def _results_csv(path: Path) -> Path:
    """The results.csv that ``path`` names: itself, or the one in the directory it is."""
    if path.is_dir():
        csv_path = path / "results.csv"
        if (path / PARTIAL_NAME).exists() and not csv_path.exists():
            raise OutputError(
                f"{path} holds an interrupted scan, not a finished run",
                hint=f"finish it with the same `interpscan run` command plus {opt('resume', True)}",
            )
        if not csv_path.exists():
            raise OutputError(
                f"results file not found: {csv_path}", hint="pass a run directory written by `interpscan run`"
            )
        path = csv_path
    elif not path.exists():
        raise OutputError(f"results file not found: {path}", hint="pass a results.csv written by `interpscan run`")
    if not path.is_file():
        raise _problem(path, "not a regular file")
    return path


def load_run(path: Path, *, need_summary: bool = False, examples: bool = False) -> ScanResult:
    """Read a run directory, or a results.csv and the summary.csv and run.json beside it, and check that they
    are one whole run: the columns and dtypes interpscan writes, no half rows, one row per (curve, split, α),
    the same α grid for every curve, one n per split, a summary row per curve and split, and the grid, splits
    and groups run.json lists. With ``examples``, per_example.npz too when it is there.

    Raises:
        UsageError: a path no file system can hold.
        OutputError: a file is missing (the summary.csv only with ``need_summary``), unreadable, not what its
            name says, cut short, or inconsistent with the others; the message says what and where.
    """
    path = check_path(path, "results")
    csv_path = _results_csv(path)
    beside = {
        name: csv_path.with_name(name)
        for name in ("summary.csv", "run.json", "results.html", "per_example.npz", "directions.safetensors")
    }
    files = {"results.csv": csv_path, **{name: p for name, p in beside.items() if p.is_file()}}
    if need_summary and "summary.csv" not in files:
        raise OutputError(f"no summary.csv beside {csv_path}", hint="pass a run directory written by `interpscan run`")
    manifest = _read_manifest(files["run.json"]) if "run.json" in files else None
    if manifest is not None and manifest.plane is not None:
        return _load_plane(path, csv_path, files, manifest)
    results, lines = _table(csv_path, RESULT_REQUIRED, RESULT_DTYPES, kind="results.csv")
    _check_results(csv_path, results, lines, manifest)
    summary = None
    if "summary.csv" in files:
        summary, _ = _table(files["summary.csv"], SUMMARY_REQUIRED, SUMMARY_DTYPES, kind="summary.csv")
        _check_summary(files["summary.csv"], summary, results)
    arrays = _read_examples(files["per_example.npz"], results) if examples and "per_example.npz" in files else None
    return ScanResult(results, summary, manifest, arrays, files, source=path)


def _load_plane(path: Path, csv_path: Path, files: dict[str, Path], manifest: Manifest) -> ScanResult:
    """A plane run read back: results.csv and summary.csv with the plane's columns (a row per point and split
    once, one n per split, every split run.json lists), and directions.safetensors when it is there."""
    from .planes import typed
    from .schema import PLANE_RESULT_DTYPES, PLANE_RESULT_REQUIRED, PLANE_SUMMARY_DTYPES, PLANE_SUMMARY_REQUIRED
    from .tensorfile import read_safetensors

    results, lines = _table(csv_path, PLANE_RESULT_REQUIRED, PLANE_RESULT_DTYPES, kind="a plane's results.csv")
    if results.empty:
        raise _problem(csv_path, "the header alone, no rows")
    twice = results.duplicated(["x", "y", "split"])
    if twice.any():
        raise _problem(csv_path, f"line {lines[int(twice.to_numpy().argmax())]}: a point and split appear twice")
    for split, g in results.groupby("split", sort=False):
        if g["n"].nunique() > 1:
            raise _problem(csv_path, f"split {split} has rows of different numbers of examples (column n)")
    lacking = [s for s in manifest.data.splits if s not in set(results["split"])]
    if lacking:
        raise _problem(
            csv_path, f"no rows for split {', '.join(lacking)}, which run.json lists: the file is incomplete"
        )
    results = typed(results)
    summary = None
    if "summary.csv" in files:
        summary, _ = _table(files["summary.csv"], PLANE_SUMMARY_REQUIRED, PLANE_SUMMARY_DTYPES, kind="summary.csv")
        summary = summary.astype({"anchor": "Int64"})
    directions = None
    if "directions.safetensors" in files:
        directions, _ = read_safetensors(files["directions.safetensors"], error=OutputError)
    return ScanResult(results, summary, manifest, None, files, source=path, directions=directions)


def load_runs(paths: Sequence[Path], *, need_summary: bool = False, planes: bool = False) -> list[ScanResult]:
    """``load_run`` for each path; every problem is reported, in one error. A plane run (``interpscan plane``,
    ``trajectory``) is one only with ``planes``: compare's runs are paths.

    Raises:
        OutputError: one or more runs cannot be read (each one's problem, in input order), or a plane run
            without ``planes``.
    """
    runs, problems = [], []
    for path in paths:
        try:
            run = load_run(path, need_summary=need_summary)
            if run.is_plane and not planes:
                raise _problem(
                    path,
                    "a plane run (interpscan plane or trajectory), not a path's",
                    hint="draw it with `interpscan plot`, on its own; compare takes runs of `interpscan run`",
                )
            runs.append(run)
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


def _refuse_existing(paths: Sequence[Path], force: bool) -> None:
    taken = [p for p in paths if os.path.lexists(p)]
    if taken and not force:
        raise OutputError(
            f"{', '.join(map(str, taken))} exist{'s' if len(taken) == 1 else ''}",
            hint=f"pass {opt('force', True)} to replace, or {opt('out')} to write elsewhere",
        )
    for p in taken:
        if p.is_dir() and not p.is_symlink():
            raise OutputError(f"{p} is a directory", hint=f"pass {opt('out')} with a file name")


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
    from .atomic import Content, OutputFolder
    from .plots import STATIC_FORMATS, check_static_export, plotlyjs_html, static_image
    from .report import PLOTLYJS_FILE, page_files, path_page, plane_page, refuse_inputs, run_labels

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
    runs = load_runs(inputs, planes=True)
    names = run_labels(runs, labels)
    default_name = "results.html" if len(runs) == 1 else "plot.html"
    target = out or runs[0].files["results.csv"].with_name(default_name)
    named = target.name if out is not None and not target.is_dir() else None  # the page's file, as the user named it
    if target.is_dir():
        target = target / default_name
    images = [target.with_suffix(f".{fmt}") for fmt in STATIC_FORMATS if fmt in static]
    beside = [target.with_name(PLOTLYJS_FILE)] if plotlyjs == "directory" else []
    refuse_inputs([target, *images, *beside], runs)
    _refuse_existing([target, *images], force)
    blocking = next((p for p in target.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise OutputError(
            f"cannot write {target}: {blocking} is a file, not a directory", hint=f"choose another {opt('out')}"
        )
    if any(r.is_plane for r in runs):
        if len(runs) > 1:
            raise UsageError(
                f"{next(r.source for r in runs if r.is_plane)} is a plane's run: a plane is drawn alone, not overlaid",
                hint="plot each plane run on its own",
            )
        page, fig = plane_page(runs[0], plotlyjs=plotlyjs)
    else:
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
            raise OutputError(
                f"cannot write {target}: {exc.strerror or exc}", hint=f"choose a writable {opt('out')}"
            ) from exc
    return list(written.values())

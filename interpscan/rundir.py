"""The run directory: an output folder prepared, locked and written as a unit, by the CLI and the library alike.

``RunDirectory`` creates (or checks) the folder, holds its lock while a run writes, keeps the partial scan an
interrupted run resumes from, and writes results.csv, summary.csv, run.json and results.html, each to a
temporary sibling renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from .atomic import atomic_path, write_atomic
from .engine.snapshot import ScanSnapshot
from .errors import OutputError
from .results import LoadedRun, json_safe

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


def write_csv(df: Any, path: Path) -> None:
    # 10 significant digits: far below any standard error, and the files stay readable and diffable.
    write_atomic(path, df.to_csv(index=False, float_format="%.10g", lineterminator="\n"))


def write_json(obj: Any, path: Path) -> None:
    write_atomic(path, json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_outputs(result: Any, out: Path, *, html: bool = True) -> dict[str, Path]:
    """Write results.csv, summary.csv, run.json and (unless ``html`` is False) results.html into ``out``,
    creating it if need be.

    results.html is the page ``interpscan plot`` draws from these files (``report.path_page``), so a run's page
    and a redrawn one look the same. Returns file name -> path.

    Raises:
        OutputError: ``out`` cannot be created or written.
    """
    from .report import path_page, write_page

    paths = {name: out / name for name in OUTPUT_FILES}
    manifest = dict(result.manifest)
    manifest["outputs"] = [n for n in OUTPUT_FILES if html or n != "results.html"]
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(result.results, paths["results.csv"])
        write_csv(result.summary, paths["summary.csv"])
        write_json(manifest, paths["run.json"])
        if html:
            run = LoadedRun(out, paths["results.csv"], result.results, result.summary, manifest)
            page, _ = path_page([run])
            write_page(paths["results.html"], page)
    except OSError as exc:
        raise OutputError(
            f"cannot write the results into {out}: {exc.strerror or exc}", hint="choose a writable --out"
        ) from exc
    if not html:
        del paths["results.html"]
    return paths


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


class RunDirectory:
    """An output directory while a run writes into it, as a context manager: on entry it is checked, created and
    locked (and with ``resume`` its partial scan is read); on exit the lock is released, and a directory this run
    created and left empty is removed. ``keep`` and ``flush`` store the partial scan an interrupted run resumes
    from; ``write`` writes the run's files and drops the partial scan.

    Raises (on entry):
        OutputError: ``path`` is not a directory, is not empty (without ``force``), holds an interrupted scan
            (without ``resume`` or ``force``), or nothing to resume (with ``resume``); another run holds it.
    """

    def __init__(self, path: Path, *, force: bool = False, resume: bool = False) -> None:
        self.path, self.force, self.resume = Path(path), force, resume
        self.partial: ScanSnapshot | None = None
        self.saver = PartialSaver(self.path)
        self._stack = ExitStack()
        self._created = False

    def __enter__(self) -> RunDirectory:
        if self.resume:
            self.partial = ScanSnapshot.from_state(load_partial(self.path))
        self._created = not self.path.exists()
        try:
            prepare_output_dir(self.path, force=self.force or self.resume)
            self._stack.enter_context(output_lock(self.path))
        except BaseException:
            self._remove_if_empty()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._stack.close()
        if kind is not None:
            self._remove_if_empty()

    def _remove_if_empty(self) -> None:
        if self._created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def keep(self, snapshot: ScanSnapshot) -> None:
        """The latest snapshot of the scan; written at most every few seconds (and on ``flush``)."""
        self.saver.keep(snapshot.to_state())

    def flush(self) -> bool:
        """Write the latest snapshot now; whether a partial scan is on disk."""
        return self.saver.flush()

    def write(self, result: Any, *, html: bool = True) -> dict[str, Path]:
        """results.csv, summary.csv, run.json (and results.html) of ``result``; the partial scan is removed."""
        paths = write_outputs(result, self.path, html=html)
        self.saver.clear()
        return paths

"""The run directory: an output folder prepared, locked and written as a unit, by the CLI and the library alike.

``RunDirectory`` creates (or checks) the folder, holds its lock while a run writes, keeps the partial scan an
interrupted run resumes from, and writes results.csv, summary.csv, run.json and results.html. Every file goes
through ``atomic.OutputFolder``: written whole before it is renamed into place, never through a link, and over a
file already there only when interpscan can prove it wrote it (``--force`` never replaces the user's files).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from collections.abc import Collection
from contextlib import ExitStack, suppress
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from .atomic import LEDGER_NAME, LOCK_NAME, TEMP_PREFIX, WORKING_PREFIX, Content, OutputFolder, write_atomic
from .distributed import World
from .engine.snapshot import ScanSnapshot
from .errors import InterpscanError, Interrupted, LostContact, OutputError, RunError, Stopped, opt
from .manifest import json_safe
from .schema import PARTIAL_NAME, csv_cell
from .values import env_number

OUTPUT_FILES = ("results.csv", "summary.csv", "run.json", "results.html", "per_example.npz", "directions.safetensors")
MIN_FREE_BYTES = 16 * 2**20  # the HTML page (~5 MB with plotly.js inlined), CSVs, run.json and a partial scan


def open_output_dir(out: Path, *, force: bool, writes: Collection[str] = ()) -> OutputFolder:
    """Open (creating it if need be) the folder ``out`` for a command that writes the files ``writes`` into it.

    A folder is empty when it holds nothing but interpscan's lock, ledger or temporary files (a partial scan is
    something: an interrupted run to resume).
    Without ``force`` a folder that is not empty is refused; with it, the user's other files stay as they are.
    Either way every name of ``writes`` must be free or hold a file interpscan wrote (``OutputFolder.check``),
    and a link among the names interpscan keeps for itself is refused.

    Raises:
        OutputError: ``out`` is a file, is not empty without ``force``, holds a file of ``writes`` interpscan did
            not write, or a link under one of its names; it cannot be created or written, or its disk is full.
    """
    folder = OutputFolder.open(out)
    try:
        _check_contents(folder, force=force, writes=writes)
        _check_writable(folder)
    except BaseException:
        folder.close()
        raise
    return folder


def _check_contents(folder: OutputFolder, *, force: bool, writes: Collection[str]) -> None:
    names = folder.names()
    folder.check([n for n in names if n.startswith(WORKING_PREFIX)])  # a link where a working file goes
    # what a folder holds when it holds nothing yet: a lock, the ledger, a killed writer's temporary file
    nothing = (LOCK_NAME, LEDGER_NAME, TEMP_PREFIX)
    if not force and any(not (n.startswith(nothing) and folder.is_working_file(n)) for n in names):
        partials = [n for n in names if n.startswith(PARTIAL_NAME.removesuffix(".pt"))]
        if partials:
            raise _holds_partial(folder, partials)
        raise OutputError(
            f"output directory {folder.path} is not empty",
            hint=f"choose another {opt('out')}, or pass {opt('force', True)} to replace interpscan's files in it",
        )
    folder.check(writes)


_RANK_PARTIAL = re.compile(r"\.interpscan-partial-rank(\d+)-of-(\d+)\.pt$")


def _holds_partial(folder: OutputFolder, partials: Collection[str]) -> OutputError:
    """What the partial scans in ``folder`` are: an interrupted scan to resume, or the shares that some ranks of
    a scan over several processes kept when another of them failed, which no run can resume."""
    shares = [m for m in map(_RANK_PARTIAL.match, partials) if m]
    sizes = {int(m.group(2)) for m in shares}
    ranks = sorted(int(m.group(1)) for m in shares)
    if shares and (len(sizes) > 1 or ranks != list(range(next(iter(sizes))))):
        kept = ", ".join(f"rank {r}" for r in ranks)
        return OutputError(
            f"output directory {folder.path} holds the partial scan of {kept} of {max(sizes)} processes only: "
            "that scan stopped when another of its processes failed, and cannot be resumed",
            hint=f"pass {opt('force', True)} to start afresh, or choose another {opt('out')}",
        )
    return OutputError(
        f"output directory {folder.path} holds an interrupted scan",
        hint=f"add {opt('resume', True)} to finish it, or {opt('force', True)} to start afresh",
    )


def _check_writable(folder: OutputFolder) -> None:
    try:
        folder.check_writable()
        free = shutil.disk_usage(folder.path).free
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(
            f"cannot write to output directory {folder.path}: {exc.strerror or exc}",
            hint=f"choose a writable {opt('out')}",
        ) from exc
    if free < MIN_FREE_BYTES:
        raise OutputError(
            f"only {free / 2**20:.1f} MiB free where {folder.path} is; a run writes up to about "
            f"{MIN_FREE_BYTES // 2**20} MiB (results.html inlines plotly.js)",
            hint=f"free some space or choose another {opt('out')}",
        )


def prepare_output_dir(out: Path, *, force: bool) -> Path:
    """``open_output_dir`` for a script that then writes into ``out`` by path (``write_csv``, ``write_json``:
    each replaces the file it is given). Returns ``out``.

    Raises:
        OutputError: as ``open_output_dir``.
    """
    open_output_dir(out, force=force).close()
    return out


def csv_text(df: Any) -> str:
    """A table as interpscan's CSVs hold it: 10 significant digits, far below any standard error, so the files
    stay readable and diffable; text cells that a spreadsheet would run as formulas quoted (schema.csv_cell)."""
    from pandas.api.types import is_string_dtype

    text = [c for c in df.columns if df[c].dtype == object or is_string_dtype(df[c].dtype)]
    if text:
        df = df.assign(**{c: df[c].map(csv_cell, na_action="ignore") for c in text})
    return str(df.to_csv(index=False, float_format="%.10g", lineterminator="\n"))


def json_text(obj: Any) -> str:
    """``obj`` as run.json holds it: sorted keys, two-space indents, NaN as null."""
    return json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_csv(df: Any, path: Path) -> None:
    """Write ``df`` to the file ``path`` (``csv_text``), atomically (``atomic.write_atomic``)."""
    write_atomic(path, csv_text(df))


def write_json(obj: Any, path: Path) -> None:
    """Write ``obj`` to the file ``path`` (``json_text``), atomically (``atomic.write_atomic``)."""
    write_atomic(path, json_text(obj))


def write_outputs(result: Any, out: Path, *, html: bool = True) -> dict[str, Path]:
    """Write results.csv, summary.csv, run.json, results.html (unless ``html`` is False) and per_example.npz (when
    the result kept examples) into ``out``, creating it if need be, as one unit, under its lock.

    Raises:
        OutputError: ``out`` cannot be created or written, another run holds it, or a file there that this
            would replace is not interpscan's.
    """
    with OutputFolder.open(Path(out)) as folder, folder.lock():
        return _write_outputs(result, folder, html=html)


def _write_outputs(result: Any, folder: OutputFolder, *, html: bool) -> dict[str, Path]:
    """``write_outputs`` into an open folder (whose lock the caller holds).

    Every file is written whole first; only then are they renamed into place (renames need no space), and the
    files of an earlier run that this one does not write are removed. A write that fails (a full disk) leaves
    the folder as it was: the earlier run whole, never a mix.

    results.html is the page ``interpscan plot`` draws from these files (``report.path_page``), so a run's page
    and a redrawn one look the same. Returns file name -> path.
    """
    from .report import page_files, path_page, plane_page

    examples = getattr(result, "examples", None)
    directions = getattr(result, "directions", None)
    names = [
        n
        for n in OUTPUT_FILES
        if (html or n != "results.html")
        and (examples is not None or n != "per_example.npz")
        and (directions is not None or n != "directions.safetensors")
    ]
    manifest = replace(result.manifest, outputs=tuple(names))
    try:
        files: dict[str, Content] = {
            "results.csv": csv_text(result.results),
            "summary.csv": csv_text(result.summary),
            "run.json": json_text(manifest.to_json()),
        }
        if html:
            # the page is drawn as `interpscan plot` would draw the final files
            run = replace(result, _manifest=manifest, files={"results.csv": folder.path / "results.csv"})
            page, _ = plane_page(run) if run.is_plane else path_page([run])
            files.update(page_files("results.html", page))
        if examples is not None:
            import numpy as np

            def savez(fh: IO[bytes]) -> None:
                np.savez(fh, **examples)

            files["per_example.npz"] = savez
        if directions is not None:
            from safetensors.torch import save

            files["directions.safetensors"] = save(dict(directions))
        # an earlier run's files that this run does not replace go
        return folder.write(files, remove=[n for n in OUTPUT_FILES if n not in files])
    except OutputError:
        raise
    except OSError as exc:
        raise _write_error(folder.path, exc) from exc


def _write_error(out: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"cannot write the results into {out}: {exc.strerror or exc}; the files already there are as they were",
        hint=f"free some space or choose another {opt('out')}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT)
        else f"choose a writable {opt('out')}",
    )


def os_error_behind(exc: BaseException) -> OSError | None:
    """The OSError that ``exc`` is, or that it was raised while handling. torch.save turns a failed write (a full
    disk) into RuntimeError("[enforce fail at inline_container.cc:…] unexpected pos …"), the OSError with its
    "No space left on device" only its context."""
    seen: BaseException | None = exc
    for _ in range(16):  # a chain is short; a cycle must not loop
        if seen is None or isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def partial_name(world: World) -> str:
    """The partial scan's file name: one per rank when several processes scan (each keeps its own share)."""
    return PARTIAL_NAME if world.size == 1 else f".interpscan-partial-rank{world.rank}-of-{world.size}.pt"


SAVE_EVERY_S = 2.0  # the partial scan is written at most this often (INTERPSCAN_SAVE_EVERY, seconds)


def save_every() -> float:
    """Seconds between writes of the partial scan: INTERPSCAN_SAVE_EVERY, else SAVE_EVERY_S.

    Raises:
        UsageError: the variable is not a number of seconds ≥ 0.
    """
    return env_number("INTERPSCAN_SAVE_EVERY", SAVE_EVERY_S, hint="e.g. INTERPSCAN_SAVE_EVERY=2 (seconds), or unset it")


class PartialSaver:
    """Keeps the latest resumable snapshot of a scan and writes it into ``folder`` (``.interpscan-partial.pt``) at
    most every ``every`` seconds (and on ``flush``), atomically, so an interrupted scan loses at most that much
    work."""

    def __init__(self, folder: OutputFolder, every: float | None = None, name: str = PARTIAL_NAME) -> None:
        self.folder, self.name = folder, name
        self.path = folder.path / name
        self.every = save_every() if every is None else every
        self.latest: ScanSnapshot | dict[str, Any] | None = None
        self.written: ScanSnapshot | dict[str, Any] | None = None
        self.last = time.monotonic()

    def keep(self, snapshot: ScanSnapshot | dict[str, Any]) -> None:
        """The latest snapshot (turned into its state only when written: that copies every kept example)."""
        self.latest = snapshot
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> bool:
        """Write the latest snapshot if it is not on disk yet; whether there is one on disk now."""
        import torch

        latest = self.latest
        if latest is not None and latest is not self.written:

            def save(fh: IO[bytes]) -> None:
                torch.save(latest.to_state() if isinstance(latest, ScanSnapshot) else latest, fh)

            try:
                self.folder.write({self.name: save})
            except OutputError:
                raise
            except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as a RuntimeError
                system = os_error_behind(exc)
                if system is None and "allocate memory" in str(exc):  # the copy to save did not fit, not the disk
                    raise RunError(
                        f"out of memory while saving the partial scan to {self.path}; the scan stopped",
                        hint=f"keep fewer examples' losses ({opt('bootstrap', 0)}), or scan fewer points or examples",
                    ) from exc
                cause = system.strerror if system is not None and system.strerror else str(exc).splitlines()[0]
                raise OutputError(
                    f"cannot save the partial scan to {self.path}: {cause}; the scan stopped",
                    hint=f"free some space where {opt('out')} is, or choose another {opt('out')}",
                ) from exc
            self.written, self.last = latest, time.monotonic()
        return self.folder.lstat(self.name) is not None

    def clear(self) -> None:
        self.folder.remove([self.name])


def load_partial(folder: OutputFolder, name: str = PARTIAL_NAME) -> dict[str, Any]:
    """The snapshot an interrupted scan left in ``folder`` (``name``: the rank's own, under torchrun).

    Raises:
        OutputError: there is none, or it cannot be read.
    """
    import torch

    path = folder.path / name
    if folder.lstat(name) is None:
        raise OutputError(
            f"nothing to resume in {folder.path} (no {name})",
            hint=f"run without {opt('resume', True)}"
            if name == PARTIAL_NAME
            else f"resume with the number of processes of the interrupted run, or run without {opt('resume', True)}",
        )
    try:
        with folder.open_file(name) as fh:
            snapshot = torch.load(fh, map_location="cpu", weights_only=True)
    except OutputError:
        raise
    except Exception as exc:  # a damaged file: torch raises several kinds
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise OutputError(
            f"cannot read the partial scan {path}: {cause}", hint=f"start afresh with {opt('force', True)}"
        ) from exc
    if not isinstance(snapshot, dict) or "engine" not in snapshot:
        raise OutputError(f"{path} is not a partial scan", hint=f"start afresh with {opt('force', True)}")
    return snapshot


class RunDirectory:
    """An output directory while a run writes into it, as a context manager: on entry it is checked, created and
    locked (and with ``resume`` its partial scan is read); on exit the lock is released, and a directory this run
    created and left empty is removed. ``keep`` and ``flush`` store the partial scan an interrupted run resumes
    from; ``write`` writes the run's files and drops the partial scan.

    Under torchrun (``world`` of several ranks) rank 0 alone prepares, locks and writes the run's files; each
    rank keeps its own partial scan there; every step one rank can fail is agreed on, so that the others stop
    (``Stopped``) instead of waiting for it.

    Raises (on entry):
        OutputError: ``path`` is not a directory, is not empty (without ``force``), holds an interrupted scan
            (without ``resume`` or ``force``), or nothing to resume (with ``resume``); another run holds it; a file
            of the run's names there is not interpscan's, or a link is where one of its files goes.
    """

    def __init__(self, path: Path, *, force: bool = False, resume: bool = False, world: World | None = None) -> None:
        self.path, self.force, self.resume = Path(path), force, resume
        self.world = world or World()
        self.every = save_every()  # before the directory is made: a bad INTERPSCAN_SAVE_EVERY changes nothing
        self.partial: ScanSnapshot | None = None
        self._keep = False  # the files could not be written: the finished scan stays to write them from
        self._stack = ExitStack()
        self._created = False
        self._folder: OutputFolder | None = None
        self._saver: PartialSaver | None = None

    @property
    def saver(self) -> PartialSaver:
        """Where the partial scan goes (there once the directory is entered)."""
        if self._saver is None:
            raise RuntimeError("the run directory is used before it is entered")
        return self._saver

    def __enter__(self) -> RunDirectory:
        failed: InterpscanError | None = None
        try:
            if self.world.leader:
                self._prepare()
        except InterpscanError as exc:
            failed = exc
        except BaseException:
            self._release()
            raise
        # the other ranks open the folder only once rank 0 made it
        if self.world.all_ok(failed is None):
            try:
                self._open()
            except InterpscanError as exc:
                failed = exc
            except BaseException:
                self._release()
                raise
        if not self.world.all_ok(failed is None):
            self._release()
            raise failed or Stopped("another rank could not use the output directory")
        return self

    def _prepare(self) -> None:
        self._created = not os.path.lexists(self.path)
        name = partial_name(self.world)
        writes = (*OUTPUT_FILES, name)
        self._folder = self._stack.enter_context(
            open_output_dir(self.path, force=self.force or self.resume, writes=writes)
        )
        self._stack.enter_context(self._folder.lock())
        self._folder.remove_temporaries()  # a writer killed mid-write left them

    def _open(self) -> None:
        if self._folder is None:
            self._folder = self._stack.enter_context(OutputFolder.open(self.path, create=False))
        name = partial_name(self.world)
        self._folder.check([name])
        self._saver = PartialSaver(self._folder, self.every, name=name)
        if self.resume:
            self.partial = ScanSnapshot.from_state(load_partial(self._folder, name))

    def _release(self) -> None:
        self._stack.close()
        self._remove_if_empty()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        # a run that failed (bad data found mid-scan, ...) leaves nothing to resume; one that was interrupted or
        # lost its peers keeps what it finished
        kept = (Interrupted, KeyboardInterrupt, LostContact, Stopped)
        try:
            if kind is not None and not self.resume and not self._keep and not isinstance(exc, kept):
                self.saver.clear()
        finally:
            self._stack.close()
        if kind is not None:
            self._remove_if_empty()

    def _remove_if_empty(self) -> None:
        if self._created:
            with suppress(OSError):  # only when empty (rmdir removes nothing else)
                self.path.rmdir()

    def keep(self, snapshot: ScanSnapshot) -> None:
        """The latest snapshot of the scan; written at most every few seconds (and on ``flush``)."""
        self.saver.keep(snapshot)

    def flush(self) -> bool:
        """Write the latest snapshot now; whether a partial scan is on disk."""
        return self.saver.flush()

    def _interrupted_writing(self) -> Interrupted:
        """What an interruption while the run's files were written leaves: the finished scan, saved to resume from
        (its files are written whole or not at all, each; the staged ones were removed)."""
        if self.flush():
            return Interrupted(
                f"interrupted while the results were written into {self.path}; the finished scan is saved in "
                f"{self.saver.path}",
                hint=f"write them with the same command plus {opt('resume', True)} (nothing is evaluated again)",
            )
        return Interrupted(f"interrupted while the results were written into {self.path}; nothing was saved")

    def write(self, result: Any, *, html: bool = True) -> dict[str, Path]:
        """results.csv, summary.csv, run.json (and results.html) of ``result``, by rank 0; then every rank's
        partial scan is removed (kept when the files could not be written). Returns name -> path (rank 0's)."""
        paths: dict[str, Path] = {}
        failed: InterpscanError | None = None
        if self.world.leader:
            try:
                paths = _write_outputs(result, self.saver.folder, html=html)
            except InterpscanError as exc:
                failed = exc
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the scan is done, only its files are not
                raise self._interrupted_writing() from None
        if failed is not None:
            failed = self._kept_on_failure(failed)
        if not self.world.all_ok(failed is None):
            raise failed or Stopped("rank 0 could not write the run's files")
        self.saver.clear()
        return paths

    def _kept_on_failure(self, failed: InterpscanError) -> InterpscanError:
        """The error of a write that failed, once the finished scan is saved to write its files from later (with
        resume, nothing evaluated again): the scan is the costly part, and the cause (a full disk, a folder
        made read-only) is often fixed in a minute. When even the snapshot cannot be saved, the error as it was."""
        try:
            saved = self.flush()
        except InterpscanError:
            saved = False
        if not saved:
            return failed
        self._keep = True
        hint = f"{failed.hint_text}; " if failed.hint_text else ""
        kept = type(failed)(
            f"{failed.text}; the finished scan is saved in {self.saver.path}",
            hint=f"{hint}then the same command plus {opt('resume', True)} writes the files (nothing is evaluated "
            "again)",
        )
        kept.__cause__ = failed.__cause__
        return kept

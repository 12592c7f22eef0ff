"""The run directory: an output folder prepared, locked and written as a unit, by the CLI and the library alike.

``RunDirectory`` creates (or checks) the folder, holds its lock while a run writes, keeps the partial scan an
interrupted run resumes from, and writes results.csv, summary.csv, run.json and results.html, each to a
temporary sibling renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .atomic import atomic_path, write_atomic
from .distributed import World
from .engine.snapshot import ScanSnapshot
from .errors import InterpscanError, Interrupted, LostContact, OutputError, Stopped
from .manifest import json_safe
from .schema import PARTIAL_NAME

OUTPUT_FILES = ("results.csv", "summary.csv", "run.json", "results.html", "per_example.npz")


def prepare_output_dir(out: Path, *, force: bool) -> Path:
    """Create ``out``, refusing a non-empty directory unless ``force`` (then only our files are replaced).

    Raises:
        OutputError: ``out`` is a file, is non-empty without ``force``, or cannot be created or written.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a directory", hint="choose another --out")
    ours = (LOCK_NAME, STAGING_PREFIX)
    if out.is_dir() and any(not p.name.startswith(ours) for p in out.iterdir()) and not force:
        if any(out.glob(PARTIAL_NAME.removesuffix(".pt") + "*")):
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


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _started(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), or "" where unknown."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    return fields[19] if len(fields) > 19 else ""


def holder_identity() -> dict[str, Any]:
    """Who holds a lock, beyond the pid: host, boot, PID namespace and the process's start time, so that a pid
    reused after a reboot, in another container or by another process is never taken for the holder."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
        "pid_namespace": namespace,
        "started": _started(os.getpid()),
    }


def _describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid', '?')} on {holder.get('host') or 'an unknown host'}"


def _cannot_tell(holder: dict[str, Any], me: dict[str, Any]) -> str | None:
    """Why a lock whose file lock is free may still belong to a live run, or None when its holder is gone.

    The kernel releases the file lock (flock) when its holder dies, and every process under one kernel sees it,
    whatever its PID namespace (containers sharing a disk included): under this kernel a free file lock means
    a dead holder. The kernel is known by its boot id (Linux), else, where there is none (macOS), by the host
    name. A holder under another kernel (another machine on a shared disk, or this one before a reboot) is out
    of sight, and so is one that wrote no identity (an older interpscan's lock)."""
    if not holder.get("boot_id") and not holder.get("host"):
        return "the lock does not say who holds it"
    if holder.get("boot_id") and me["boot_id"]:
        same = holder["boot_id"] == me["boot_id"]
    else:
        same = holder.get("host") == me["host"]
    if not same:
        return f"{_describe(holder)} took it under another kernel (another machine, or this one before a reboot)"
    return None


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.interpscan.lock`` while a command writes into ``out``, so that two runs never write one
    directory.

    The lock is a kernel file lock (flock) on that file, which holds the holder's identity (holder_identity).
    A lock whose file lock is free was left by a run that died under this kernel and is taken over; one taken
    under another kernel, or without an identity, is refused: interpscan cannot tell whether that run is alive.

    Raises:
        OutputError: another live interpscan run holds the lock, or one that cannot be checked does.
    """
    lock = out / LOCK_NAME
    me = holder_identity()
    for _ in range(5):
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _holder(lock)
            raise OutputError(
                f"another interpscan run ({_describe(holder)}) is writing to {out}",
                hint="wait for it to finish, or choose another --out",
            ) from None
        except OSError as exc:  # e.g. a network file system without file locks
            os.close(fd)
            raise OutputError(
                f"cannot lock {lock}: {exc.strerror or exc}",
                hint="write to a local disk (--out), where two runs can be kept apart",
            ) from exc
        try:
            if os.fstat(fd).st_ino != os.stat(lock).st_ino:
                raise FileNotFoundError  # the holder removed this file as we opened it: take the new one
        except FileNotFoundError:
            os.close(fd)
            continue
        holder = _holder(lock)
        if os.fstat(fd).st_size and (why := _cannot_tell(holder, me)):
            os.close(fd)
            raise OutputError(
                f"{out} is locked and interpscan cannot tell whether the run that locked it is alive: {why}",
                hint=f"if no interpscan run is writing there, remove {lock}",
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        break
    else:
        raise OutputError(f"cannot take the lock {lock}", hint="remove it if no interpscan run is writing there")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _holder(lock: Path) -> dict[str, Any]:
    """The identity a lock file holds ({} when it holds none, or not as JSON)."""
    try:
        holder = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def write_csv(df: Any, path: Path) -> None:
    # 10 significant digits: far below any standard error, and the files stay readable and diffable.
    write_atomic(path, df.to_csv(index=False, float_format="%.10g", lineterminator="\n"))


def write_json(obj: Any, path: Path) -> None:
    write_atomic(path, json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


STAGING_PREFIX = ".interpscan-staging-"


def write_outputs(result: Any, out: Path, *, html: bool = True) -> dict[str, Path]:
    """Write results.csv, summary.csv, run.json, results.html (unless ``html`` is False) and per_example.npz (when
    the result kept examples) into ``out``, creating it if need be, as one unit.

    Every file is first written into a fresh staging folder inside ``out``; only when all are whole are they
    renamed into place (renames need no space), and files of an earlier run that this one does not write are
    removed. A write that fails (a full disk) leaves ``out`` as it was: the earlier run whole, never a mix.

    results.html is the page ``interpscan plot`` draws from these files (``report.path_page``), so a run's page
    and a redrawn one look the same. Returns file name -> path.

    Raises:
        OutputError: ``out`` cannot be created or written.
    """
    from .report import path_page, write_page

    examples = getattr(result, "examples", None)
    names = [
        n for n in OUTPUT_FILES if (html or n != "results.html") and (examples is not None or n != "per_example.npz")
    ]
    manifest = replace(result.manifest, outputs=tuple(names))
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out, prefix=STAGING_PREFIX))
    except OSError as exc:
        raise _write_error(out, exc) from exc
    try:
        staged = {name: staging / name for name in names}
        write_csv(result.results, staged["results.csv"])
        write_csv(result.summary, staged["summary.csv"])
        write_json(manifest.to_json(), staged["run.json"])
        if html:
            # the page is drawn as `interpscan plot` would draw the final files
            run = replace(result, manifest=manifest, files={"results.csv": out / "results.csv"})
            page, _ = path_page([run])
            write_page(staged["results.html"], page)
        if examples is not None:
            import numpy as np

            with staged["per_example.npz"].open("wb") as fh:
                np.savez(fh, **examples)
        for name, path in staged.items():
            os.replace(path, out / name)
        for name in OUTPUT_FILES:
            if name not in staged:
                (out / name).unlink(missing_ok=True)  # an earlier run's, which this run does not replace
    except OSError as exc:
        raise _write_error(out, exc) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: out / name for name in names}


def _write_error(out: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"cannot write the results into {out}: {exc.strerror or exc}; the files already there are as they were",
        hint="free some space or choose another --out"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT)
        else "choose a writable --out",
    )


def partial_name(world: World) -> str:
    """The partial scan's file name: one per rank when several processes scan (each keeps its own share)."""
    return PARTIAL_NAME if world.size == 1 else f".interpscan-partial-rank{world.rank}-of-{world.size}.pt"


class PartialSaver:
    """Keeps the latest resumable snapshot of a scan and writes it to ``out/.interpscan-partial.pt`` at most every
    ``every`` seconds (and on ``flush``), atomically, so an interrupted scan loses at most that much work."""

    def __init__(self, out: Path, every: float | None = None, name: str = PARTIAL_NAME) -> None:
        self.path = out / name
        self.every = float(os.environ.get("INTERPSCAN_SAVE_EVERY", "2")) if every is None else every
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

        if self.latest is not None and self.latest is not self.written:
            try:
                with atomic_path(self.path) as tmp:
                    state = self.latest.to_state() if isinstance(self.latest, ScanSnapshot) else self.latest
                    torch.save(state, tmp)
            except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as a RuntimeError
                cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
                raise OutputError(
                    f"cannot save the partial scan to {self.path}: {cause}; the scan stopped",
                    hint="free some space where --out is, or choose another --out",
                ) from exc
            self.written, self.last = self.latest, time.monotonic()
        return self.path.exists()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def load_partial(out: Path, name: str = PARTIAL_NAME) -> dict[str, Any]:
    """The snapshot an interrupted scan left in ``out`` (``name``: the rank's own, under torchrun).

    Raises:
        OutputError: there is none, or it cannot be read.
    """
    import torch

    path = out / name
    if not path.is_file():
        raise OutputError(
            f"nothing to resume in {out} (no {name})",
            hint="run without --resume"
            if name == PARTIAL_NAME
            else "resume with the number of processes of the interrupted run, or run without --resume",
        )
    try:
        snapshot = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: torch raises several kinds
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise OutputError(f"cannot read the partial scan {path}: {cause}", hint="start afresh with --force") from exc
    if not isinstance(snapshot, dict) or "engine" not in snapshot:
        raise OutputError(f"{path} is not a partial scan", hint="start afresh with --force")
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
            (without ``resume`` or ``force``), or nothing to resume (with ``resume``); another run holds it.
    """

    def __init__(self, path: Path, *, force: bool = False, resume: bool = False, world: World | None = None) -> None:
        self.path, self.force, self.resume = Path(path), force, resume
        self.world = world or World()
        self.partial: ScanSnapshot | None = None
        self.saver = PartialSaver(self.path, name=partial_name(self.world))
        self._stack = ExitStack()
        self._created = False

    def __enter__(self) -> RunDirectory:
        failed: InterpscanError | None = None
        try:
            if self.world.leader:
                self._prepare()
            if self.resume:
                self.partial = ScanSnapshot.from_state(load_partial(self.path, self.saver.path.name))
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
        self._created = not self.path.exists()
        prepare_output_dir(self.path, force=self.force or self.resume)
        self._stack.enter_context(output_lock(self.path))
        for stale in self.path.glob(STAGING_PREFIX + "*"):  # a writer killed mid-write left it
            shutil.rmtree(stale, ignore_errors=True)

    def _release(self) -> None:
        self._stack.close()
        self._remove_if_empty()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        # a run that failed (bad data found mid-scan, ...) leaves nothing to resume; one that was interrupted or
        # lost its peers keeps what it finished
        kept = (Interrupted, KeyboardInterrupt, LostContact, Stopped)
        if kind is not None and not self.resume and not isinstance(exc, kept):
            self.saver.clear()
        self._stack.close()
        if kind is not None:
            self._remove_if_empty()

    def _remove_if_empty(self) -> None:
        if self._created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def keep(self, snapshot: ScanSnapshot) -> None:
        """The latest snapshot of the scan; written at most every few seconds (and on ``flush``)."""
        self.saver.keep(snapshot)

    def flush(self) -> bool:
        """Write the latest snapshot now; whether a partial scan is on disk."""
        return self.saver.flush()

    def write(self, result: Any, *, html: bool = True) -> dict[str, Path]:
        """results.csv, summary.csv, run.json (and results.html) of ``result``, by rank 0; then every rank's
        partial scan is removed (kept when the files could not be written). Returns name -> path (rank 0's)."""
        paths: dict[str, Path] = {}
        failed: InterpscanError | None = None
        if self.world.leader:
            try:
                paths = write_outputs(result, self.path, html=html)
            except InterpscanError as exc:
                failed = exc
        if not self.world.all_ok(failed is None):
            raise failed or Stopped("rank 0 could not write the run's files")
        self.saver.clear()
        return paths

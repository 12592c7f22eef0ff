"""Every file interpscan writes, and the one rule it writes by: atomically, never through a link, and inside an
output folder only over files it can prove it wrote.

A command writes into a folder the user names (``--out``, or the folder of the page ``plot`` draws). Links in
the path the user gave are the user's own choice and are followed once, when ``OutputFolder.open`` opens the
folder; from then on the folder is held open (a descriptor) and every name in it is handled relative to that
descriptor, so a folder renamed or swapped for a link mid-run is never written through. Inside it:

- New bytes go to a temporary file created exclusively (``O_CREAT|O_EXCL|O_NOFOLLOW``: never an existing file,
  never through a link), written through the descriptor that created it, then renamed into place. A rename
  replaces a directory entry and never follows a link at its destination, so nothing outside the folder is
  created or changed, and a reader sees the old file or the new one, never half of one.
- An entry is replaced or removed only when it is interpscan's: a working file (its name starts with
  ``.interpscan``: the lock, the ledger, partial scans, temporary files) that is a regular file, or a file the
  folder's ledger (``.interpscan-files.json``, rewritten with every file written) lists with this size and
  SHA-256, i.e. bytes interpscan wrote there itself. A file the caller named itself (``plot --out page.html``) is
  the caller's to replace. Anything else there (the user's file, a link, a directory) is refused, every such name
  in one error, before anything is renamed.
- The lock file is the one file written in place: opened with ``O_NOFOLLOW`` and refused unless it is a regular
  file with a single link (a hard link would carry the write to another name).

What this cannot guarantee: a program other than interpscan (which the lock keeps out) that writes into the same
folder can swap an entry between the check and the rename, a window of microseconds; the rename then replaces what
it put there, inside the folder and never through it. Where the platform lacks ``O_NOFOLLOW`` or descriptor-relative
calls (Windows), each entry is checked with ``lstat`` just before use, a check such a program could race. Files are
not fsync'ed: atomic for readers, not durable across a power cut.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import stat
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import OutputError, opt

# What a file is written from: text (as UTF-8), bytes, or a function that writes into the open binary file.
Content = str | bytes | Callable[[IO[bytes]], None]

WORKING_PREFIX = ".interpscan"  # every name interpscan keeps for itself in an output folder starts so
LOCK_NAME = ".interpscan.lock"
LEDGER_NAME = ".interpscan-files.json"
TEMP_PREFIX = ".interpscan-tmp-"
MAX_LEDGER_BYTES = 4 * 2**20  # a few hundred bytes per file written; a larger "ledger" is not ours
MAX_LOCK_BYTES = 2**16  # the holder's identity is a line of JSON
UNCHANGED = "already holds these bytes"  # _why_not's answer for a file that needs no replacing

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in after the check must not hang the open
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
RELATIVE = (
    _DIRECTORY != 0
    and {os.open, os.stat, os.unlink, os.rename, os.readlink} <= os.supports_dir_fd
    and os.scandir in os.supports_fd
)


def write_atomic(path: Path, content: Content) -> Path:
    """Write ``content`` to ``path``, the file the caller named: an existing regular file there is replaced, a
    link or a directory is refused. Written to a temporary sibling and renamed over ``path``.

    Raises:
        OutputError: ``path`` is a link, a directory or another non-file, or its folder does not exist.
        OSError: the write itself failed (a full disk).
    """
    path = Path(path)
    with OutputFolder.open(path.parent, create=False) as folder:
        folder.write({path.name: content}, named={path.name}, record=False)
    return path


@dataclass(frozen=True)
class Digest:
    """A file's size and SHA-256: what the ledger records of each file interpscan wrote."""

    size: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"bytes": self.size, "sha256": self.sha256}


def _digest(fh: IO[bytes]) -> Digest:
    fh.seek(0)
    h = hashlib.sha256()
    size = 0
    while chunk := fh.read(2**20):
        h.update(chunk)
        size += len(chunk)
    return Digest(size, h.hexdigest())


def _cannot(path: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"cannot write to output directory {path}: {exc.strerror or exc}", hint=f"choose a writable {opt('out')}"
    )


class OutputFolder:
    """A folder interpscan writes into, held open while it does; see the module's docstring for the rule every
    method keeps. Use as a context manager (``with OutputFolder.open(path) as folder``)."""

    def __init__(self, path: Path, fd: int | None) -> None:
        """Use ``open``. ``fd`` is the folder's descriptor, or None where names are used by path (Windows)."""
        self.path = path
        self._fd = fd

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> OutputFolder:
        """Open the folder ``path`` (created with its parents when missing, if ``create``).

        Raises:
            OutputError: ``path`` is a file, a link to nothing, missing (without ``create``), or cannot be created
                or opened.
        """
        path = Path(path)
        created = False
        if os.path.islink(path) and not path.exists():
            raise OutputError(
                f"{path} is a symbolic link to {os.readlink(path)}, which does not exist",
                hint=f"create the folder it points to, or choose another {opt('out')}",
            )
        if path.exists() and not path.is_dir():
            raise OutputError(f"output path {path} exists and is not a directory", hint=f"choose another {opt('out')}")
        if not path.exists():
            if not create:
                raise OutputError(f"folder {path} does not exist", hint=f"create it, or choose another {opt('out')}")
            try:
                path.mkdir(parents=True)
                created = True
            except FileExistsError:
                pass  # made by someone else meanwhile: opened as found
            except OSError as exc:
                raise _cannot(path, exc) from exc
        if not RELATIVE:
            return cls(path, None)
        # a folder made here is opened without following a link: one swapped in since is refused
        flags = os.O_RDONLY | _DIRECTORY | _CLOEXEC | (_NOFOLLOW if created else 0)
        try:
            return cls(path, os.open(path, flags))
        except OSError as exc:
            raise _cannot(path, exc) from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- entries, by name, never through a link -------------------------------------------------------------

    def _at(self, name: str) -> tuple[str, dict[str, int]]:
        """``name`` and the keyword that makes an os call resolve it in this folder."""
        if self._fd is None:
            return str(self.path / name), {}
        return name, {"dir_fd": self._fd}

    def lstat(self, name: str) -> os.stat_result | None:
        """The entry ``name`` itself (a link is not followed), or None when there is none."""
        where, at = self._at(name)
        try:
            return os.stat(where, follow_symlinks=False, **at)
        except FileNotFoundError:
            return None

    def names(self) -> list[str]:
        """Every entry's name, sorted."""
        with os.scandir(self._fd if self._fd is not None else self.path) as entries:
            return sorted(e.name for e in entries)

    def is_working_file(self, name: str) -> bool:
        """Whether ``name`` is one of interpscan's own working files: a reserved name, and a regular file."""
        st = self.lstat(name)
        return name.startswith(WORKING_PREFIX) and st is not None and stat.S_ISREG(st.st_mode)

    def link_target(self, name: str) -> str:
        where, at = self._at(name)
        try:
            return os.readlink(where, **at)
        except OSError:
            return "?"

    def _open(self, name: str, flags: int, mode: int = 0o666) -> int:
        """A descriptor of ``name`` opened without following a link (checked with lstat first where the platform
        has no O_NOFOLLOW; an exclusive create follows none anyway)."""
        exclusive = flags & os.O_CREAT and flags & os.O_EXCL
        if not _NOFOLLOW and not exclusive and (st := self.lstat(name)) is not None and stat.S_ISLNK(st.st_mode):
            raise OSError(40, "Too many levels of symbolic links", str(self.path / name))
        where, at = self._at(name)
        return os.open(where, flags | _NOFOLLOW | _CLOEXEC | _BINARY, mode, **at)

    def read(self, name: str, limit: int) -> bytes:
        """The first ``limit`` bytes of the regular file ``name``.

        Raises:
            OutputError: ``name`` is a link or not a regular file.
            FileNotFoundError: there is no ``name``.
        """
        with self.open_file(name) as fh:
            return fh.read(limit)

    def open_file(self, name: str) -> IO[bytes]:
        """The regular file ``name``, open for reading (never through a link).

        Raises:
            OutputError: ``name`` is a link or not a regular file.
            FileNotFoundError: there is no ``name``.
        """
        if (why := self._not_a_file(name)) is not None:
            raise OutputError(f"{self.path}: {why}", hint=f"remove it, or choose another {opt('out')}")
        fd = self._open(name, os.O_RDONLY | _NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the check
            os.close(fd)
            raise OutputError(
                f"{self.path}: {name} is not a regular file", hint=f"remove it, or choose another {opt('out')}"
            )
        return os.fdopen(fd, "rb")

    def _not_a_file(self, name: str) -> str | None:
        """What the entry ``name`` is when it is there and not a regular file (a link, a directory, ...)."""
        st = self.lstat(name)
        if st is None or stat.S_ISREG(st.st_mode):
            return None
        if stat.S_ISLNK(st.st_mode):
            return f"{name} is a symbolic link (to {self.link_target(name)})"
        return f"{name} is a directory" if stat.S_ISDIR(st.st_mode) else f"{name} is not a regular file"

    def _digest_of(self, name: str) -> Digest | None:
        """The digest of the regular file ``name`` as it is now (None when it cannot be read as one)."""
        try:
            with self.open_file(name) as fh:
                return _digest(fh)
        except OSError:
            return None

    # --- what may be replaced -------------------------------------------------------------------------------

    def _why_not(self, name: str, *, named: bool, ledger: Ledger, new: Digest | None = None) -> str | None:
        """Why the entry ``name`` may not be replaced or removed; None when it may (or is absent); ``UNCHANGED``
        when it already holds the ``new`` bytes (``_install`` then leaves it as it is, unclaimed)."""
        st = self.lstat(name)
        if st is None:
            return None
        if (why := self._not_a_file(name)) is not None:
            return why
        if name.startswith(WORKING_PREFIX) or (named and new is None):
            return None
        listed = ledger.lists(name, st.st_size)
        have = self._digest_of(name) if new is not None or listed else None
        if new is not None and have == new:
            return UNCHANGED
        if named or (have is not None and ledger.proves(name, have)):
            return None
        return (
            f"{name} changed since interpscan wrote it"
            if name in ledger.files
            else f"{name} was not written by interpscan"
        )

    def problems(self, names: Collection[str], *, named: Collection[str] = ()) -> list[str]:
        """Why each of ``names`` may not be replaced (empty when every one may): see ``_why_not``."""
        ledger = self.ledger()
        found = (self._why_not(n, named=n in named, ledger=ledger) for n in names)
        return [why for why in found if why is not None and why != UNCHANGED]

    def check(self, names: Collection[str], *, named: Collection[str] = ()) -> None:
        """Refuse unless every one of ``names`` is absent or may be replaced (``named``: names the caller gave).

        Raises:
            OutputError: one names every problem.
        """
        self._refuse(self.problems(names, named=named))

    def _refuse_entry(self, name: str) -> None:
        if (why := self._not_a_file(name)) is not None:
            self._refuse([why])

    def _refuse(self, problems: list[str]) -> None:
        if problems:
            raise OutputError(
                f"{self.path}: {'; '.join(problems)}. interpscan replaces only files it wrote there, never through "
                "a link",
                hint=f"move them elsewhere, or choose another {opt('out')}",
            )

    # --- the ledger -----------------------------------------------------------------------------------------

    def ledger(self) -> Ledger:
        """What the folder's ledger records (nothing when it is missing, a link, or not a ledger)."""
        try:
            text = self.read(LEDGER_NAME, MAX_LEDGER_BYTES + 1)
        except (OSError, OutputError):
            return Ledger({})
        return Ledger.parse(text)

    def _write_ledger(self, ledger: Ledger) -> None:
        text = json.dumps(ledger.as_json(), indent=1, sort_keys=True) + "\n"
        self.write({LEDGER_NAME: text}, record=False)

    # --- writing --------------------------------------------------------------------------------------------

    def _temporary(self, made: list[str]) -> IO[bytes]:
        """A new, empty temporary file in this folder, open for reading and writing; its name goes into ``made``."""
        for _ in range(100):
            name = TEMP_PREFIX + secrets.token_hex(8)
            try:
                fd = self._open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                continue
            made.append(name)
            return os.fdopen(fd, "w+b")
        raise FileExistsError(f"no free temporary name in {self.path}")

    def check_writable(self) -> None:
        """Create a file in the folder and remove it: raises OSError where that cannot be done."""
        made: list[str] = []
        try:
            self._temporary(made).close()
        finally:
            for name in made:
                self._unlink(name)

    def _replace(self, source: str, name: str) -> None:
        if self._fd is None:
            os.replace(self.path / source, self.path / name)
        else:
            os.replace(source, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)

    def _unlink(self, name: str) -> None:
        where, at = self._at(name)
        with suppress(FileNotFoundError):
            os.unlink(where, **at)

    def write(
        self,
        files: Mapping[str, Content],
        *,
        named: Collection[str] = (),
        remove: Collection[str] = (),
        record: bool = True,
    ) -> dict[str, Path]:
        """Write ``files`` (name -> content) into the folder as one unit: each to a temporary file first; only
        when every one is whole, and every name is free or may be replaced, are they renamed into place. Then
        the names in ``remove`` that are interpscan's are removed (an earlier run's files this one does not
        write); others there are left alone. The ledger records what was written (unless ``record`` is False,
        for files the caller names: ``write_atomic``).

        Args:
            files: The files, in the order they are reported.
            named: Names the caller chose itself: an existing regular file there is replaced without proof.
            remove: Names to remove when they are interpscan's.
            record: Record the files in the ledger.

        Returns:
            name -> path, for every file of ``files``.

        Raises:
            OutputError: a name is taken by a link, a directory or a file interpscan cannot prove it wrote; the
                folder is left as it was.
            OSError: writing a file failed (a full disk); the folder is left as it was.
        """
        made: list[str] = []
        try:
            staged: dict[str, tuple[str, Digest]] = {}
            for name, content in files.items():
                with self._temporary(made) as fh:
                    if callable(content):
                        content(fh)
                    else:
                        # backslashreplace: a lone surrogate (a path's byte that is not UTF-8, as Python holds
                        # it) is written as \udcff, JSON's and JavaScript's escape for it, never lost with the scan
                        fh.write(content.encode("utf-8", "backslashreplace") if isinstance(content, str) else content)
                    fh.flush()
                    staged[name] = (made[-1], _digest(fh))
            self._install(staged, named=set(named), record=record)
        finally:
            for tmp in made:  # those renamed into place are gone; the rest were not needed
                self._unlink(tmp)
        self.remove(remove, record=record)
        return {name: self.path / name for name in files}

    def _install(self, staged: Mapping[str, tuple[str, Digest]], *, named: set[str], record: bool) -> None:
        """Rename the staged files into place, after checking every name; the ledger lists both the old and the
        new bytes while the renames happen, so a run killed among them leaves every file provably interpscan's."""
        # working files (a partial scan every few seconds) need no ledger: they are interpscan's by name
        ledger = self.ledger() if any(not n.startswith(WORKING_PREFIX) for n in staged) else Ledger({})
        why = {
            name: self._why_not(name, named=name in named, ledger=ledger, new=new) for name, (_, new) in staged.items()
        }
        self._refuse([w for w in why.values() if w is not None and w != UNCHANGED])
        todo = {name: tmp_new for name, tmp_new in staged.items() if why[name] is None}
        mine = {name: new for name, (_, new) in todo.items() if record and not name.startswith(WORKING_PREFIX)}
        if mine:
            self._write_ledger(ledger.present(self).adding(mine, keep=True))
        for name, (tmp, _) in todo.items():
            self._replace(tmp, name)
        if mine:
            self._write_ledger(ledger.present(self).adding(mine, keep=False))

    def remove(self, names: Collection[str], *, record: bool = True) -> list[str]:
        """Remove those of ``names`` that are interpscan's (working files, files the ledger proves); leave the
        rest. Returns the names removed."""
        if not names:
            return []
        ledger = self.ledger()
        gone = [n for n in names if self.lstat(n) is not None and self._why_not(n, named=False, ledger=ledger) is None]
        for name in gone:
            self._unlink(name)
        if record and any(not n.startswith(WORKING_PREFIX) for n in gone):
            self._write_ledger(ledger.present(self))
        return gone

    def remove_temporaries(self) -> None:
        """Remove the temporary files a writer killed mid-write left (regular files under TEMP_PREFIX only)."""
        for name in self.names():
            if name.startswith(TEMP_PREFIX) and self.is_working_file(name):
                self._unlink(name)

    # --- the lock -------------------------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock (``.interpscan.lock``) while a command writes into it, so that two runs never
        write one folder.

        The lock is a kernel file lock on that file (taken by the filelock package: flock on POSIX, LockFileEx on
        Windows), and the file holds the holder's identity (``holder_identity``). The kernel releases a file lock
        when its holder dies: a lock whose file lock is free was left by a run that died under this kernel and is
        taken over; one taken under another kernel, or without an identity, is refused, as interpscan cannot tell
        whether that run is alive. (Windows keeps others from reading a locked file, so there a refusal cannot
        name the live holder.)

        Raises:
            OutputError: another live run holds the lock, or one that cannot be checked does; the lock file is a
                link, a hard link or not a regular file; the file system refuses file locks.
        """
        me = holder_identity()
        shown = self.path / LOCK_NAME
        for _ in range(5):
            self._refuse_entry(LOCK_NAME)
            try:
                fd = self._open(LOCK_NAME, os.O_CREAT | os.O_RDWR | _NONBLOCK, 0o644)
            except OSError as exc:
                self._refuse_entry(LOCK_NAME)  # a link swapped in after the check above
                raise _cannot(self.path, exc) from exc
            try:
                held = self._take(fd, shown, me)
            except BaseException:
                os.close(fd)
                raise
            if held:
                break
            os.close(fd)
        else:
            raise OutputError(f"cannot take the lock {shown}", hint="remove it if no interpscan run is writing there")
        try:
            yield
        finally:
            now = self.lstat(LOCK_NAME)
            if now is not None and os.path.samestat(now, os.fstat(fd)):  # still ours: a holder removes only its own
                self._unlink(LOCK_NAME)
            os.close(fd)

    def _take(self, fd: int, shown: Path, me: dict[str, Any]) -> bool:
        """Lock the open lock file ``fd`` and write ``me`` into it; False when the file was replaced meanwhile
        (the holder removed it as we opened it: try the new one)."""
        from filelock import lock_descriptor

        st = os.fstat(fd)
        if st.st_nlink == 0:
            return False  # removed by its holder as we opened it
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise OutputError(
                f"{shown} is not a regular file with a single name (a hard link: writing the lock would change the "
                "other name too)",
                hint=f"remove {shown}, or choose another {opt('out')}",
            )
        try:
            held = lock_descriptor(fd, blocking=False)
        except OSError as exc:  # e.g. a network file system without file locks
            raise OutputError(
                f"cannot lock {shown}: {exc.strerror or exc}",
                hint=f"write to a local disk ({opt('out')}), where two runs can be kept apart",
            ) from exc
        if not held:
            raise OutputError(
                f"another interpscan run ({_describe(_holder(fd))}) is writing to {self.path}",
                hint=f"wait for it to finish, or choose another {opt('out')}",
            )
        now = self.lstat(LOCK_NAME)
        if now is None or not os.path.samestat(st, now):
            return False
        if st.st_size and (why := _cannot_tell(_holder(fd), me)):
            raise OutputError(
                f"{self.path} is locked and interpscan cannot tell whether the run that locked it is alive: {why}",
                hint=f"if no interpscan run is writing there, remove {shown}",
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
        return True


@dataclass(frozen=True)
class Ledger:
    """The folder's record of the files interpscan wrote there: name -> the digests it may hold (one, or two
    while a write renames files into place)."""

    files: Mapping[str, tuple[Digest, ...]]

    ABOUT = (
        "The files interpscan wrote in this folder (bytes, SHA-256). It replaces or removes a file here only while "
        "the file is listed with these bytes; anything else is the user's."
    )

    @classmethod
    def parse(cls, text: bytes) -> Ledger:
        """The ledger in ``text``; an empty one when ``text`` is not one (too long, not JSON, another shape)."""
        if len(text) > MAX_LEDGER_BYTES:
            return cls({})
        try:
            data = json.loads(text)
            files = {
                str(name): tuple(Digest(int(d["bytes"]), str(d["sha256"])) for d in digests)
                for name, digests in data["files"].items()
            }
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls({})
        return cls(files)

    def as_json(self) -> dict[str, Any]:
        return {"about": self.ABOUT, "files": {n: [d.as_json() for d in ds] for n, ds in sorted(self.files.items())}}

    def lists(self, name: str, size: int) -> bool:
        return any(d.size == size for d in self.files.get(name, ()))

    def proves(self, name: str, digest: Digest) -> bool:
        return digest in self.files.get(name, ())

    def adding(self, new: Mapping[str, Digest], *, keep: bool) -> Ledger:
        """This ledger with ``new`` recorded; ``keep`` keeps each name's earlier digests beside the new one."""
        files = dict(self.files)
        for name, digest in new.items():
            files[name] = (*(d for d in files.get(name, ()) if keep and d != digest), digest)
        return Ledger(files)

    def present(self, folder: OutputFolder) -> Ledger:
        """This ledger without the names no longer in ``folder``."""
        return Ledger({n: ds for n, ds in self.files.items() if folder.lstat(n) is not None})


# --- who holds a lock --------------------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _started(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), or "" where unknown."""
    stat_line = _read(f"/proc/{pid}/stat")
    fields = stat_line.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
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


def _holder(fd: int) -> dict[str, Any]:
    """The identity the open lock file ``fd`` holds ({} when it holds none, or not as JSON)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, MAX_LOCK_BYTES) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}

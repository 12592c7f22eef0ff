"""Fetching dataset files: download from a list of mirrors with size and md5 checks, atomic archive extraction.

Nothing half-written ever sits under its final name: a download goes to a temporary file beside its target and
is renamed only once its size and checksum are right; an archive is extracted into a temporary folder and
renamed into place. Progress is reported through a callback, so this module prints nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import DataError, opt

# Called as progress(filename, bytes received so far, total bytes); restarts from 0 when a mirror is retried.
DownloadProgress = Callable[[str, int, int], None]

CHUNK = 1 << 20  # bytes per read: 1 MiB
TIMEOUT = 30.0  # seconds without a byte before a mirror is given up


class DownloadError(DataError):
    """A file that could not be fetched (offline, HTTP error, truncated, wrong checksum). A failed run, not bad
    input: the same command works once the file is there."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, failures: Sequence[str] = ()) -> None:
        super().__init__(message, hint=hint)
        self.failures = tuple(failures)  # one "URL: reason" per mirror tried


@dataclass(frozen=True)
class Resource:
    """One file of a dataset as published: its name, where it can be fetched, and how to recognise it."""

    filename: str
    urls: tuple[str, ...]  # mirrors, tried in order
    md5: str
    size: int  # bytes

    @property
    def url(self) -> str:
        return self.urls[0]


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, resource: Resource) -> str | None:
    """None when ``path`` is the published file (size, then md5), else what is wrong with it."""
    size = path.stat().st_size
    if size != resource.size:
        return f"{size} bytes, expected {resource.size}"
    digest = md5sum(path)
    if digest != resource.md5:
        return f"md5 {digest}, expected {resource.md5}"
    return None


class _MirrorFailed(Exception):
    """One mirror did not deliver the file; the message says why, in a few words."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".strip()
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return str(reason.strerror if isinstance(reason, OSError) and reason.strerror else reason)
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed after {len(exc.partial)} more bytes"
    return str(exc) or type(exc).__name__


def _fetch_one(url: str, resource: Resource, tmp: Path, progress: DownloadProgress | None, timeout: float) -> None:
    """Stream ``url`` into ``tmp`` and check it; raise _MirrorFailed with the reason otherwise."""
    request = urllib.request.Request(url, headers={"User-Agent": f"interpscan/{__version__}"})
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, tmp.open("wb") as out:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) != resource.size:
                raise _MirrorFailed(f"the server offers {declared} bytes, expected {resource.size}")
            if progress:
                progress(resource.filename, 0, resource.size)
            while chunk := response.read(CHUNK):
                received += len(chunk)
                if received > resource.size:  # never store more than the published file holds
                    raise _MirrorFailed(f"more than the expected {resource.size} bytes")
                digest.update(chunk)
                out.write(chunk)
                if progress:
                    progress(resource.filename, received, resource.size)
    except _MirrorFailed:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise _MirrorFailed(_reason(exc)) from exc
    if received != resource.size:
        raise _MirrorFailed(f"truncated: {received} of {resource.size} bytes")
    if digest.hexdigest() != resource.md5:
        raise _MirrorFailed(f"checksum mismatch: md5 {digest.hexdigest()}, expected {resource.md5}")


def fetch(
    resource: Resource,
    directory: Path,
    *,
    progress: DownloadProgress | None = None,
    timeout: float = TIMEOUT,
) -> Path:
    """Download ``resource`` into ``directory`` (which must exist), trying each mirror in turn.

    The bytes go to a temporary file in ``directory`` and are renamed to ``resource.filename`` only after the
    size and md5 match; on any failure, interruption included, the temporary file is removed.

    Args:
        progress: called with (filename, bytes so far, total bytes) as data arrives.
        timeout: seconds to wait for a connection or for the next bytes, per mirror.

    Returns:
        The path of the verified file.

    Raises:
        DownloadError: no mirror delivered the file; ``failures`` says why for each.
    """
    target = directory / resource.filename
    failures: list[str] = []
    for url in resource.urls:
        fd, name = tempfile.mkstemp(prefix=f".{resource.filename}.", suffix=".part", dir=directory)
        os.close(fd)
        tmp = Path(name)
        try:
            _fetch_one(url, resource, tmp, progress, timeout)
            os.replace(tmp, target)
            return target
        except _MirrorFailed as exc:
            failures.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError(
        f"downloading {resource.filename} failed ({'; '.join(failures)})",
        hint=f"fetch {resource.url} (md5 {resource.md5}) by hand and put it in {directory}",
        failures=failures,
    )


@contextmanager
def created_dirs(directory: Path) -> Iterator[Path]:
    """Create ``directory`` and its missing parents; if the block fails, remove those of them that are empty.

    So a failed download into a cache that did not exist yet leaves no trace behind.
    """
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create {directory} ({exc.strerror or exc})",
            hint=f"pass a writable {opt('data_root')}",
        ) from exc
    try:
        yield directory
    except BaseException:
        for d in missing:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _safe_members(tar: tarfile.TarFile, archive: Path, folder: str) -> list[tarfile.TarInfo]:
    """The archive's regular files and folders under ``folder``/; refuses absolute paths, '..' and links."""
    members = []
    for m in tar.getmembers():
        parts = Path(m.name).parts
        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
            raise DataError(f"{archive}: refusing to extract {m.name!r} (unsafe path or link)")
        if parts and parts[0] == folder:
            members.append(m)
    return members


def extract_folder(archive: Path, folder: str, directory: Path) -> Path:
    """Extract the top-level ``folder`` of a tar archive into ``directory``, atomically.

    Members are written into a temporary folder inside ``directory`` and the result renamed to
    ``directory/folder`` in one step, so an interrupted or failed extraction leaves nothing under that name.

    Raises:
        DataError: the archive is unreadable, unsafe, or has no such folder; ``directory/folder`` already
            exists (an incomplete copy the user has to look at).
    """
    target = directory / folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", suffix=".partial", dir=directory))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_members(tar, archive, folder)
                if not members:
                    raise DataError(f"{archive}: no {folder}/ folder inside", hint="delete it and fetch it again")
                if hasattr(tarfile, "data_filter"):  # Python ≥ 3.10.12 / 3.11.4: the safe extraction filter
                    tar.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - older interpreters; _safe_members already vetted every member
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{archive}: unreadable archive ({exc})", hint="delete it and fetch it again") from exc
        try:
            os.rename(tmp / folder, target)
        except OSError as exc:
            raise DataError(
                f"cannot put the extracted {folder}/ in place: {target} already exists",
                hint=f"it looks incomplete; remove {target} and run again",
            ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

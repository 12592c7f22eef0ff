"""The rules every reader of a user-named file follows, and every file interpscan hands to a library (transformers,
safetensors, torch): only regular files are opened (a FIFO, a device or a socket would block or never end); a file
found inside a folder stays inside that folder's tree once links are followed (check_in_tree); and no file makes
interpscan allocate much more than it holds — checked from the sizes the file declares, before anything is
decompressed, parsed or allocated (check_expansion, read_json).

The bound: a file may make interpscan hold its own size (stored data is at most that) plus a budget for what
decompression adds, ``INTERPSCAN_MAX_DECOMPRESSED`` (default 256 MiB). torch.save, safetensors and np.savez store
their data, so only re-zipped checkpoints, np.savez_compressed archives, gzipped IDX files and image folders ever
draw on it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InterpscanError, UsageError

BUDGET_ENV = "INTERPSCAN_MAX_DECOMPRESSED"
# What decompression may add beyond a file's own size. Large enough for any compressed checkpoint or dataset that
# fits in a laptop's memory several times over (CIFAR-10's train split is 150 MiB as uint8); small enough that a
# crafted file cannot take a machine's memory.
DEFAULT_BUDGET = 256 << 20  # bytes

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def check_regular(path: Path, error: type[InterpscanError], *, what: str = "file") -> int:
    """Refuse anything but a readable regular file (symbolic links followed), without opening it; its size.

    ``os.stat`` never blocks, where opening a FIFO waits for a writer and reading a device may never end.

    Args:
        what: what the file is to the user ("checkpoint", "data file"), for messages.

    Raises:
        error: a missing file or broken link, a loop of links, a FIFO, device, socket or directory, or a file the
            user may not read.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise error(
                f"{path}: a symbolic link to {os.readlink(path)}, which does not exist",
                hint="point the link at the file, or pass the file itself",
            ) from None
        raise error(f"{what} not found: {path}", hint="check the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(
                f"{path}: a loop of symbolic links (the link leads back to itself)",
                hint="point the link at the file, or pass the file itself",
            ) from None
        raise error(f"{path}: cannot be read ({exc.strerror or exc})", hint="check the path and permissions") from exc
    kind = next((name for test, name in _KINDS if test(st.st_mode)), None)
    if kind is not None:
        consequence = "" if kind == "a directory" else "; reading it could wait forever or never end"
        raise error(
            f"{path} is {kind}, not a regular {what}{consequence}",
            hint=f"pass the {what} itself" if kind == "a directory" else "copy the data into a regular file first",
        )
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path} is not a regular {what}", hint="copy the data into a regular file first")
    if not os.access(path, os.R_OK):
        raise error(f"{path}: permission denied (you may not read this {what})", hint=f"check the {what}'s permissions")
    return st.st_size


def describe_size(n: int) -> str:
    """Bytes in words: ``812 bytes``, ``3.1 MiB``, ``1.0 GiB``."""
    if n < 1024:
        return f"{n:,} bytes"
    value, unit = float(n), "bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):  # noqa: B007 (the unit the loop stops at is the one shown)
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def env_size(name: str, default: int) -> int:
    """A size in bytes from the environment variable ``name`` (bytes, or with a binary suffix: ``512M``, ``2G``,
    ``2GiB``), else ``default``.

    Raises:
        UsageError: the variable is set to something that is not a size.
    """
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    match = _SIZE.match(text)
    if match is None:
        raise UsageError(
            f"{name}={text!r} is not a size",
            hint=f"give bytes, or a number with K, M, G or T (powers of 1024), e.g. {name}=2G",
        )
    scale = 1 << (10 * " kmgtp".index(match.group(2).lower() or " "))
    return int(float(match.group(1)) * scale)


def decompression_budget() -> int:
    """Bytes decompression may add beyond a file's own size: ``INTERPSCAN_MAX_DECOMPRESSED`` (env_size), else
    DEFAULT_BUDGET.

    Raises:
        UsageError: the variable is set to something that is not a size.
    """
    return env_size(BUDGET_ENV, DEFAULT_BUDGET)


def check_expansion(what: str, declared: int, on_disk: int, error: type[InterpscanError]) -> None:
    """Refuse to decompress or allocate ``declared`` bytes for data that takes ``on_disk`` bytes in its file(s)
    when that exceeds the file size by more than the budget (decompression_budget).

    Args:
        what: the file (and entry) as the user knows it, first in the message.
        declared: bytes the file says its contents take once read (its sizes, not yet checked against the data).
        on_disk: bytes the file (or files) hold.

    Raises:
        error: over the bound; the hint says how to raise it for a trusted file.
    """
    budget = decompression_budget()
    if declared <= on_disk + budget:
        return
    need = -(-(declared - on_disk) // (1 << 20))  # MiB, rounded up
    # honest compression of real data rarely passes 100:1; zeros and crafted files pass 1000:1
    crafted = "; at this ratio the file is more likely crafted (a decompression bomb) than real"
    raise error(
        f"{what} declares {describe_size(declared)} of data in {describe_size(on_disk)} on disk; interpscan "
        f"allocates at most {describe_size(budget)} beyond a file's own size, so it is refused before reading",
        hint=f"if you trust the file, raise the bound: {BUDGET_ENV}={need}M or more"
        + (crafted if declared > 100 * max(on_disk, 1) else ""),
    )


def tree_of(folder: Path) -> Path:
    """The tree the files of ``folder`` may link into: the folder itself, or for a snapshot in the Hugging Face
    hub's cache (``models--org--name/snapshots/<revision>/``, whose files link to ``../../blobs/``), the model's
    whole cache folder."""
    folder = folder.absolute()
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith(("models--", "datasets--")):
        return folder.parent.parent
    return folder


def check_in_tree(path: Path, tree: Path, error: type[InterpscanError], *, what: str = "file") -> int:
    """check_regular for a file found inside a folder (a shard an index names, a file transformers reads), which
    must also stay inside ``tree`` once its links are followed: a folder from a stranger must not make interpscan
    (or a library it hands the folder to) read a file elsewhere on the machine. Its size.

    Raises:
        error: see check_regular; or a link (at any step) that leads outside ``tree``.
    """
    size = check_regular(path, error, what=what)
    root = os.path.realpath(tree)
    target = os.path.realpath(path)
    if os.path.commonpath([root, target]) != root:
        raise error(
            f"{path} links to {target}, outside the folder {tree} it belongs to",
            hint=f"copy the {what} into the folder instead of linking to it",
        )
    return size


# Files that describe a model (config.json, a sharded checkpoint's index) hold names and numbers. The largest real
# ones are ImageNet-22k classifiers' configs, which list 21,843 labels both ways (about 2 MB), and the indexes of
# models with some 100,000 tensors (about 10 MB). Parsed, JSON takes up to 24 times its size in Python (empty lists
# and dicts) and transformers copies a config several times (a 60 MB config.json took 3.4 GiB), so a bound a few
# times the largest real file keeps a crafted one to a few hundred MiB.
MAX_CONFIG_BYTES = 8 << 20
MAX_INDEX_BYTES = 16 << 20


def check_json_size(path: Path, size: int, error: type[InterpscanError], *, what: str, limit: int) -> None:
    """Refuse a JSON file of ``size`` bytes over ``limit`` (MAX_CONFIG_BYTES, MAX_INDEX_BYTES), before it is read.

    Raises:
        error: over the bound.
    """
    if size > limit:
        raise error(
            f"{path}: a {what} of {describe_size(size)}; interpscan reads at most {describe_size(limit)}, several "
            f"times the largest real one, so it is refused before reading",
            hint=f"this {what} was not written by the tool that saved the model; check the folder",
        )


def read_json(path: Path, error: type[InterpscanError], *, what: str, limit: int) -> Any:
    """The JSON document in a regular file of at most ``limit`` bytes, checked before a byte is read.

    Raises:
        error: not a regular file (check_regular), larger than ``limit``, not UTF-8, not JSON, or nested too deep
            for Python's decoder.
    """
    check_json_size(path, check_regular(path, error, what=what), error, what=what, limit=limit)
    try:
        with path.open("rb") as fh:
            return json.loads(fh.read(limit + 1).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})", hint=_RESAVE) from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc})", hint=_RESAVE) from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to read", hint=_RESAVE) from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})", hint="check the path and permissions") from exc


_RESAVE = "the file is damaged or was not written by the tool that saved the model; re-save the model"


@contextlib.contextmanager
def utf8_name(path: Path, error: type[InterpscanError]) -> Iterator[str]:
    """A name for ``path`` (a regular file or a folder, already checked) that a library taking only UTF-8 paths
    can open: the safetensors library refuses any other ("Path … is not valid UTF-8"), and a folder named in
    Latin-1 is the user's right. Such a path is opened here and named through /proc/self/fd, whose names are
    ASCII and which reaches the files inside a folder too (Linux).

    Raises:
        error: a path that is not UTF-8 on a system without /proc/self/fd.
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield text
        return
    if not os.path.isdir("/proc/self/fd"):
        raise error(
            f"{path}: the path is not UTF-8 text, and the safetensors library opens only UTF-8 paths",
            hint="rename the folder (or file) to a UTF-8 name",
        )
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)

"""One reader for files of named tensors — torch.save (zip or legacy pickle), safetensors and .npz — shared by
checkpoints and data files: the format named from the bytes, pickles loaded with ``weights_only`` (a file never
runs code unless the caller allows it), zip entries refused when their declared size is impossible.

Errors are raised as the caller's class (CheckpointError for checkpoints, DataError for data files), with the
file's path first.
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, DataError, InterpscanError

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


def check_zip_sizes(path: Path, entries: list[zipfile.ZipInfo]) -> None:
    """Refuse an entry whose declared size no honest zip can have, before any reader allocates for it.

    torch's reader allocates an entry's declared uncompressed size up front; a stored entry's size must equal
    its compressed size, and deflate cannot expand more than 1032:1.
    """
    for e in entries:
        limit = e.compress_size if e.compress_type == zipfile.ZIP_STORED else 1032 * e.compress_size + 1024
        if e.file_size > limit:
            raise CheckpointError(
                f"{path}: zip entry {e.filename} declares {e.file_size:,} bytes uncompressed from "
                f"{e.compress_size:,} compressed; refused without reading it",
                hint="the file is corrupt or crafted (a zip bomb); re-download or re-save it",
            )


def _zip_format(path: Path) -> str | None:
    """torch.save, torch.jit.save, torch.export.save and np.savez all write zip files: tell them apart."""
    try:
        with zipfile.ZipFile(path) as zf:
            entries = zf.infolist()
    except (zipfile.BadZipFile, OSError):
        return None  # a truncated torch file still has the magic: let torch.load report it
    check_zip_sizes(path, entries)
    names = [e.filename for e in entries]
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/archive_format") or n.startswith("archive_format") for n in names):
        return "torch-export"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "torch-zip"


def detect_format(path: Path) -> str:
    """Name the checkpoint format from the file's bytes (never from its extension).

    Returns one of torch-zip, torch-legacy, safetensors, torchscript, torch-export, npz, or ``*-sharded`` for
    the JSON index of a sharded checkpoint.

    Raises:
        CheckpointError: the bytes match no supported format.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(9)
    if head.startswith(_ZIP_MAGIC):
        return _zip_format(path) or "torch-zip"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len <= size - 8:
            return "safetensors"
    if head[:1] and head[0] == _PICKLE_PROTO:
        return "torch-legacy"
    if head.lstrip()[:1] == b"{" and size < 64 << 20:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            index = json.loads(path.read_text())
            if isinstance(index, dict) and isinstance(index.get("weight_map"), dict):
                shards = {str(v) for v in index["weight_map"].values()}
                return "safetensors-sharded" if all(s.endswith(".safetensors") for s in shards) else "torch-sharded"
    what = "an empty file" if size == 0 else f"a file starting with bytes {head[:8].hex(' ')}"
    raise CheckpointError(
        f"{path}: not a checkpoint interpscan can read ({what})",
        hint="expected a PyTorch file (torch.save, torch.jit.save, torch.export.save), a .safetensors file "
        "or a sharded checkpoint's index, or an .npz archive",
    )


Error = type[InterpscanError]


def _refusal(path: Path, exc: Exception, error: Error) -> InterpscanError:
    found = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(exc))))
    needs = f" (it needs {', '.join(found)})" if found else ""
    if issubclass(error, DataError):
        hint = "a data file must hold plain tensors: save it with torch.save({'inputs': x, 'targets': y}, path)"
    else:
        hint = (
            "loading it would run code the file names, which can do anything your account can; if you trust "
            "the file, pass --unsafe-pickle, or save model.state_dict() instead"
        )
    return error(f"{path}: refused to unpickle objects other than tensors and plain containers{needs}", hint=hint)


def read_torch(path: Path, *, unsafe_pickle: bool = False, error: Error = CheckpointError) -> Any:
    """``torch.load`` of a file on the CPU, with ``weights_only`` unless ``unsafe_pickle``.

    Raises:
        error: the file is not readable by torch, or (without ``unsafe_pickle``) names Python objects.
    """
    try:
        # A file object, not the path: torch.load treats any path ending in .safetensors as one.
        with path.open("rb") as fh, warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4": noise for the user; a real problem raises below
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(fh, map_location="cpu", weights_only=not unsafe_pickle)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not unsafe_pickle and ("GLOBAL " in str(exc) or "Unsupported global" in str(exc)):
            raise _refusal(path, exc, error) from exc
        if not unsafe_pickle and "WeightsUnpickler error:" in str(exc):
            # Not a named object but an opcode or structure the safe unpickler rejects: truncated, or not torch.save
            detail = str(exc).split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
            raise error(
                f"{path}: unreadable PyTorch file (the safe unpickler stopped: {detail})",
                hint="the file may be truncated, or a plain pickle rather than torch.save output",
            ) from exc
        if unsafe_pickle and isinstance(exc, (AttributeError, ImportError)):
            raise error(
                f"{path}: the pickle needs Python code that cannot be imported here ({text})",
                hint="run interpscan where the model's module is importable (e.g. set PYTHONPATH), or save "
                "model.state_dict() and pass --model",
            ) from exc
        raise error(f"{path}: unreadable PyTorch file ({text})") from exc


def read_safetensors(path: Path, *, error: Error = CheckpointError) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a .safetensors file and its string metadata.

    Raises:
        error: the header or data are malformed.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"{path}: unreadable safetensors file ({exc})") from exc
    return dict(tensors), dict(header.get("__metadata__") or {})


def read_npz(path: Path, *, error: Error = CheckpointError) -> dict[str, torch.Tensor]:
    """The arrays of an .npz archive as tensors, never unpickling (object arrays are refused).

    Raises:
        error: not an .npz archive (a single .npy array included), or unreadable.
    """
    import numpy as np

    try:
        with path.open("rb") as fh:  # our own handle: np.load leaks its one when the zip is corrupt
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):  # a single .npy array under an .npz name
                raise error(f"{path}: a single array, not an .npz archive", hint="save with np.savez(path, x=x, y=y)")
            return {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
    except InterpscanError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # ValueError also covers object arrays, which would need pickle
        raise error(f"{path}: unreadable .npz archive ({exc})") from exc


def read_tensor_dict(path: Path, *, error: Error = DataError) -> dict[str, Any]:
    """The entries of a data file of named tensors (torch.save of a dict, .npz, .safetensors), by content.

    Raises:
        error: the bytes are no such file, the file is unreadable, or a torch file holds something else.
    """
    if path.suffix == ".npz":
        return read_npz(path, error=error)
    try:
        fmt = detect_format(path)
    except CheckpointError as exc:
        raise error(exc.message, hint="expected a .pt/.pth (torch.save), .npz or .safetensors file") from exc
    if fmt == "npz":
        return read_npz(path, error=error)
    if fmt == "safetensors":
        return read_safetensors(path, error=error)[0]
    if fmt not in ("torch-zip", "torch-legacy"):
        raise error(
            f"{path}: a {fmt} file, not a file of tensors",
            hint="save inputs and targets with torch.save({'inputs': x, 'targets': y}, path)",
        )
    obj = read_torch(path, error=error)
    if not isinstance(obj, dict):
        raise error(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return dict(obj)

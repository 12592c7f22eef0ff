"""One reader for files of named tensors — torch.save (zip or legacy pickle), safetensors and .npz — shared by
checkpoints and data files: the format named from the bytes, pickles loaded with ``weights_only`` (a file never
runs code unless the caller allows it), and every size a file declares checked (files.check_expansion) before a
reader allocates for it.

Errors are raised as the caller's class (CheckpointError for checkpoints, DataError for data files), with the
file's path first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from .errors import CheckpointError, DataError, InterpscanError, opt
from .files import MAX_INDEX_BYTES, check_expansion, check_regular, describe_size, read_json, utf8_name

_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_PROTO = 0x80
# torch.save(..., _use_new_zipfile_serialization=False) starts with this number, pickled (LONG1, 10 bytes)
_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
# deflate cannot expand more than 1032:1, whatever the data
_DEFLATE_MAX_RATIO = 1032

Error = type[InterpscanError]


def _what(error: Error) -> str:
    return "data file" if issubclass(error, DataError) else "checkpoint"


def check_zip_sizes(path: Path, entries: list[zipfile.ZipInfo], error: Error = CheckpointError) -> None:
    """Refuse a zip whose entries would make a reader allocate more than the file allows, before any reader does.

    torch's reader allocates an entry's declared uncompressed size up front, and numpy an array's declared shape.
    An entry no honest zip can have (a stored entry larger than its data, deflate beyond 1032:1) is corrupt or
    crafted; together, the entries may take the file's size plus the decompression budget (files.check_expansion),
    which also bounds entries that share their data (overlapping entries, stored or not).
    """
    for e in entries:
        if e.compress_type == zipfile.ZIP_STORED:
            limit = e.compress_size
        else:
            limit = _DEFLATE_MAX_RATIO * e.compress_size + 1024
        if e.file_size > limit:
            raise error(
                f"{path}: zip entry {e.filename} declares {e.file_size:,} bytes uncompressed from "
                f"{e.compress_size:,} compressed; refused without reading it",
                hint="the file is corrupt or crafted (a zip bomb); re-download or re-save it",
            )
    declared = sum(e.file_size for e in entries)
    check_expansion(str(path), declared, path.stat().st_size, error)


def _zip_entries(path: Path, error: Error) -> list[zipfile.ZipInfo] | None:
    """The entries of a zip file, checked (check_zip_sizes); None when the central directory is unreadable."""
    try:
        with zipfile.ZipFile(path) as zf:
            entries = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # a truncated torch file still has the magic: let the reader report it
    check_zip_sizes(path, entries, error)
    return entries


def _zip_format(path: Path, error: Error) -> str | None:
    """torch.save, torch.jit.save, torch.export.save and np.savez all write zip files: tell them apart."""
    entries = _zip_entries(path, error)
    if entries is None:
        return None
    names = [e.filename for e in entries]
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("/archive_format") or n.startswith("archive_format") for n in names):
        return "torch-export"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "torch-zip"


def _is_legacy_torch(head: bytes) -> bool:
    """A legacy torch file opens with its pickled magic number, after the protocol (and, from protocol 4, a frame)."""
    return head[:1] == bytes([_PICKLE_PROTO]) and _LEGACY_MAGIC in head[:32]


def detect_format(path: Path, *, error: Error = CheckpointError) -> str:
    """Name the checkpoint format from the file's bytes (never from its extension).

    Returns one of torch-zip, torch-legacy, safetensors, torchscript, torch-export, npz, or ``*-sharded`` for
    the JSON index of a sharded checkpoint.

    Raises:
        error: not a regular file, a zip whose declared sizes are refused (check_zip_sizes), a plain pickle, or
            bytes that match no supported format.
    """
    what = _what(error)
    size = check_regular(path, error, what=what)
    with path.open("rb") as fh:
        head = fh.read(32)
    if head.startswith(_ZIP_MAGIC):
        return _zip_format(path, error) or "torch-zip"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len <= size - 8:
            return "safetensors"
    if _is_legacy_torch(head):
        return "torch-legacy"
    if head[:1] == bytes([_PICKLE_PROTO]):
        raise _plain_pickle(path, error)
    if head.startswith(_NPY_MAGIC):
        raise error(
            f"{path}: a single NumPy array (np.save), not a file of named tensors",
            hint="save inputs and targets together: np.savez(path, inputs=x, targets=y)"
            if what == "data file"
            else "save the weights by name: np.savez(path, **state_dict) or torch.save(model.state_dict(), path)",
        )
    if head.lstrip()[:1] == b"{":
        if size > MAX_INDEX_BYTES:  # read_json refuses it by its size, before parsing
            read_json(path, error, what="JSON index", limit=MAX_INDEX_BYTES)
        # JSON that is no index (or no JSON) is refused below like any other file
        with contextlib.suppress(InterpscanError):
            index = read_json(path, error, what="JSON index", limit=MAX_INDEX_BYTES)
            if isinstance(index, dict) and isinstance(index.get("weight_map"), dict):
                shards = {str(v) for v in index["weight_map"].values()}
                return "safetensors-sharded" if all(s.endswith(".safetensors") for s in shards) else "torch-sharded"
    found = "an empty file" if size == 0 else f"a file starting with bytes {head[:8].hex(' ')}"
    if what == "data file":
        raise error(
            f"{path}: not a data file interpscan can read ({found})",
            hint="expected a .pt/.pth (torch.save), .npz or .safetensors file",
        )
    raise error(
        f"{path}: not a checkpoint interpscan can read ({found})",
        hint="expected a PyTorch file (torch.save, torch.jit.save, torch.export.save), a .safetensors file "
        "or a sharded checkpoint's index, or an .npz archive",
    )


def _plain_pickle(path: Path, error: Error) -> InterpscanError:
    """A pickle that torch.save did not write (pickle.dump): interpscan has no safe way to read one."""
    if _what(error) == "data file":
        hint = (
            "interpscan does not unpickle data files; save the tensors with torch.save({'inputs': x, 'targets': y}, "
            "path) or the arrays with np.savez(path, inputs=x, targets=y)"
        )
    else:
        hint = "interpscan does not unpickle it; save the weights with torch.save(model.state_dict(), path)"
    return error(
        f"{path}: a Python pickle (pickle.dump), not torch.save output; unpickling it could run any code it names",
        hint=hint,
    )


def _refusal(path: Path, exc: Exception, error: Error) -> InterpscanError:
    found = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(exc))))
    needs = f" (it needs {', '.join(found)})" if found else ""
    if issubclass(error, DataError):
        hint = "a data file must hold plain tensors: save it with torch.save({'inputs': x, 'targets': y}, path)"
    else:
        hint = (
            "loading it would run code the file names, which can do anything your account can; if you trust "
            f"the file, pass {opt('unsafe_pickle', True)}, or save model.state_dict() instead"
        )
    return error(f"{path}: refused to unpickle objects other than tensors and plain containers{needs}", hint=hint)


def _torch_text(exc: BaseException) -> str:
    """The useful part of torch's message: its first line, without C++ locations and boilerplate."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    first = text.splitlines()[0]
    first = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", first)
    for tail in (" This is an internal miniz error", "  (Could this error message be improved?"):
        first = first.split(tail, 1)[0]
    if first.startswith("storage has wrong byte size"):  # legacy files; torch leaves its format string unfilled
        return "a tensor's declared size does not match the data the file holds"
    return first.strip()


# Objects a training checkpoint carries beside its tensors that are safe to rebuild under weights_only: timm's
# train.py saves its argparse.Namespace under "args" (timm loads these files with weights_only and it allowed).
SAFE_GLOBALS = (argparse.Namespace,)


def read_torch(path: Path, *, unsafe_pickle: bool = False, error: Error = CheckpointError, mmap: bool = False) -> Any:
    """``torch.load`` of a file on the CPU, with ``weights_only`` unless ``unsafe_pickle``.

    A zip's declared sizes are checked first (check_zip_sizes). Memory-mapped only with ``mmap`` (data files too
    large for memory, data/mapped.py, which guards against the file changing): torch maps only a path, its offsets
    are meaningless for a re-zipped (deflated) file, and what a caller keeps stays backed by the file, so a
    training run that rewrites it mid-scan would end the process with SIGBUS. Checkpoints are never mapped.

    Raises:
        error: not a regular file, refused sizes, not readable by torch, or (without ``unsafe_pickle``) a file that
            names Python objects.
    """
    check_regular(path, error, what=_what(error))
    with path.open("rb") as fh:
        head = fh.read(32)
    if head.startswith(_ZIP_MAGIC):
        _zip_entries(path, error)
    elif head[:1] == bytes([_PICKLE_PROTO]) and not _is_legacy_torch(head):
        raise _plain_pickle(path, error)
    try:
        # A file object, not the path: torch.load treats any path ending in .safetensors as one (torch maps a path
        # only; data/mapped.py does not map a file so named).
        opened = contextlib.nullcontext(str(path)) if mmap else path.open("rb")
        with opened as fh, warnings.catch_warnings(), torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            # e.g. "Detected pickle protocol 4": noise for the user; a real problem raises below
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(fh, map_location="cpu", weights_only=not unsafe_pickle, mmap=mmap)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        text = _torch_text(exc)
        if not unsafe_pickle and ("GLOBAL " in str(exc) or "Unsupported global" in str(exc)):
            raise _refusal(path, exc, error) from exc
        if not unsafe_pickle and "Unsupported operand 149" in str(exc) and _is_legacy_torch(head):
            # 149 is FRAME, which pickle protocol 4 and later write and torch's safe unpickler does not read
            raise error(
                f"{path}: a legacy (pre-1.6 format) torch file written with pickle protocol 4 or later, which "
                "torch's safe loader cannot read",
                hint="re-save it with torch.save(obj, path) (the default zip format)"
                + ("" if issubclass(error, DataError) else f", or pass {opt('unsafe_pickle', True)} if you trust it"),
            ) from exc
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
                f"model.state_dict() and pass {opt('model')}",
            ) from exc
        tried = re.search(r"can't allocate memory: you tried to allocate (\d+) bytes", str(exc))
        if tried:
            # a legacy file's storage sizes are declared in its pickle, and torch allocates them before reading
            raise error(
                f"{path}: declares a tensor of {describe_size(int(tried.group(1)))}, more than this machine can "
                f"allocate, in a file of {describe_size(path.stat().st_size)}",
                hint="the file is corrupt or crafted; re-download or re-save it",
            ) from exc
        raise error(f"{path}: unreadable PyTorch file ({text})") from exc


def read_index(path: Path, *, error: Error = CheckpointError) -> tuple[dict[str, str], dict[str, Any]]:
    """A sharded checkpoint's index (``*.index.json``): its weight_map (tensor name -> shard file name, each a
    plain name beside the index) and its metadata.

    Raises:
        error: an unreadable index (files.read_json), no weight_map of names, or a shard name that leads out of
            the folder (``../``, an absolute path), which a reader (transformers included) would open as given.
    """
    index = read_json(path, error, what="sharded checkpoint's index", limit=MAX_INDEX_BYTES)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise error(
            f"{path}: unreadable index (no weight_map of tensor names to file names)",
            hint="re-save the checkpoint (save_pretrained writes the index beside its shards)",
        )
    outside = sorted(n for n in set(weight_map.values()) if Path(n).name != n or n in ("", ".", ".."))
    if outside:
        raise error(
            f"{path}: the index names shards outside its folder: {', '.join(map(repr, outside[:3]))}",
            hint="a sharded checkpoint's index names plain file names beside it",
        )
    metadata = index.get("metadata")
    return weight_map, metadata if isinstance(metadata, dict) else {}


# What a safetensors header may take beyond the bound below: its string metadata (notes a training tool writes) and
# the entries of a model whose tensors are smaller than their descriptions (tiny test models).
HEADER_BASE = 1 << 20
# An entry ({"dtype": "F32", "shape": [...], "data_offsets": [a, b]} under its name) takes about 100 bytes, and
# every tensor that holds data takes at least a byte of the file, most far more; real headers are 1e-5 of their
# data. The safetensors library takes up to 28 times a header's size to parse it (a 100 MB header, its own cap,
# took 2.8 GiB), so a header may be at most a 32nd of the data beyond HEADER_BASE: parsing it then costs about what
# the tensors themselves take.
HEADER_DATA_RATIO = 32


def safetensors_header(path: Path, *, error: Error = CheckpointError) -> dict[str, Any]:
    """The JSON header of a .safetensors file, its size bounded by the data it describes before it is read or
    handed to the safetensors library (HEADER_BASE + data / HEADER_DATA_RATIO).

    Raises:
        error: not a regular file, a header larger than the file or than the bound, or no JSON object.
    """
    size = check_regular(path, error, what=_what(error))
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise error(f"{path}: unreadable safetensors file (it ends within its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise error(
                f"{path}: unreadable safetensors file (its header declares {n:,} bytes in a file of {size:,})",
                hint="the file is truncated or not a safetensors file; re-download or re-save it",
            )
        data = size - 8 - n
        limit = HEADER_BASE + data // HEADER_DATA_RATIO
        if n > limit:
            raise error(
                f"{path}: a safetensors header of {describe_size(n)} describing {describe_size(data)} of tensors; "
                f"an honest header takes far less than its tensors (interpscan reads at most "
                f"{describe_size(limit)}), so it is refused before reading",
                hint="the file is corrupt or crafted; re-download or re-save it",
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{path}: unreadable safetensors file (its header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        kind = type(header).__name__
        raise error(f"{path}: unreadable safetensors file (its header is a JSON {kind}, not an object)")
    return header


def read_safetensors(path: Path, *, error: Error = CheckpointError) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a .safetensors file and its string metadata.

    The header is bounded (safetensors_header) before the library parses it; the library then checks every
    tensor's byte range against the file and against the others (no overlap), so the tensors never take more
    than the file holds.

    Raises:
        error: not a regular file, or the header or data are malformed.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    header = safetensors_header(path, error=error)
    try:
        with utf8_name(path, error) as name:
            tensors = load_file(name, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"{path}: unreadable safetensors file ({exc})") from exc
    meta = header.get("__metadata__")
    return dict(tensors), {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


# ------------------------------------------------------------------------------------------- tensor kinds

# Float types torch stores but cannot compute with (no isfinite, no equal): read as float32, which holds every
# one of their values exactly.
UPCAST_DTYPES = frozenset(
    getattr(torch, name)
    for name in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu")
    if hasattr(torch, name)
)
_QUANTIZED = frozenset({torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4})
_DTYPES = frozenset(
    {torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex128, torch.complex64, torch.bool}
    | {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32, torch.uint64}
    | UPCAST_DTYPES
)


def tensor_kind_problem(t: torch.Tensor) -> tuple[str, str] | None:
    """Why ``t`` is no tensor interpscan can interpolate — (what it is, what to do) — or None when it is one:
    dense (strided), holding data on a real device, of a dtype torch computes with."""
    dtype = str(t.dtype).removeprefix("torch.")
    if t.is_nested:
        return "a nested tensor", "save its pieces as separate dense tensors"
    if t.layout != torch.strided:
        layout = str(t.layout).removeprefix("torch.")
        return f"a {layout} tensor", "save t.to_dense() (interpscan interpolates dense tensors)"
    if t.device.type == "meta":
        return "a meta tensor (shape only, no data)", "save the weights once they hold values"
    if t.dtype in _QUANTIZED:
        return f"a quantized tensor ({dtype})", "save t.dequantize(), or the float weights before quantization"
    if t.dtype not in _DTYPES:
        return f"of dtype {dtype}, which torch cannot compute with", "save it as float32 (or bfloat16)"
    return None


# ------------------------------------------------------------------------------------------------- arrays


def array_problem(dtype: np.dtype[Any]) -> str | None:
    """Why an array of ``dtype`` is no tensor interpscan can use (in words), or None when it is."""
    if dtype.hasobject:
        return "Python objects (dtype object), which only pickle can read"
    if dtype.fields is not None:
        return f"records (structured dtype with fields {', '.join(dtype.fields)})"
    described = {"U": "strings", "S": "bytes", "V": "raw bytes", "M": "dates", "m": "time spans"}
    if dtype.kind in described:
        return f"{described[dtype.kind]} (dtype {dtype.str})"
    if (dtype.kind == "f" and dtype.itemsize > 8) or (dtype.kind == "c" and dtype.itemsize > 16):
        return f"extended precision (dtype {dtype.name}), which torch has no type for"
    return None


def tensor_from_array(array: np.ndarray[Any, Any], where: str, error: Error = DataError) -> torch.Tensor:
    """A NumPy array as a tensor of the same values: big-endian data put in native order, Fortran-ordered or
    strided arrays made contiguous, read-only ones copied (torch could write through them).

    Args:
        where: the array as the user knows it ("x.npz: entry 'inputs'"), first in messages.

    Raises:
        error: an array of strings, dates, records, objects or a precision torch lacks (see array_problem).
    """
    problem = array_problem(array.dtype)
    if problem is not None:
        raise error(
            f"{where}: an array of {problem}, not numbers interpscan can use",
            hint="save numeric arrays (bool, integers or floats), e.g. x.astype(np.float32)",
        )
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))  # e.g. '>f4': the same numbers in this machine's order
    if not (array.flags.c_contiguous and array.flags.writeable):
        array = array.copy(order="C")  # not np.ascontiguousarray, which turns a 0-d array into a 1-d one
    return torch.from_numpy(array)


def _npy_header(fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, Fortran order, dtype) from a .npy header, reading nothing past it."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:  # 3.0 only adds utf-8 field names, which records interpscan refuses anyway
        raise ValueError(f".npy format version {version[0]}.{version[1]}")
    return tuple(shape), bool(fortran), dtype


@dataclass(frozen=True)
class NpyEntry:
    """One array of an .npz archive, from its header: the zip entry, its shape, order and dtype, and the bytes
    its .npy header takes before the data."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype[Any]
    header: int


def _check_npz_entries(path: Path, zf: zipfile.ZipFile, error: Error) -> dict[str, NpyEntry]:
    """Each entry must be a .npy array of numbers whose header declares exactly the bytes the entry holds:
    numpy allocates the declared shape before it reads the data. The entries by name."""
    found = {}
    for e in zf.infolist():
        key = e.filename.removesuffix(".npy")
        with zf.open(e) as fh:
            try:
                if not e.filename.endswith(".npy"):
                    raise ValueError("not named .npy")  # np.load would hand back its raw bytes
                shape, fortran, dtype = _npy_header(fh)
            except ValueError as exc:
                detail = " ".join(str(exc).split())  # numpy quotes the whole padded header
                raise error(
                    f"{path}: entry {e.filename} is not a readable .npy array ({detail[:160]})",
                    hint="the archive is damaged, or not written by np.savez",
                ) from exc
            header = fh.tell()
        problem = array_problem(dtype)
        if problem is not None:
            raise error(
                f"{path}: entry {key!r} is an array of {problem}, not numbers interpscan can use",
                hint="save numeric arrays (bool, integers or floats), e.g. x.astype(np.float32)",
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if header + nbytes != e.file_size:
            raise error(
                f"{path}: entry {key!r} declares shape {list(shape)} of {dtype.name} ({describe_size(nbytes)}) but "
                f"holds {describe_size(max(e.file_size - header, 0))} of data",
                hint="the file is truncated, corrupt or crafted; re-save it with np.savez",
            )
        found[key] = NpyEntry(e, shape, fortran, dtype, header)
    return found


@contextlib.contextmanager
def _checked_npz(path: Path, error: Error) -> Iterator[tuple[IO[bytes], dict[str, NpyEntry]]]:
    """An .npz archive opened (our own handle: np.load leaks its one when the zip is corrupt) once its sizes
    (check_zip_sizes) and every entry's header (_check_npz_entries) passed; a file numpy or zipfile cannot read
    becomes ``error``."""
    check_regular(path, error, what=_what(error))
    try:
        with path.open("rb") as fh:
            if fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                raise error(f"{path}: a single array, not an .npz archive", hint="save with np.savez(path, x=x, y=y)")
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                check_zip_sizes(path, zf.infolist(), error)
                entries = _check_npz_entries(path, zf, error)
            fh.seek(0)
            yield fh, entries
    except InterpscanError:
        raise
    except (OSError, ValueError, EOFError, struct.error, zipfile.BadZipFile, zlib.error) as exc:
        raise error(f"{path}: unreadable .npz archive ({exc})") from exc


def read_npz(path: Path, *, error: Error = CheckpointError) -> dict[str, torch.Tensor]:
    """The arrays of an .npz archive as tensors, never unpickling; every entry's declared shape checked against
    its size, and all of them against the file's (check_zip_sizes), before numpy allocates.

    Raises:
        error: not a regular file, not an .npz archive (a single .npy array included), a header that does not
            match its data, arrays of non-numbers (see array_problem), or unreadable.
    """
    with _checked_npz(path, error) as (fh, _):
        npz = np.load(fh, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise error(f"{path}: not an .npz archive", hint="save with np.savez(path, x=x, y=y)")
        with npz:
            return {k: tensor_from_array(npz[k], f"{path}: entry {k!r}", error) for k in npz.files}


def npz_layout(path: Path, *, error: Error = DataError) -> dict[str, tuple[int, np.dtype[Any], tuple[int, ...]]] | str:
    """Where each array of an uncompressed .npz archive (np.savez) lies in the file, for mapping it: name ->
    (byte offset of its data, dtype, shape), every entry checked as read_npz checks it; or why the archive cannot
    be mapped (compressed entries, a big-endian or Fortran-ordered array).

    Raises:
        error: see read_npz.
    """
    with _checked_npz(path, error) as (fh, entries):
        found = {}
        for key, e in entries.items():
            if e.info.compress_type != zipfile.ZIP_STORED:
                return "its entries are compressed (np.savez_compressed), which cannot be mapped"
            if e.fortran and len(e.shape) > 1:
                return f"entry {key!r} is stored in Fortran order, which is read only into memory"
            if not e.dtype.isnative:
                return f"entry {key!r} is stored {e.dtype.str[0]}-endian, which is read only into memory"
            fh.seek(e.info.header_offset)
            local = fh.read(30)  # the local header: its name and extra field lengths may differ from the directory's
            names, extra = struct.unpack("<HH", local[26:30])
            found[key] = (e.info.header_offset + 30 + names + extra + e.header, e.dtype, e.shape)
        return found


def read_tensor_dict(path: Path, *, error: Error = DataError) -> dict[str, Any]:
    """The entries of a data file of named tensors (torch.save of a dict, .npz, .safetensors), by content.

    Raises:
        error: not a regular file, the bytes are no such file, the file is unreadable or declares more than it may
            (see detect_format), or a torch file holds something else.
    """
    if path.suffix == ".npz":
        return read_npz(path, error=error)
    fmt = detect_format(path, error=error)
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

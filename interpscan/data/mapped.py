"""Tensor files too large for memory, memory-mapped and streamed: each batch's rows are copied, in the dtype the
file stores, out of a map opened for that batch and closed after it (so the pages it touched leave the process
with it, and peak memory follows the batch size, not the file), then converted and normalized on the device
exactly as the resident path converts a whole split (source.prepare).

torch.save's zip format is mapped by torch (``torch.load(mmap=True)``, with ``weights_only``), safetensors files
and uncompressed .npz archives at the byte offsets their headers give. What cannot be mapped (a legacy torch file,
a re-zipped or compressed archive, big-endian or Fortran-ordered arrays) is read whole, as before, with a warning
that says how to re-save it.

A mapped file that shrinks while mapped ends the process with SIGBUS at the next read past its new end.
``FileStamp`` checks the file before each batch is mapped and after it is copied, so a file truncated, rewritten
or replaced between two batches stops the scan with one error (a write in place is seen by the change time, which
no one can set back); a change during one batch's copy (milliseconds) is the residual risk (docs/scaling.md,
"Tensor files, memory-mapped"). A resumed scan compares the stamp with a sample of the file's bytes, hashed when it
is opened (about 3 ms, whatever the file's size).
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import DataError
from ..files import check_regular, describe_size, utf8_name
from ..tensorfile import detect_format, npz_layout, read_torch, safetensors_header
from ..values import Normalization
from .batches import Batch, Inputs, to_device
from .source import DataSource, Log, masked_labels, prepare, resident_bytes, stream_reason

Key = tuple[str, ...]  # an entry's place in the file: ("x_train",), or ("train", "inputs") for nested dicts
Rows = slice | torch.Tensor  # a range of rows, or sorted row indices (a --samples subset)

# safetensors' dtype names (its header) as torch dtypes
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "C64": torch.complex64,
}


SAMPLED_PAGES = 256  # pages spread evenly over a mapped file, hashed when it is opened (FileStamp.sample)
PAGE = 4096
EDGE = 64 * 1024  # bytes at each end hashed whole: the headers that place every tensor


def sample_digest(path: Path, size: int) -> str:
    """A sha256 of ``path``'s first and last EDGE bytes and of SAMPLED_PAGES pages spread evenly between: about
    1.1 MiB read, whatever the file's size. A rewrite that keeps the size and the times but changes the data is
    seen unless it misses every sampled page (one changing 1% of the pages is seen with probability 0.92)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        if size <= 2 * EDGE + SAMPLED_PAGES * PAGE:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
            return h.hexdigest()
        offsets = [0, size - EDGE]
        step = (size - 2 * EDGE - PAGE) / (SAMPLED_PAGES - 1)
        offsets += [EDGE + int(i * step) for i in range(SAMPLED_PAGES)]
        for offset in offsets:
            fh.seek(offset)
            h.update(fh.read(EDGE if offset in (0, size - EDGE) else PAGE))
    return h.hexdigest()


@dataclass(frozen=True)
class FileStamp:
    """What identifies a file's contents: its device, inode, size, modification and change times (a write in
    place changes the change time even where the modification time is set back), and a sample of its bytes."""

    path: Path
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    sample: str  # sample_digest, taken once when the file is opened

    @staticmethod
    def _stat(path: Path) -> tuple[int, int, int, int, int]:
        st = os.stat(path)
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        stat = cls._stat(path)
        return cls(path, *stat, sample_digest(path, stat[2]))

    def check(self) -> None:
        """Raises DataError when the file is no longer the one stamped (truncated, rewritten, replaced, gone):
        its metadata only, a stat per call; the sample, read once, speaks for the bytes in a resume's
        fingerprint (``str``)."""
        try:
            now: tuple[int, ...] | None = self._stat(self.path)
        except OSError:
            now = None
        if now != (self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns):
            raise DataError(
                f"{self.path}: the data file changed during the scan (it is not the file of "
                f"{describe_size(self.size)} that was opened); stopped before reading from it again",
                hint="keep a data file unchanged while interpscan reads it: write a new version under another name "
                "(or copy it first), then rerun",
            )

    def __str__(self) -> str:
        return (
            f"{self.path} ({self.size} bytes, modified {self.mtime_ns} ns, changed {self.ctime_ns} ns, "
            f"sampled sha256 {self.sample})"
        )


def _rows_of(t: torch.Tensor | np.ndarray[Any, Any], rows: Rows) -> Any:
    """The rows of a mapped tensor or array, copied out of the map."""
    if isinstance(rows, slice):
        return t[rows].clone() if isinstance(t, torch.Tensor) else t[rows].copy()
    return t[rows] if isinstance(t, torch.Tensor) else t[rows.numpy()]  # indexing with a list of rows copies


class Layout(Protocol):
    """How a format's tensors are found in its file: ``read`` maps the file, copies rows out, and closes it."""

    def read(self, keys: Sequence[Key], rows: Rows) -> list[torch.Tensor]: ...


@dataclass(frozen=True)
class TorchLayout:
    """A torch.save zip file: torch maps it (``mmap=True``), the unpickler (``weights_only``) places tensors."""

    path: Path

    def load(self) -> Any:
        return read_torch(self.path, error=DataError, mmap=True)

    def read(self, keys: Sequence[Key], rows: Rows) -> list[torch.Tensor]:
        entries = self.load()
        return [_rows_of(_get(entries, key), rows) for key in keys]


@dataclass(frozen=True)
class Stored:
    """A C-ordered array stored at ``offset`` in a file: (offset in bytes, torch dtype, shape)."""

    offset: int
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def stand_in(self) -> torch.Tensor:
        return _stand_in(self.dtype, self.shape)


@dataclass(frozen=True)
class ByteLayout:
    """safetensors and uncompressed .npz: arrays at known byte offsets, read as bytes (no alignment needed: an
    .npz entry's data starts wherever its zip header ends) and viewed as their dtype once copied."""

    path: Path
    arrays: Mapping[str, Stored]

    def read(self, keys: Sequence[Key], rows: Rows) -> list[torch.Tensor]:
        with self.path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            out = []
            for key in keys:
                a = self.arrays[key[0]]
                data = np.frombuffer(mapped, np.uint8, a.shape[0] * a.row_bytes, a.offset)
                raw = torch.from_numpy(_rows_of(data.reshape(a.shape[0], a.row_bytes), rows))
                del data  # the map closes only when no array views it
                # (numpy's strides of an empty copy are not a view's)
                raw = raw if raw.numel() else torch.empty(raw.shape, dtype=torch.uint8)
                out.append(raw.view(a.dtype).reshape(-1, *a.shape[1:]))
            return out


def _get(entries: Any, key: Key) -> torch.Tensor:
    for part in key:
        entries = entries[part]
    assert isinstance(entries, torch.Tensor)
    return entries  # type: ignore[no-any-return]


def _stand_in(dtype: torch.dtype, shape: Sequence[int]) -> torch.Tensor:
    """A tensor of ``dtype`` and ``shape`` that holds one element: what the split finder and its checks look at
    (dtype, shape, layout), without the data, which stays in the file."""
    return torch.empty((), dtype=dtype).expand(*shape)


def _stand_ins(entries: Mapping[str, Any]) -> dict[str, Any]:
    """The entries with each tensor replaced by a stand-in (the map is closed after opening)."""
    return {
        k: _stand_in(v.dtype, v.shape)
        if isinstance(v, torch.Tensor) and v.layout == torch.strided and not v.is_nested
        else _stand_ins(v)
        if isinstance(v, Mapping)
        else v
        for k, v in entries.items()
    }


def _keys(entries: Mapping[str, Any], prefix: Key = ()) -> dict[int, Key]:
    """Each tensor's place in the file, by the tensor's identity."""
    found: dict[int, Key] = {}
    for k, v in entries.items():
        if isinstance(v, torch.Tensor):
            found[id(v)] = (*prefix, str(k))
        elif isinstance(v, Mapping):
            found.update(_keys(v, (*prefix, str(k))))
    return found


@dataclass(frozen=True)
class MappedFile:
    """A tensor file opened for mapping: its entries as stand-ins (dtype and shape, no data), and its layout."""

    path: Path
    stamp: FileStamp
    layout: Layout
    stand_ins: Mapping[str, Any]

    def split(self, inputs: Inputs, targets: torch.Tensor) -> MappedSplit:
        """The split whose inputs and targets are these stand-ins (as the split finder returned them)."""
        where = _keys(self.stand_ins)
        keyed = {k: where[id(t)] for k, t in inputs.items()} if isinstance(inputs, Mapping) else where[id(inputs)]
        need = sum(resident_bytes(t) for t in (inputs.values() if isinstance(inputs, Mapping) else [inputs]))
        return MappedSplit(self, keyed, where[id(targets)], int(targets.shape[0]), need)


@dataclass(frozen=True)
class MappedSplit:
    """One split of a mapped file: where its inputs (one entry, or named ones) and targets are, its rows, and
    the bytes its resident copy would take."""

    file: MappedFile
    inputs: Key | Mapping[str, Key]
    targets: Key
    rows: int
    need: int

    def read(self, rows: Rows) -> tuple[Inputs, torch.Tensor]:
        """These rows of inputs and targets, copied out of the map in the stored dtypes, token labels masked
        (source.masked_labels); the file checked unchanged before and after.

        Raises:
            DataError: the file changed since it was opened.
        """
        named = dict(self.inputs) if isinstance(self.inputs, Mapping) else {"": self.inputs}
        self.file.stamp.check()
        *xs, y = self.file.layout.read([*named.values(), self.targets], rows)
        self.file.stamp.check()  # what was copied came from the file as it was opened
        x: Inputs = dict(zip(named, xs, strict=True)) if isinstance(self.inputs, Mapping) else xs[0]
        return x, masked_labels(x, y)


# ------------------------------------------------------------------------------------------------- opening


def _data_bytes(path: Path) -> int | None:
    """Bytes of tensor data a file holds: a zip's entries uncompressed, else the file's size; None when the file
    cannot tell (a damaged zip: the resident path names the problem)."""
    try:
        with path.open("rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                return os.fstat(fh.fileno()).st_size
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                return sum(e.file_size for e in zf.infolist())
    except (OSError, ValueError, zipfile.BadZipFile):
        return None


# Why a file cannot be mapped, and how to re-save it so that it can.
Unmappable = tuple[str, str]
_TORCH_SAVE = "re-save it with torch.save(tensors, path)"


def _torch_layout(path: Path) -> tuple[Layout, Mapping[str, Any]] | Unmappable | None:
    with zipfile.ZipFile(path) as zf:
        if any(e.compress_type != zipfile.ZIP_STORED for e in zf.infolist()):
            return "its zip entries are compressed (the file was re-zipped), which torch cannot map", _TORCH_SAVE
    if path.name.endswith(".safetensors"):  # torch.load(path) would read it as a safetensors file
        return "a torch.save file named .safetensors cannot be mapped by its path", "rename it to .pt"
    layout = TorchLayout(path)
    entries = layout.load()
    if not isinstance(entries, Mapping):
        return None  # read as before, which names the problem
    return layout, _stand_ins(entries)


def _safetensors_layout(path: Path) -> tuple[Layout, Mapping[str, Any]] | Unmappable:
    from safetensors import SafetensorError, safe_open

    header = safetensors_header(path, error=DataError)  # bounded by its data before the library parses it
    try:
        # the library checks every byte range against the file
        with utf8_name(path, DataError) as name, safe_open(name, framework="pt"):
            pass
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable safetensors file ({exc})") from exc
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            return f"entry {name!r} is of dtype {entry['dtype']}", "save its tensors as floats or integers"
        arrays[name] = Stored(8 + n + int(entry["data_offsets"][0]), dtype, tuple(int(d) for d in entry["shape"]))
    return ByteLayout(path, arrays), {k: a.stand_in() for k, a in arrays.items()}


def _npz_layout(path: Path) -> tuple[Layout, Mapping[str, Any]] | Unmappable:
    found = npz_layout(path, error=DataError)
    if isinstance(found, str):
        return found, "re-save it with np.savez (not np.savez_compressed), arrays in native byte order and C order"
    arrays = {}
    for name, (offset, dtype, shape) in found.items():
        arrays[name] = Stored(offset, torch.from_numpy(np.empty(0, dtype)).dtype, shape)
    return ByteLayout(path, arrays), {k: a.stand_in() for k, a in arrays.items()}


def map_tensor_file(path: Path, log: Log | None = None) -> MappedFile | None:
    """``path`` opened for mapping when a resident copy of its tensors could exceed the resident limit
    (source.stream_reason, taking every input as float32 from one byte); None when it certainly fits (the
    resident path reads it, as always) or when its format cannot be mapped (then ``log`` is told why, and how to
    re-save it).

    Raises:
        DataError: the file is unreadable (see tensorfile.detect_format).
    """
    check_regular(path, DataError, what="data file")  # before opening it: a FIFO would block
    data = _data_bytes(path)
    if data is None or stream_reason(4 * data) is None:
        return None
    fmt = "npz" if path.suffix == ".npz" else detect_format(path, error=DataError)
    stamp = FileStamp.of(path)
    found: tuple[Layout, Mapping[str, Any]] | Unmappable | None
    if fmt == "torch-zip":
        found = _torch_layout(path)
    elif fmt == "safetensors":
        found = _safetensors_layout(path)
    elif fmt == "npz":
        found = _npz_layout(path)
    elif fmt == "torch-legacy":
        found = "a legacy (pre-1.6) torch file cannot be mapped", _TORCH_SAVE + " (the default zip format)"
    else:
        found = None  # no file of tensors: the resident path says what it is
    if found is None:
        return None
    if isinstance(found[0], str):
        if log is not None:
            log(
                f"warning: {path}: {found[0]}, so its {describe_size(data)} of tensors are read whole into memory; "
                f"to stream it, {found[1]}"
            )
        return None
    return MappedFile(path, stamp, *found)


# ----------------------------------------------------------------------------------------------- streaming


class TensorStream:
    """One split of a mapped tensor file, streamed: a ``Batches`` whose batches are copied out of the map one at
    a time (``select``: only those), moved to the device in the stored dtype and converted there (``convert``:
    source.prepare). ``indices``: the --samples subset's, for run.json."""

    def __init__(
        self,
        name: str,
        split: MappedSplit,
        convert: Callable[[Inputs, torch.Tensor], tuple[Inputs, torch.Tensor]],
        indices: tuple[int, ...] | None = None,
    ) -> None:
        self.name, self.split, self.convert, self.indices = name, split, convert, indices

    def __len__(self) -> int:
        return self.split.rows if self.indices is None else len(self.indices)

    def __repr__(self) -> str:
        return f"TensorStream({self.name!r}, {len(self)} examples of {self.split.file.path})"

    @property
    def fingerprint(self) -> str:
        """What a resumed scan checks: the file as it was opened, its metadata and a sample of its bytes (the
        whole file is not read ahead)."""
        return str(self.split.file.stamp)

    def num_batches(self, batch_size: int) -> int | None:
        return math.ceil(len(self) / batch_size)

    def check(self) -> None:
        """Every error the resident path raises on this split's inputs and targets (dtypes, shapes, the
        normalization), from none of its rows.

        Raises:
            DataError: see source.load_split.
        """
        self.convert(*self.split.read(slice(0, 0)))

    def batches(self, batch_size: int, device: torch.device, select: range | None = None) -> Iterator[Batch]:
        n = len(self)
        chosen = torch.tensor(self.indices, dtype=torch.int64) if self.indices is not None else None
        for b in select if select is not None else range(math.ceil(n / batch_size)):
            part = slice(b * batch_size, min((b + 1) * batch_size, n))
            x, y = self.split.read(part if chosen is None else chosen[part])
            if device.type == "cuda":
                x = {k: v.pin_memory() for k, v in x.items()} if isinstance(x, Mapping) else x.pin_memory()
            yield self.convert(to_device(x, device), y.to(device, non_blocking=True))


def stream_split(
    source: DataSource,
    split: str,
    *,
    samples: int | None,
    seed: int,
    normalization: Normalization | None,
    class_targets: bool,
) -> tuple[TensorStream, str] | None:
    """A split of a mapped tensor file as a TensorStream (its --samples subset drawn as load_split draws it),
    and why it streams; None when the source is not mapped or the split's resident copy fits
    (source.stream_reason).

    Raises:
        DataError: what load_split would raise on the split (checked on none of its rows).
    """
    from .source import subset_indices

    mapped = source.mapped.get(split) if source.mapped is not None else None
    if mapped is None:
        return None
    reason = stream_reason(mapped.need)
    if reason is None:
        return None
    idx = subset_indices(mapped.rows, samples, seed)
    indices = None if idx is None else tuple(int(i) for i in idx)

    def convert(x: Inputs, y: torch.Tensor) -> tuple[Inputs, torch.Tensor]:
        return prepare(source.name, split, x, y, normalization, class_targets)

    stream = TensorStream(split, mapped, convert, indices)
    stream.check()
    return stream, reason

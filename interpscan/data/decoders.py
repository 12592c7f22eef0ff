"""Decoders of the standard datasets' original files: LeCun's IDX format (MNIST, Fashion-MNIST) and the CIFAR
python batches (pickles, read with numpy's array constructors alone allowed)."""

from __future__ import annotations

import codecs
import gzip
import io
import math
import pickle
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..files import check_expansion, check_regular

_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _idx_bytes(path: Path) -> bytes:
    """An IDX file's bytes, gunzipped when they are gzip, decompressing no more than its header declares and
    the file's size allows (files.check_expansion)."""
    on_disk = check_regular(path, DataError, what="dataset file")
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
            head = gz.read(4)
            ndim = head[3] if len(head) == 4 else 0
            head += gz.read(4 * ndim)
            declared = len(head)
            if len(head) == 4 + 4 * ndim and head[2] in _IDX_DTYPES:
                dims = struct.unpack(f">{ndim}I", head[4:])
                declared += math.prod(dims) * _IDX_DTYPES[head[2]].itemsize
            check_expansion(str(path), declared, on_disk, DataError)
            return head + gz.read(declared - len(head) + 1)  # one byte more shows data past what is declared
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: damaged deflate stream
        raise DataError(f"{path}: corrupt gzip data ({exc})", hint="delete the file and fetch it again") from exc


def read_idx(path: Path) -> np.ndarray[Any, Any]:
    """Read an IDX file (LeCun's MNIST format), gzip-compressed or not, into a native-endian array.

    Raises:
        DataError: not a regular file, the bytes are not a well-formed IDX file, or a gzipped one declares more
            than the decompression bound allows.
    """
    raw = _idx_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = math.prod(dims)  # Python ints: four dims of 2**32 - 1 do not wrap
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(
            f"{path}: IDX header promises {count * dtype.itemsize} bytes of data, file has {len(raw) - header}",
            hint="the file is truncated or corrupt; fetch it again",
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


# The only globals a CIFAR batch needs: numpy arrays (pickled by Python 2's numpy 1.x, or by numpy 2 in
# protocols 2 to 5). Anything else in a pickle is refused, so a batch file cannot run code.
_ARRAY = np.zeros(1, dtype=np.uint8)
_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _ARRAY.__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): _ARRAY.__reduce__()[0],
    ("numpy.core.numeric", "_frombuffer"): _ARRAY.__reduce_ex__(5)[0],
    ("numpy._core.numeric", "_frombuffer"): _ARRAY.__reduce_ex__(5)[0],
    ("numpy.core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
    ("numpy._core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
    ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes in protocol 2
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


CIFAR_PIXELS = 3 * 32 * 32  # bytes per image row: 1024 red, then 1024 green, then 1024 blue, each row-major


def read_cifar_batch(raw: bytes, name: str, label_key: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Decode one batch of the CIFAR python archives: ``(images (N, 3, 32, 32) uint8, labels (N,) int64)``.

    The batches are Python 2 pickles of a dict holding ``data`` (N, 3072) uint8 and the labels under
    ``label_key`` (``labels`` for CIFAR-10, ``fine_labels`` for CIFAR-100). They are unpickled with only numpy's
    array constructors allowed.

    Raises:
        DataError: not such a pickle, or one without the expected entries.
    """
    try:
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # a damaged pickle raises anything from EOFError to UnicodeDecodeError
        raise DataError(
            f"{name}: not a CIFAR batch ({type(exc).__name__}: {exc})", hint="delete it and fetch the dataset again"
        ) from exc
    if not isinstance(obj, Mapping):
        raise DataError(f"{name}: not a CIFAR batch (a pickled {type(obj).__name__}, expected a dict)")
    entries = {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
    data, labels = entries.get("data"), entries.get(label_key)
    if data is None or labels is None:
        raise DataError(f"{name}: not a CIFAR batch (no 'data' and {label_key!r} entries; has {sorted(entries)})")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS or labels.shape != data.shape[:1]:
        raise DataError(
            f"{name}: CIFAR batch with data {data.dtype} {list(data.shape)} and {len(labels)} labels; "
            f"expected uint8 (N, {CIFAR_PIXELS}) and N labels"
        )
    return data.reshape(-1, 3, 32, 32), labels

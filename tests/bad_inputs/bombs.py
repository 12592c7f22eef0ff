"""Small honest files that declare huge contents: zips whose deflated entries really hold that many zero bytes
(CRC-32 and all), built in well under a second from one compressed block repeated. Shared by the corpus sections
and tests/test_files.py, which measures what reading them costs.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import torch

_CHUNK = 1 << 24  # bytes of zeros per repeated deflate block
_SEED_NUMEL = 70_000  # a tensor large enough that torch pickles its size as a 4-byte int


def _deflated_zeros(prefix: bytes, zeros: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``prefix`` then ``zeros`` zero bytes, and the CRC-32 of what it inflates to.

    After a full flush the compressor starts afresh, so every chunk of zeros compresses to the same bytes: one
    block, repeated. ``zeros`` is a multiple of 16 MiB.
    """
    assert zeros % _CHUNK == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(_CHUNK)) + c.flush(zlib.Z_FULL_FLUSH)
    crc, chunk = zlib.crc32(prefix), bytes(_CHUNK)
    for _ in range(zeros // _CHUNK):
        crc = zlib.crc32(chunk, crc)
    return head + block * (zeros // _CHUNK) + c.flush(), crc


Entry = tuple[str, bytes | tuple[bytes, int, int]]  # name, stored bytes or (deflated bytes, crc, size)


def zip_bytes(entries: list[Entry]) -> bytes:
    """A zip archive (no zip64: every size under 4 GiB) of stored entries and pre-deflated ones."""
    out, central = bytearray(), bytearray()
    for name, data in entries:
        encoded = name.encode()
        if isinstance(data, bytes):
            method, packed, crc, size = 0, data, zlib.crc32(data), len(data)
        else:
            method, (packed, crc, size) = 8, data
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(packed), size, len(encoded), 0)
        out += encoded + packed
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            *(0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(packed), size, len(encoded), 0, 0, 0, 0, 0, offset),
        )
        central += encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0)
    return bytes(out + central + end)


def torch_zeros(nbytes: int, key: str = "w") -> bytes:
    """torch.save({key: torch.zeros(nbytes // 4)}) as a deflated zip (as re-zipping one gives): ~1/1000 the size."""
    buf = io.BytesIO()
    torch.save({key: torch.zeros(_SEED_NUMEL)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    entries: list[Entry] = []
    for info in src.infolist():
        data = src.read(info.filename)
        if info.filename.endswith("/data.pkl"):  # the storage's and the tensor's element counts
            data = data.replace(struct.pack("<i", _SEED_NUMEL), struct.pack("<i", nbytes // 4))
        if info.filename.endswith("/data/0"):
            entries.append((info.filename, (*_deflated_zeros(b"", nbytes), nbytes)))
        else:
            entries.append((info.filename, data))
    return zip_bytes(entries)


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "shape": shape, "fortran_order": False})
    return header.getvalue()


def npz_zeros(nbytes: int, targets: int = 16) -> bytes:
    """np.savez_compressed(inputs=np.zeros(nbytes // 4, np.float32), targets=np.zeros(targets, np.int64))."""
    head = npy_header((nbytes // 4,))
    packed, crc = _deflated_zeros(head, nbytes)
    labels = io.BytesIO()
    np.save(labels, np.zeros(targets, np.int64))
    return zip_bytes([("inputs.npy", (packed, crc, len(head) + nbytes)), ("targets.npy", labels.getvalue())])


def legacy_torch_declaring(nbytes: int, key: str = "w") -> bytes:
    """A legacy (pre-1.6) torch file whose pickle declares a storage of ``nbytes`` but holds 280 KB of data."""
    buf = io.BytesIO()
    torch.save({key: torch.zeros(_SEED_NUMEL)}, buf, _use_new_zipfile_serialization=False)
    numel = struct.pack("<i", nbytes // 4)
    return buf.getvalue().replace(b"J" + struct.pack("<i", _SEED_NUMEL), b"J" + numel)


def gzip_zeros(prefix: bytes, zeros: int) -> bytes:
    """A gzip file of ``prefix`` then ``zeros`` zero bytes (a multiple of 16 MiB), header and trailer included."""
    packed, crc = _deflated_zeros(prefix, zeros)
    header = b"\x1f\x8b\x08\x00" + bytes(4) + b"\x00\xff"  # deflate, no flags, no mtime, unknown OS
    return header + packed + struct.pack("<II", crc, (len(prefix) + zeros) & 0xFFFFFFFF)

"""Bad checkpoints: each case pairs one bad file with a valid ``cnn width=2`` partner, through `interpscan run`.

Every file is built here from code (never hand-edited bytes), so the corpus can be regenerated and reviewed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from . import bombs
from .case import Case, good_state, run_args

TITLE = "Checkpoints"
# The cases build writes, in order (checked by build_corpus), so a test can be parametrized before it runs.
NAMES = (
    "missing-file",
    "empty-file",
    "random-bytes",
    "text-file",
    "json-renamed",
    "png-renamed",
    "gzipped-torch",
    "empty-directory",
    "directory-without-weights",
    "directory-two-checkpoints",
    "truncated-zip",
    "truncated-zip-head",
    "truncated-legacy",
    "truncated-pickle",
    "plain-pickle",
    "zip-bomb",
    "zip-bomb-pickle",
    "zip-size-lie",
    "pickle-of-list",
    "non-tensor-values",
    "empty-state-dict",
    "unknown-container",
    "code-pickle",
    "code-pickle-legacy",
    "npz-object-array",
    "truncated-npz",
    "truncated-safetensors",
    "safetensors-short-data",
    "safetensors-absurd-header",
    "safetensors-header-past-end",
    "safetensors-bad-dtype",
    "safetensors-overlapping",
    "safetensors-reversed-offsets",
    "safetensors-shape-vs-bytes",
    "safetensors-header-not-json",
    "sharded-missing-shard",
    "sharded-shard-outside",
    "sharded-index-not-json",
    "sharded-index-empty-map",
    "shape-mismatch",
    "other-width",
    "missing-key",
    "unexpected-key",
    "other-model",
    "dtype-mismatch",
    "nan-weights",
    "inf-weights",
    "fifo",
    "dev-zero",
    "fifo-in-directory",
    "symlink-loop",
    "broken-symlink",
    "deflated-zeros",
    "zip-overlapping-entries",
    "legacy-storage-past-end",
    "legacy-storage-absurd",
    "sparse-tensor",
    "quantized-tensor",
    "nested-tensor",
    "meta-tensor",
    "float8-weights",
    "npz-header-garbage",
    "npz-header-shape-lie",
    "npz-big-endian",
    "torch-zip-no-data-pkl",
    "torch-zip-odd-byteorder",
    "torch-zip-future-version",
    "safetensors-metadata-not-string",
    "npy-renamed",
    "index-nested-too-deep",
)


def safetensors_bytes(header: dict[str, Any], data: bytes, *, length: int | None = None) -> bytes:
    """A safetensors file from a header dict and a data buffer; ``length`` overrides the declared header size."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _torch_bytes(obj: Any, *, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _declare_huge(blob: bytes, entry_suffix: str, *, deflate: bool = True, size: int = 0xFFFF_FFF0) -> bytes:
    """Re-zip ``blob`` (deflated, or stored as torch writes it) and make one entry declare ``size`` bytes
    uncompressed (local header and central directory) while its compressed data stays as it is."""
    src = zipfile.ZipFile(io.BytesIO(blob))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    data = bytearray(out.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        target = next(i for i in zf.infolist() if i.filename.endswith(entry_suffix))
    struct.pack_into("<I", data, target.header_offset + 22, size)  # local header: uncompressed size at +22
    name = target.filename.encode()
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        (name_len,) = struct.unpack_from("<H", data, pos + 28)
        if bytes(data[pos + 46 : pos + 46 + name_len]) == name:
            struct.pack_into("<I", data, pos + 24, size)  # central record: uncompressed size at +24
            break
        pos = data.find(b"PK\x01\x02", pos + 4)
    return bytes(data)


class _RunsCode:
    """Unpickling this calls ``exec``: a stand-in for a malicious checkpoint. It writes ``marker`` if it runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _png() -> bytes:
    """A valid 1×1 PNG, built from its chunks."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")


def build(root: Path) -> list[Case]:
    """Write every bad checkpoint (and the valid partner) into ``root``; return the cases."""
    good = good_state(0)
    good_path = root / "good.pt"
    torch.save(good, good_path)
    good_zip = good_path.read_bytes()
    sd_header: dict[str, Any] = {}
    offset = 0
    for k, v in good.items():
        n = v.numel() * v.element_size()
        sd_header[k] = {
            "dtype": {torch.float32: "F32", torch.int64: "I64"}[v.dtype],
            "shape": list(v.shape),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    sd_data = b"".join(v.contiguous().numpy().tobytes() for v in good.values())
    cases: list[Case] = []

    def write(name: str, data: bytes) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def bad(
        name: str, description: str, path: Path, error: str, *, exit_code: int = 2, side: str = "final", **extra: Any
    ) -> None:
        init, final = (path, good_path) if side == "init" else (good_path, path)
        cases.append(Case(name, description, run_args(init, final), exit_code, error, **extra))

    # -- not a checkpoint at all
    bad("missing-file", "the path does not exist", root / "no-such-file.pt", "checkpoint not found")
    bad("empty-file", "a file of 0 bytes", write("empty.pt", b""), "an empty file")
    rng = np.random.default_rng(0)
    bad("random-bytes", "4 KiB of random bytes", write("random.pt", rng.bytes(4096)), "not a checkpoint")
    bad("text-file", "a text file named .pt", write("notes.pt", b"hello, these are not weights\n"), "not a checkpoint")
    bad(
        "json-renamed",
        "a JSON config renamed .pt",
        write("config.pt", json.dumps({"lr": 0.1}).encode()),
        "not a checkpoint",
    )
    bad("png-renamed", "a PNG image renamed .pt", write("image.pt", _png()), "not a checkpoint")
    bad(
        "gzipped-torch",
        "a torch file compressed with gzip",
        write("good.pt.gz", gzip.compress(good_zip, mtime=0)),
        "not a checkpoint",
    )
    (root / "empty-dir").mkdir(exist_ok=True)
    bad("empty-directory", "a directory with nothing in it", root / "empty-dir", "no candidate checkpoint files")
    write("no-weights/README.md", b"# weights to follow\n")
    write("no-weights/config.json", b"{}")
    bad(
        "directory-without-weights",
        "a directory with a README and a config",
        root / "no-weights",
        "no candidate checkpoint files",
    )
    write("two-files/a.pt", good_zip)
    write("two-files/b.pt", good_zip)
    bad(
        "directory-two-checkpoints",
        "a directory holding two checkpoint files",
        root / "two-files",
        "2 candidate checkpoint files",
    )

    # -- broken PyTorch files
    bad(
        "truncated-zip",
        "torch.save output cut in half",
        write("truncated-zip.pt", good_zip[: len(good_zip) // 2]),
        "unreadable PyTorch file",
    )
    bad(
        "truncated-zip-head",
        "only the first 64 bytes of a torch.save file",
        write("head.pt", good_zip[:64]),
        "unreadable PyTorch file",
    )
    legacy = _torch_bytes(good, legacy=True)
    # the last 8 bytes cut: where a cut mid-file lands depends on the order torch writes storages in, which varies
    bad(
        "truncated-legacy",
        "a legacy (pre-1.6) torch file missing its last 8 bytes",
        write("truncated-legacy.pt", legacy[:-8]),
        "unreadable PyTorch file",
    )
    plain = pickle.dumps({k: v.tolist() for k, v in good.items()})
    bad(
        "truncated-pickle",
        "a plain pickle cut in half",
        write("truncated.pkl.pt", plain[: len(plain) // 2]),
        "a Python pickle",
    )
    bad(
        "plain-pickle",
        "a plain pickle (not torch.save) of a dict of lists",
        write("plain.pt", plain),
        "a Python pickle",
    )
    bad(
        "zip-bomb",
        "a deflated torch zip whose tensor entry declares ~4 GiB uncompressed",
        write("bomb.pt", _declare_huge(good_zip, "/data/0")),
        "refused without reading it",
    )
    bad(
        "zip-bomb-pickle",
        "a deflated torch zip whose data.pkl declares ~4 GiB uncompressed",
        write("bomb-pkl.pt", _declare_huge(good_zip, "/data.pkl")),
        "refused without reading it",
    )
    bad(
        "zip-size-lie",
        "a stored (uncompressed) entry declaring ~4 GiB, more than the file holds",
        write("size-lie.pt", _declare_huge(good_zip, "/data/0", deflate=False)),
        "refused without reading it",
    )

    # -- readable, but not a state dict
    bad(
        "pickle-of-list",
        "torch.save of a list of tensors",
        write("list.pt", _torch_bytes(list(good.values()))),
        "no tensors found",
    )
    bad(
        "non-tensor-values",
        "a dict of numbers and strings",
        write("scalars.pt", _torch_bytes({"epoch": 3, "lr": "0.1"})),
        "no tensors found",
    )
    bad("empty-state-dict", "torch.save({})", write("empty-dict.pt", _torch_bytes({})), "no tensors found")
    bad(
        "unknown-container",
        "the weights nested under an unknown key",
        write("nested.pt", _torch_bytes({"weights": good})),
        "no tensors found",
    )
    marker = root / "PWNED"
    bad(
        "code-pickle",
        "a torch file whose pickle calls exec()",
        write("evil.pt", _torch_bytes({"x": _RunsCode(marker)})),
        "refused to unpickle",
        must_not_exist=(marker,),
    )
    legacy_marker = root / "PWNED-legacy"
    bad(
        "code-pickle-legacy",
        "a legacy torch file whose pickle calls exec()",
        write("evil-legacy.pt", _torch_bytes(_RunsCode(legacy_marker), legacy=True)),
        "refused to unpickle",
        must_not_exist=(legacy_marker,),
    )
    buf = io.BytesIO()
    np.savez(buf, w=np.array([{"a": 1}], dtype=object))
    bad(
        "npz-object-array",
        "an .npz whose array needs pickle (dtype=object)",
        write("object.npz", buf.getvalue()),
        "an array of Python objects",
    )
    buf = io.BytesIO()
    np.savez(buf, **{k: v.numpy() for k, v in good.items()})
    npz = buf.getvalue()
    bad("truncated-npz", "an .npz cut in half", write("truncated.npz", npz[: len(npz) // 2]), "unreadable")

    # -- broken safetensors
    real = safetensors_bytes(sd_header, sd_data)
    bad(
        "truncated-safetensors",
        "a .safetensors file cut in half",
        write("truncated.safetensors", real[: len(real) // 2]),
        "unreadable safetensors",
    )
    bad(
        "safetensors-short-data",
        "a header whose offsets run past the end of the data",
        write("short.safetensors", real[:-16]),
        "unreadable safetensors",
    )
    bad(
        "safetensors-absurd-header",
        "a header length of 2**60 bytes",
        write("absurd.safetensors", safetensors_bytes(sd_header, sd_data, length=2**60)),
        "not a checkpoint",
    )
    bad(
        "safetensors-header-past-end",
        "a header length 1 KiB larger than the file",
        write("past-end.safetensors", safetensors_bytes(sd_header, sd_data, length=len(real) + 1024)),
        "not a checkpoint",
    )
    bad(
        "safetensors-bad-dtype",
        "a tensor of dtype 'Q7'",
        write(
            "dtype.safetensors",
            safetensors_bytes({**sd_header, "fc.bias": {**sd_header["fc.bias"], "dtype": "Q7"}}, sd_data),
        ),
        "unreadable safetensors",
    )
    first, second = next(iter(sd_header)), list(sd_header)[1]
    overlap = {**sd_header, second: {**sd_header[second], "data_offsets": sd_header[first]["data_offsets"]}}
    bad(
        "safetensors-overlapping",
        "two tensors whose byte ranges overlap",
        write("overlap.safetensors", safetensors_bytes(overlap, sd_data)),
        "unreadable safetensors",
    )
    rev = sd_header["fc.bias"]["data_offsets"]
    backwards = {**sd_header, "fc.bias": {**sd_header["fc.bias"], "data_offsets": [rev[1], rev[0]]}}
    bad(
        "safetensors-reversed-offsets",
        "a tensor whose end offset is before its start",
        write("reversed.safetensors", safetensors_bytes(backwards, sd_data)),
        "unreadable safetensors",
    )
    wrong_size = {**sd_header, "fc.bias": {**sd_header["fc.bias"], "shape": [11]}}
    bad(
        "safetensors-shape-vs-bytes",
        "a shape that does not match its byte range",
        write("shape-bytes.safetensors", safetensors_bytes(wrong_size, sd_data)),
        "unreadable safetensors",
    )
    text = b"{not json" + b" " * 32
    bad(
        "safetensors-header-not-json",
        "a header that is not JSON",
        write("garbage.safetensors", struct.pack("<Q", len(text)) + text + sd_data),
        "unreadable safetensors",
    )

    # -- sharded checkpoints
    shard_dir = root / "sharded-missing"
    shard_dir.mkdir(exist_ok=True)
    names = list(good)
    half = len(names) // 2
    save_file({k: good[k].contiguous() for k in names[:half]}, str(shard_dir / "model-00001-of-00002.safetensors"))
    weight_map = {k: f"model-0000{1 if i < half else 2}-of-00002.safetensors" for i, k in enumerate(names)}
    index = shard_dir / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    bad("sharded-missing-shard", "an index naming a shard that is not there", index, "shards are missing")
    outside_dir = root / "sharded-outside"
    outside_dir.mkdir(exist_ok=True)
    outside_map = dict.fromkeys(names, "../sharded-missing/model-00001-of-00002.safetensors")
    outside_index = outside_dir / "model.safetensors.index.json"
    outside_index.write_text(json.dumps({"metadata": {}, "weight_map": outside_map}))
    bad(
        "sharded-shard-outside",
        "an index naming a shard outside its folder (../)",
        outside_index,
        "names shards outside its folder",
    )
    bad(
        "sharded-index-not-json",
        "a *.index.json that is not JSON",
        write("bad-index/model.safetensors.index.json", b'{"weight_map": {'),
        "not a checkpoint",
    )
    bad(
        "sharded-index-empty-map",
        "an index whose weight_map is empty",
        write("empty-index/model.safetensors.index.json", b'{"weight_map": {}}'),
        "no tensors found",
    )

    # -- readable tensors that do not fit the model or each other
    shapes = {**good, "fc.weight": torch.zeros(10, 7)}
    bad("shape-mismatch", "fc.weight of shape [10, 7]", write("shapes.pt", _torch_bytes(shapes)), "shape of fc.weight")
    wider = good_state(1, width=3)
    bad("other-width", "a cnn of width 3 against one of width 2", write("width3.pt", _torch_bytes(wider)), "shape of")
    missing = {k: v for k, v in good.items() if k != "fc.bias"}
    bad("missing-key", "fc.bias left out", write("missing.pt", _torch_bytes(missing)), "missing fc.bias")
    extra = {**good, "fc2.weight": torch.zeros(3)}
    bad("unexpected-key", "an extra tensor fc2.weight", write("extra.pt", _torch_bytes(extra)), "unexpected fc2.weight")
    from interpscan.models import MLP

    other = MLP(in_features=784, width=4, depth=1).state_dict()
    bad("other-model", "an MLP's state dict where a CNN's belongs", write("mlp.pt", _torch_bytes(other)), "missing")
    ints = {**good, "conv1.weight": torch.zeros_like(good["conv1.weight"], dtype=torch.int64)}
    bad("dtype-mismatch", "conv1.weight stored as int64", write("ints.pt", _torch_bytes(ints)), "dtype of conv1.weight")

    # -- non-finite weights: the scan runs, with a warning
    nan = {**good, "fc.weight": good["fc.weight"].clone()}
    nan["fc.weight"][0, :3] = float("nan")
    bad(
        "nan-weights",
        "three NaN entries in fc.weight",
        write("nan.pt", _torch_bytes(nan)),
        "",
        exit_code=0,
        warning="final holds 3 non-finite values (fc.weight)",
    )
    inf = {**good, "conv1.weight": good["conv1.weight"].clone()}
    inf["conv1.weight"].view(-1)[0] = float("inf")
    bad(
        "inf-weights",
        "an Inf in conv1.weight of init",
        write("inf.pt", _torch_bytes(inf)),
        "",
        exit_code=0,
        warning="init holds 1 non-finite value (conv1.weight)",
        side="init",
    )

    # -- not a regular file: reading would block (a FIFO waits for a writer) or never end (/dev/zero)
    fifo = _fifo(root / "pipe.pt")
    bad("fifo", "a named pipe (FIFO) named .pt", fifo, "is a named pipe (FIFO), not a regular checkpoint")
    bad("dev-zero", "/dev/zero, a device that never ends", Path("/dev/zero"), "is a character device")
    (root / "fifo-dir").mkdir(exist_ok=True)
    _fifo(root / "fifo-dir" / "model.pt")
    bad("fifo-in-directory", "a directory whose only checkpoint is a FIFO", root / "fifo-dir", "is a named pipe")
    _link(root / "loop-a.pt", root / "loop-b.pt")
    _link(root / "loop-b.pt", root / "loop-a.pt")
    bad("symlink-loop", "a symbolic link to a link back to it", root / "loop-a.pt", "a loop of symbolic links")
    _link(root / "dangling.pt", root / "moved-away.pt")
    bad("broken-symlink", "a symbolic link to a file that is gone", root / "dangling.pt", "which does not exist")

    # -- files that declare far more than they hold: refused before anything is allocated
    bad(
        "deflated-zeros",
        "a 1 MiB deflated torch zip of zeros declaring a 1 GiB tensor (honest, CRCs and all)",
        write("zeros-1gib.pt", bombs.torch_zeros(1 << 30)),
        "declares 1.0 GiB of data in 1020.7 KiB on disk",
    )
    bad(
        "zip-overlapping-entries",
        "a stored zip listing 300 entries that all share one 1 MiB tensor's bytes",
        write("overlapping.pt", _overlapping(300)),
        "declares 301.0 MiB of data in 1.0 MiB",
    )
    bad(
        "legacy-storage-past-end",
        "a legacy torch file whose pickle declares a 1 GiB storage and holds 280 KB",
        write("legacy-1gib.pt", bombs.legacy_torch_declaring(1 << 30)),
        "a tensor's declared size does not match the data the file holds",
    )
    bad(
        "legacy-storage-absurd",
        "a legacy torch file declaring a storage of 2**60 bytes",
        write("legacy-absurd.pt", _legacy_absurd()),
        "more than this machine can allocate",
    )

    # -- tensors that are not plain dense numbers
    bad(
        "sparse-tensor",
        "fc.weight saved as a sparse COO tensor",
        write("sparse.pt", _torch_bytes({**good, "fc.weight": good["fc.weight"].to_sparse()})),
        "fc.weight is a sparse_coo tensor",
    )
    with warnings.catch_warnings():  # torch deprecates quantized tensors; files holding them remain
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_tensor(good["fc.weight"], 0.01, 0, torch.qint8)
    bad(
        "quantized-tensor",
        "fc.weight quantized to qint8",
        write("quantized.pt", _torch_bytes({**good, "fc.weight": quantized})),
        "fc.weight is a quantized tensor (qint8)",
    )
    with warnings.catch_warnings():  # "nested tensors are in prototype stage"
        warnings.simplefilter("ignore", UserWarning)
        nested = torch.nested.nested_tensor([good["fc.weight"][0], good["fc.weight"][1, :5]])
    bad(
        "nested-tensor",
        "fc.weight saved as a nested tensor",
        write("nested-tensor.pt", _torch_bytes({**good, "fc.weight": nested})),
        "fc.weight is a nested tensor",
    )
    bad(
        "meta-tensor",
        "fc.weight on the meta device (a shape, no data)",
        write("meta.pt", _torch_bytes({**good, "fc.weight": good["fc.weight"].to("meta")})),
        "fc.weight is a meta tensor",
    )
    fp8 = {k: v.to(torch.float8_e4m3fn) if v.is_floating_point() else v for k, v in good_state(1).items()}
    bad(
        "float8-weights",
        "every float tensor in float8_e4m3fn: read as float32",
        write("fp8.pt", _torch_bytes(fp8)),
        "",
        exit_code=0,
    )

    # -- damaged or odd headers
    renpz = _edit_zip(npz, "fc.weight.npy", lambda b: b[:10] + b"{garbage!!" + b[20:])
    bad(
        "npz-header-garbage",
        "an .npz whose .npy header is not a dict",
        write("npz-garbage.npz", renpz),
        "is not a readable .npy array",
    )
    lie = _edit_zip(npz, "fc.weight.npy", lambda b: b.replace(b"(10, 64)", b"(640, 64)"))
    bad(
        "npz-header-shape-lie",
        "an .npy header declaring 64× the entry's data",
        write("npz-lie.npz", lie),
        "declares shape [640, 64]",
    )
    buf = io.BytesIO()
    np.savez(buf, **{k: v.numpy().astype(v.numpy().dtype.newbyteorder(">")) for k, v in good_state(1).items()})
    bad(
        "npz-big-endian",
        "an .npz of big-endian ('>f4') arrays: read in native order",
        write("big-endian.npz", buf.getvalue()),
        "",
        exit_code=0,
    )
    bad(
        "torch-zip-no-data-pkl",
        "a torch zip without its data.pkl",
        write("no-pkl.pt", _edit_zip(good_zip, "/data.pkl", None)),
        "failed locating file data.pkl",
    )
    bad(
        "torch-zip-odd-byteorder",
        "a torch zip whose byteorder record says 'middle'",
        write("middle-endian.pt", _edit_zip(good_zip, "/byteorder", lambda b: b"middle")),
        "Unknown endianness type: middle",
    )
    bad(
        "torch-zip-future-version",
        "a torch zip of format version 99",
        write("version-99.pt", _edit_zip(good_zip, "/version", lambda b: b"99\n")),
        "a PyTorch file with version 99",
    )
    odd_meta = {**sd_header, "__metadata__": {"epoch": 3}}
    bad(
        "safetensors-metadata-not-string",
        "safetensors metadata holding a number",
        write("meta-number.safetensors", safetensors_bytes(odd_meta, sd_data)),
        "expected a string",
    )
    buf = io.BytesIO()
    np.save(buf, good["fc.weight"].numpy())
    bad("npy-renamed", "a single np.save array named .pt", write("array.pt", buf.getvalue()), "a single NumPy array")
    deep = b'{"weight_map": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bad(
        "index-nested-too-deep",
        "a JSON index nested 100,000 lists deep (Python's decoder recurses)",
        write("deep/model.safetensors.index.json", deep),
        "not a checkpoint interpscan can read",
    )
    return cases


def _fifo(path: Path) -> Path:
    if not path.exists():
        os.mkfifo(path)
    return path


def _link(path: Path, target: Path) -> None:
    if not path.is_symlink():
        path.symlink_to(target)


def _edit_zip(blob: bytes, suffix: str, edit: Any) -> bytes:
    """The zip ``blob`` rewritten (stored) with the entry ending in ``suffix`` edited, or left out when ``edit``
    is None."""
    src = zipfile.ZipFile(io.BytesIO(blob))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith(suffix):
                if edit is None:
                    continue
                data = edit(data)
            dst.writestr(info.filename, data)
    return out.getvalue()


def _overlapping(copies: int) -> bytes:
    """A stored torch zip of a 1 MiB tensor whose central directory lists ``copies`` more entries (data/1, …)
    pointing at the same bytes: each is honest alone, together they declare ``copies`` MiB."""
    blob = _torch_bytes({"w": torch.zeros(1 << 18)})
    data = bytearray(blob)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        infos = zf.infolist()
        end = zf.start_dir
        tensor = next(i for i in infos if i.filename.endswith("/data/0"))
    # torch ends its zips with zip64 records before the end record: rebuild the end as a plain one
    stop = min(i for i in (data.find(b"PK\x06\x06", end), data.find(b"PK\x05\x06", end)) if i >= 0)
    central = bytearray(data[end:stop])
    pos = central.find(tensor.filename.encode()) - 46
    (name_len, extra_len, comment_len) = struct.unpack_from("<HHH", central, pos + 28)
    record = bytes(central[pos : pos + 46 + name_len + extra_len + comment_len])
    old_name = tensor.filename.encode()
    for i in range(1, copies + 1):
        new_name = old_name[:-1] + str(i).encode()
        clone = bytearray(record.replace(old_name, new_name))
        struct.pack_into("<H", clone, 28, len(new_name))
        central += clone
    total = len(infos) + copies
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, total, total, len(central), end, 0)
    return bytes(data[:end]) + bytes(central) + eocd


def _legacy_absurd() -> bytes:
    """A legacy torch file whose storage declares 2**58 float32 elements (pickled as LONG1)."""
    blob = _torch_bytes({"w": torch.zeros(70_000)}, legacy=True)
    numel = 1 << 58
    return blob.replace(b"J" + struct.pack("<i", 70_000), b"\x8a\x08" + numel.to_bytes(8, "little"))

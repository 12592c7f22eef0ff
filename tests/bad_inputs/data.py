"""Bad data: tensor files, factories and the user's code they run, the standard datasets' IDX files and image
folders, each through `interpscan run` with two valid ``cnn width=2`` checkpoints.

Every file is built here from code (never hand-edited bytes), so the corpus can be regenerated and reviewed.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import struct
import warnings
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import bombs
from .case import OUT, Case, fast_args, good_state, run_args

TITLE = "Data files"
# The cases build writes, in order (checked by build_corpus), so a test can be parametrized before it runs.
NAMES = (
    "data-fifo",
    "data-directory",
    "data-deflated-zeros",
    "data-plain-pickle",
    "data-legacy-pickle-protocol-4",
    "data-single-npy",
    "data-strings",
    "data-datetime-targets",
    "data-records",
    "data-big-endian",
    "data-fortran-order",
    "data-float16-inputs",
    "data-int8-inputs",
    "data-sparse-inputs",
    "data-quantized-inputs",
    "data-complex-targets",
    "data-float-targets",
    "data-2d-targets",
    "data-uint64-targets",
    "data-0d-inputs",
    "data-wrong-rank-inputs",
    "data-length-mismatch",
    "factory-3-tuple",
    "factory-sys-exit",
    "factory-exits-on-import",
    "factory-fifo",
    "model-factory-sys-exit",
    "forward-sys-exit",
    "loss-sys-exit",
    "idx-bad-magic",
    "idx-dims-past-end",
    "idx-truncated-gzip",
    "idx-float-labels",
    "idx-gzip-bomb",
    "image-truncated-png",
    "image-empty-png",
    "image-text-as-jpg",
    "image-decompression-bomb",
    "image-too-many-pixels",
    "image-float-pixels",
    "image-16-bit",
    "image-cmyk",
    "image-class-without-images",
    "image-empty-root",
    "image-fifo",
)

N = 16  # examples in every data file


def _inputs_targets() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(N, 1, 28, 28, generator=gen).mul(64).round().div(64)  # multiples of 1/64: exact in float16
    return x, torch.randint(0, 10, (N,), generator=gen)


def _torch_bytes(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def _npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _png(width: int, height: int, rows: bytes | None = None) -> bytes:
    """A grey PNG built from its chunks; ``rows`` None gives a header declaring the pixels and no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    idat = b"" if rows is None else chunk(b"IDAT", zlib.compress(rows))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + chunk(b"IEND", b"")


def _image(array: np.ndarray[Any, Any], mode: str | None = None, fmt: str = "PNG") -> bytes:
    from PIL import Image

    image = Image.fromarray(array)
    buf = io.BytesIO()
    (image if mode is None else image.convert(mode)).save(buf, fmt)
    return buf.getvalue()


USER_CODE = """
import sys

import torch

from interpscan.models import CNN

gen = torch.Generator().manual_seed(0)
X, Y = torch.rand(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)


def triple():
    return X, Y, torch.arange(16)


def leaves():
    sys.exit(0)


def model_leaves(width=2):
    sys.exit(0)


class Quits(CNN):
    def forward(self, x):
        sys.exit(0)


def quitting_model(width=2):
    return Quits(width=width)


def loss_leaves(outputs, targets):
    sys.exit(0)
"""


def build(root: Path) -> list[Case]:
    """Write every bad data file (and the valid checkpoints) into ``root``; return the cases."""
    init, final = root / "init.pt", root / "final.pt"
    torch.save(good_state(0), init)
    torch.save(good_state(1), final)
    x, y = _inputs_targets()
    cases: list[Case] = []

    def write(name: str, data: bytes) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def bad(name: str, description: str, data: Path | str, error: str, *, exit_code: int = 2, **extra: Any) -> None:
        cases.append(Case(name, description, run_args(init, final, "--data", str(data)), exit_code, error, **extra))

    def ran(name: str, description: str, data: Path) -> None:
        bad(name, description, data, "", exit_code=0)

    def pair(name: str, inputs: Any, targets: Any) -> Path:
        return write(name, _torch_bytes({"inputs": inputs, "targets": targets}))

    # -- what holds the data
    fifo = root / "pipe.pt"
    if not fifo.exists():
        os.mkfifo(fifo)
    bad("data-fifo", "a named pipe (FIFO) as the data file", fifo, "is a named pipe (FIFO), not a regular data file")
    (root / "train.pt").mkdir(exist_ok=True)
    bad("data-directory", "a directory named train.pt", root / "train.pt", "is a directory, not a data file")
    bad(
        "data-deflated-zeros",
        "a 1 MiB np.savez_compressed of zeros declaring 1 GiB of inputs (honest, CRCs and all)",
        write("zeros-1gib.npz", bombs.npz_zeros(1 << 30)),
        "declares 1.0 GiB of data in 1020.2 KiB on disk",
    )
    bad(
        "data-plain-pickle",
        "pickle.dump of a dict of NumPy arrays, named .pt",
        write("pickled.pt", pickle.dumps({"inputs": x.numpy(), "targets": y.numpy()})),
        "a Python pickle (pickle.dump), not torch.save output",
    )
    bad(
        "data-legacy-pickle-protocol-4",
        "torch.save in the legacy format with pickle protocol 4",
        write(
            "legacy-p4.pt",
            _torch_bytes({"inputs": x, "targets": y}, _use_new_zipfile_serialization=False, pickle_protocol=4),
        ),
        "written with pickle protocol 4 or later",
    )
    buf = io.BytesIO()
    np.save(buf, x.numpy())
    bad("data-single-npy", "a single np.save array named .npz", write("one.npz", buf.getvalue()), "a single array")

    # -- arrays that are not numbers, or numbers in an unusual layout
    strings = np.array([f"{i:03d}" for i in range(N)])
    bad(
        "data-strings",
        "inputs that are strings (dtype <U3)",
        write("strings.npz", _npz_bytes(inputs=strings, targets=y.numpy())),
        "entry 'inputs' is an array of strings (dtype <U3)",
    )
    dates = np.arange(N).astype("datetime64[D]")
    bad(
        "data-datetime-targets",
        "targets that are dates (datetime64)",
        write("dates.npz", _npz_bytes(inputs=x.numpy(), targets=dates)),
        "entry 'targets' is an array of dates",
    )
    records = np.zeros(N, dtype=[("pixel", "<f4"), ("label", "<i8")])
    bad(
        "data-records",
        "inputs as a structured array (fields pixel, label)",
        write("records.npz", _npz_bytes(inputs=records, targets=y.numpy())),
        "records (structured dtype with fields pixel, label)",
    )
    ran(
        "data-big-endian",
        "big-endian ('>f4', '>i8') arrays: the same numbers",
        write("big-endian.npz", _npz_bytes(inputs=x.numpy().astype(">f4"), targets=y.numpy().astype(">i8"))),
    )
    ran(
        "data-fortran-order",
        "Fortran-ordered inputs: the same numbers",
        write("fortran.npz", _npz_bytes(inputs=np.asfortranarray(x.numpy()), targets=y.numpy())),
    )
    ran("data-float16-inputs", "float16 inputs: read as float32", pair("f16.pt", x.half(), y))
    bad(
        "data-int8-inputs",
        "int8 inputs, passed unchanged like token ids",
        pair("int8.pt", (x * 100).to(torch.int8), y),
        "forward pass failed on inputs of shape [16, 1, 28, 28] (int8)",
        exit_code=1,
    )
    bad(
        "data-sparse-inputs",
        "inputs as a sparse COO tensor",
        pair("sparse.pt", x.to_sparse(), y),
        "inputs are a sparse_coo tensor",
    )
    with warnings.catch_warnings():  # torch deprecates quantized tensors; files holding them remain
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8)
    bad(
        "data-quantized-inputs",
        "inputs quantized to quint8",
        pair("quantized.pt", quantized, y),
        "a quantized tensor (quint8)",
    )
    bad(
        "data-complex-targets",
        "complex64 targets",
        pair("complex.pt", x, y.to(torch.complex64)),
        "test targets are complex64",
    )
    bad(
        "data-float-targets",
        "float targets for cross-entropy",
        pair("float-y.pt", x, y.float()),
        "targets are float32, expected integer class labels",
    )
    bad("data-2d-targets", "targets of shape (16, 1)", pair("2d-y.pt", x, y[:, None]), "targets have shape [16, 1]")
    ran("data-uint64-targets", "uint64 class labels: read as int64", pair("u64-y.pt", x, y.to(torch.uint64)))
    bad(
        "data-0d-inputs",
        "a single number as the inputs",
        pair("0d.pt", torch.tensor(1.0), y),
        "test inputs have shape []",
    )
    bad(
        "data-wrong-rank-inputs",
        "flat inputs (16, 784) for a conv net",
        pair("flat.pt", x.flatten(1), y),
        "forward pass failed on inputs of shape [16, 784]",
        exit_code=1,
    )
    bad(
        "data-length-mismatch",
        "16 inputs, 10 targets",
        pair("lengths.pt", x, y[:10]),
        "test has 16 inputs but 10 targets",
    )

    # -- the user's code: factories, a model and a loss
    code = write("user_code.py", USER_CODE.encode())
    bad("factory-3-tuple", "a factory returning (x, y, extra)", f"{code}:triple", "returned a 3-tuple of tensors")
    bad(
        "factory-sys-exit",
        "a factory calling sys.exit(0)",
        f"{code}:leaves",
        "the factory raised ExitCalled: it called sys.exit(0)",
    )
    script = write("script.py", b"import sys\n\nsys.exit(0)\n\n\ndef make():\n    pass\n")
    bad(
        "factory-exits-on-import",
        "a factory file that calls sys.exit(0) at import",
        f"{script}:make",
        "failed: ExitCalled",
    )
    fifo_py = root / "fifo_code.py"
    if not fifo_py.exists():
        os.mkfifo(fifo_py)
    bad(
        "factory-fifo",
        "a factory file that is a FIFO",
        f"{fifo_py}:make",
        "is a named pipe (FIFO), not a regular Python file",
    )
    own_model = ("--samples", "16", "--alphas", "2", "--bn", "interpolate", "-q", "--no-html", "--out", OUT)
    cases.append(
        Case(
            "model-factory-sys-exit",
            "a model factory calling sys.exit(0)",
            ("run", str(init), str(final), "--model", f"{code}:model_leaves", *own_model),
            2,
            "failed: ExitCalled: it called sys.exit(0)",
        )
    )
    cases.append(
        Case(
            "forward-sys-exit",
            "a model whose forward pass calls sys.exit(0)",
            (
                "run",
                str(init),
                str(final),
                "--model",
                f"{code}:quitting_model",
                "--data",
                "fashion-mnist-small",
                *own_model,
            ),
            1,
            "forward pass failed on inputs of shape [16, 1, 28, 28] (float32): ExitCalled",
        )
    )
    cases.append(
        Case(
            "loss-sys-exit",
            "a --loss function calling sys.exit(0)",
            run_args(init, final, "--loss", f"{code}:loss_leaves"),
            2,
            "raised ExitCalled on outputs [16, 10]",
        )
    )

    # -- the standard datasets' IDX files, damaged (fashion-mnist under --data-root)
    bundled = Path(str(resources.files("interpscan").joinpath("bundled/fashion-mnist-small")))
    images_name = "t10k-images-idx3-ubyte"

    raw_images = gzip.decompress((bundled / f"{images_name}.gz").read_bytes())
    raw_labels = gzip.decompress((bundled / "t10k-labels-idx1-ubyte.gz").read_bytes())
    for name, description, file, data, error in [
        (
            "idx-bad-magic",
            "an IDX file whose magic number is wrong",
            images_name,
            b"\0\0\x07\x03" + raw_images[4:],
            "not an IDX file (bad magic number)",
        ),
        (
            "idx-dims-past-end",
            "an IDX header declaring 10**9 images",
            images_name,
            raw_images[:4] + struct.pack(">I", 10**9) + raw_images[8:],
            "IDX header promises 784000000000 bytes of data",
        ),
        (
            "idx-truncated-gzip",
            "a gzipped IDX file cut in half",
            f"{images_name}.gz",
            (bundled / f"{images_name}.gz").read_bytes()[:2000],
            "corrupt gzip data",
        ),
        (
            "idx-float-labels",
            "labels stored as IDX float32",
            "t10k-labels-idx1-ubyte",
            b"\0\0\x0d\x01" + raw_labels[4:8] + np.frombuffer(raw_labels[8:], np.uint8).astype(">f4").tobytes(),
            "IDX data of float32 [",
        ),
        (
            "idx-gzip-bomb",
            "a 1 MiB gzipped IDX file declaring 1 GiB of images",
            f"{images_name}.gz",
            bombs.gzip_zeros(b"\0\0\x08\x03" + struct.pack(">III", 1 << 20, 32, 32), 1 << 30),
            "declares 1.0 GiB of data in 1019.7 KiB",
        ),
    ]:
        # fashion-mnist under --data-root: the bundled files, one of them replaced
        folder = root / name / "fashion-mnist"
        folder.mkdir(parents=True, exist_ok=True)
        for f in bundled.glob("*.gz"):
            if not f.name.startswith(file.removesuffix(".gz")):
                shutil.copyfile(f, folder / f.name)
        (folder / file).write_bytes(data)
        args = run_args(init, final, "--data", "fashion-mnist", "--data-root", str(root / name), "--no-download")
        cases.append(Case(name, description, args, 2, error))

    # -- image folders
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (8, 8), dtype=np.uint8)

    def folder(name: str, files: dict[str, bytes | None], *, classes: int = 2) -> Path:
        """Classes a, b (…) of four good 8×8 grey PNGs each, then ``files`` written over them (None: a FIFO)."""
        top = root / name
        for c in "abcd"[:classes]:
            for i in range(4):
                write(f"{name}/{c}/{i}.png", _image(noise))
        for rel, data in files.items():
            if data is None:
                if not (top / rel).exists():
                    os.mkfifo(top / rel)
            else:
                write(f"{name}/{rel}", data)
        return top

    good_png = _image(noise)
    bad(
        "image-truncated-png",
        "a PNG cut in half",
        folder("img-truncated", {"b/0.png": good_png[: len(good_png) // 2]}),
        "the image cannot be decoded (OSError: image file is truncated",
    )
    bad("image-empty-png", "a PNG of 0 bytes", folder("img-empty", {"b/0.png": b""}), "not an image Pillow can read")
    bad(
        "image-text-as-jpg",
        "a text file named .jpg",
        folder("img-text", {"b/x.jpg": b"not an image\n"}),
        "not an image Pillow can read",
    )
    bad(
        "image-decompression-bomb",
        "a PNG header declaring 20000×20000 pixels",
        folder("img-bomb", {"b/0.png": _png(20000, 20000)}),
        "Pillow refuses to decode it as a decompression bomb",
    )
    large = {f"{c}/{i}.png": _png(9000, 9000) for c in "ab" for i in range(4)}
    bad(
        "image-too-many-pixels",
        "8 PNG headers of 9000×9000 pixels each (618 MiB decoded)",
        folder("img-large", large),
        "(8 images in the test split) declares 618.0 MiB of data",
    )
    floats = _image(rng.random((8, 8), dtype=np.float32), fmt="TIFF")
    bad(
        "image-float-pixels",
        "a TIFF of 32-bit float pixels",
        folder("img-float", {"b/x.tif": floats}),
        "an image of 32-bit float pixels (mode F)",
    )
    deep = {f"{c}/{i}.png": _image(noise.astype(np.uint16) * 257) for c in "ab" for i in range(4)}
    ran("image-16-bit", "16-bit grey PNGs: scaled by 65535, not clipped", folder("img-16bit", deep))
    rgb_init, rgb_final = root / "rgb-init.pt", root / "rgb-final.pt"
    torch.save(_rgb_state(0), rgb_init)
    torch.save(_rgb_state(1), rgb_final)
    cmyk_root = root / "img-cmyk"
    for c in "ab":
        for i in range(4):
            write(f"img-cmyk/{c}/{i}.jpg", _image(np.stack([noise] * 3, -1), "CMYK", "JPEG"))
    cases.append(
        Case(
            "image-cmyk",
            "CMYK JPEGs: converted to RGB",
            (
                "run",
                str(rgb_init),
                str(rgb_final),
                *fast_args("--model-arg", "in_channels=3", "--data", str(cmyk_root)),
                "--out",
                OUT,
            ),
            0,
            "",
        )
    )
    (root / "img-no-class-images" / "b").mkdir(parents=True, exist_ok=True)
    write("img-no-class-images/b/README.txt", b"images to follow\n")
    bad(
        "image-class-without-images",
        "class folders a, b, c where b holds no image",
        folder("img-no-class-images", {"c/0.png": good_png}, classes=1),
        "1 class folder without images",
    )
    (root / "img-nothing").mkdir(exist_ok=True)
    bad("image-empty-root", "an empty folder", root / "img-nothing", "no images in class sub-folders")
    bad(
        "image-fifo",
        "a FIFO named .png among the images",
        folder("img-fifo", {"b/9.png": None}),
        "is a named pipe (FIFO), not a regular image",
    )
    return cases


def _rgb_state(seed: int) -> dict[str, torch.Tensor]:
    from interpscan.models import CNN

    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in CNN(in_channels=3, width=2).state_dict().items()}

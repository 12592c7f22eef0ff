"""Datasets as tensors: named datasets read from their original files, the bundled subset, tensor files.

A DataSource knows where a dataset lives and which splits it has; ``load_split`` reads one split into memory
as float32 inputs and int64 targets, optionally a seeded subset, normalized. No DataLoader anywhere: the engine
slices these tensors directly.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, DataError, UsageError

# (mean, std) of the training images in [0, 1], the normalization users of these datasets expect.
STANDARD_NORMALIZATION = {"fashion-mnist": (0.2860, 0.3530), "fashion-mnist-small": (0.2860, 0.3530)}

FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Where the Debian package dataset-fashion-mnist puts the files; searched after --data-root.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
BUNDLED_DIR = "bundled/fashion-mnist-small"

_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def default_root() -> Path:
    """The cache directory: ``$XDG_CACHE_HOME/interpscan``, else ``~/.cache/interpscan``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "interpscan"


def read_idx(path: Path) -> np.ndarray[Any, Any]:
    """Read an IDX file (LeCun's MNIST format), gzip-compressed or not, into a native-endian array.

    Raises:
        DataError: the bytes are not a well-formed IDX file.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # zlib.error: damaged deflate stream
            raise DataError(f"{path}: corrupt gzip data ({exc})", hint="delete the file and fetch it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(
            f"{path}: IDX header promises {count * dtype.itemsize} bytes of data, file has {len(raw) - header}",
            hint="the file is truncated or corrupt; fetch it again",
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


@dataclass(frozen=True)
class DataSource:
    """Where a dataset lives and how to read each of its splits (raw, unnormalized)."""

    name: str
    location: str
    splits: tuple[str, ...]
    normalization: tuple[float, float] | None  # what ``--normalize auto`` applies; None: nothing
    reader: Callable[[str], tuple[torch.Tensor, torch.Tensor]] = field(repr=False, compare=False)

    def read(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.splits:
            raise DataError(
                f"dataset {self.name} has no {split!r} split (it has: {', '.join(self.splits)})",
                hint=f"use --split {self.splits[0]}",
            )
        return self.reader(split)


@dataclass(frozen=True)
class Split:
    """One split in memory: inputs (N, …) float32, normalized; targets (N,) int64."""

    name: str
    inputs: torch.Tensor
    targets: torch.Tensor
    indices: tuple[int, ...] | None  # the subset drawn by --samples, as indices into the full split

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def _idx_reader(
    directory: Path, names: Mapping[str, tuple[str, str]]
) -> Callable[[str], tuple[torch.Tensor, torch.Tensor]]:
    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images_name, labels_name = names[split]
        images = read_idx(_find_file(directory, images_name))
        labels = read_idx(_find_file(directory, labels_name))
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{directory}: {split} has {images.shape[0]} images but {labels.shape[0]} labels")
        x = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, H, W) uint8
        y = torch.from_numpy(labels.astype(np.int64))
        return x, y

    return read


def _find_file(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{directory}: missing {stem}.gz")


def _has_idx_files(directory: Path) -> bool:
    return all(
        any((directory / f"{stem}{ext}").is_file() for ext in (".gz", ""))
        for pair in FASHION_MNIST_FILES.values()
        for stem in pair
    )


def fashion_mnist_dirs(root: Path) -> list[Path]:
    """Where the four Fashion-MNIST IDX files are looked for, in order."""
    return [root, root / "fashion-mnist", root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST]


def _open_fashion_mnist(root: Path) -> DataSource:
    for directory in fashion_mnist_dirs(root):
        if _has_idx_files(directory):
            return DataSource(
                "fashion-mnist",
                str(directory),
                ("train", "test"),
                STANDARD_NORMALIZATION["fashion-mnist"],
                _idx_reader(directory, FASHION_MNIST_FILES),
            )
    searched = ", ".join(str(d) for d in fashion_mnist_dirs(root))
    raise DataError(
        f"Fashion-MNIST not found (looked in {searched})",
        hint="put the four IDX .gz files in one of those folders (or pass --data-root), "
        "or use the bundled subset: --data fashion-mnist-small",
    )


def _open_bundled() -> DataSource:
    directory = Path(str(resources.files("interpscan").joinpath(BUNDLED_DIR)))
    if not _has_idx_files(directory):
        raise DataError(
            f"the bundled subset is missing from the installation ({directory})", hint="reinstall interpscan"
        )
    return DataSource(
        "fashion-mnist-small",
        str(directory),
        ("train", "test"),
        STANDARD_NORMALIZATION["fashion-mnist-small"],
        _idx_reader(directory, FASHION_MNIST_FILES),
    )


# Names a tensor file may use for inputs and targets, tried in order.
INPUT_KEYS = ("inputs", "x", "data", "images", "features")
TARGET_KEYS = ("targets", "y", "labels", "target", "label")
TENSOR_FILE_SUFFIXES = (".pt", ".pth", ".npz", ".safetensors")


def _read_tensor_file(path: Path) -> dict[str, Any]:
    from .checkpoints import detect_format

    if path.suffix == ".npz":
        try:
            with path.open("rb") as fh:  # our own handle: np.load leaks its one when the zip is corrupt
                npz = np.load(fh, allow_pickle=False)
                if not isinstance(npz, np.lib.npyio.NpzFile):  # a single .npy array under an .npz name
                    raise DataError(
                        f"{path}: a single array, not an .npz archive", hint="save with np.savez(path, x=x, y=y)"
                    )
                return {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
        except DataError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: unreadable .npz file ({exc})") from exc
    try:
        fmt = detect_format(path)
    except CheckpointError as exc:
        raise DataError(exc.message, hint="expected a .pt/.pth (torch.save), .npz or .safetensors file") from exc
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable safetensors file ({exc})") from exc
    try:
        with path.open("rb") as fh:  # not the path: torch.load treats any path ending in .safetensors as one
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: unreadable tensor file ({exc})") from exc
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return dict(obj)


def _pick(entries: Mapping[str, Any], keys: Sequence[str], suffix: str = "") -> torch.Tensor | None:
    for key in keys:
        value = entries.get(key + suffix)
        if isinstance(value, torch.Tensor):
            return value
    return None


def _tensor_file_splits(path: Path, entries: Mapping[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Find (inputs, targets) per split: nested {"train": {...}}, suffixed x_train/y_train, or flat x/y."""
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split in ("train", "test"):
        nested = entries.get(split)
        if isinstance(nested, Mapping):
            x, y = _pick(nested, INPUT_KEYS), _pick(nested, TARGET_KEYS)
        else:
            x, y = _pick(entries, INPUT_KEYS, f"_{split}"), _pick(entries, TARGET_KEYS, f"_{split}")
        if x is not None and y is not None:
            splits[split] = (x, y)
    if not splits:
        x, y = _pick(entries, INPUT_KEYS), _pick(entries, TARGET_KEYS)
        if x is not None and y is not None:
            splits["test"] = (x, y)
    if not splits:
        raise DataError(
            f"{path}: no inputs/targets found (keys: {', '.join(sorted(entries))})",
            hint=f"name them one of {'/'.join(INPUT_KEYS)} and {'/'.join(TARGET_KEYS)}, "
            "optionally per split (x_train, y_test, or nested under train/test)",
        )
    for split, (x, y) in splits.items():
        if x.dim() == 0 or y.dim() != 1:
            raise DataError(
                f"{path}: {split} inputs have shape {list(x.shape)} and targets {list(y.shape)}; "
                "expected inputs (N, ...) and targets (N,)"
            )
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{path}: {split} has {x.shape[0]} inputs but {y.shape[0]} targets")
    return splits


def _open_tensor_file(path: Path) -> DataSource:
    if not path.is_file():
        raise DataError(f"data file not found: {path}", hint="check the path given to --data")
    splits = _tensor_file_splits(path, _read_tensor_file(path))
    return DataSource(path.name, str(path), tuple(splits), None, lambda split: splits[split])


NAMED_DATASETS = ("fashion-mnist", "fashion-mnist-small")


def open_data(spec: str, root: Path | None = None) -> DataSource:
    """Resolve ``--data``: a named dataset (see NAMED_DATASETS) or a tensor file (.pt, .npz, .safetensors).

    Raises:
        DataError: an unknown name, or files that cannot be found or read.
    """
    if spec == "fashion-mnist":
        return _open_fashion_mnist(root or default_root())
    if spec == "fashion-mnist-small":
        return _open_bundled()
    path = Path(spec)
    if path.suffix in TENSOR_FILE_SUFFIXES or path.exists():
        return _open_tensor_file(path)
    raise DataError(
        f"unknown dataset {spec!r}",
        hint=f"use one of {', '.join(NAMED_DATASETS)}, or a tensor file ({', '.join(TENSOR_FILE_SUFFIXES)})",
    )


def parse_normalize(text: str, source: DataSource) -> tuple[float, float] | None:
    """``auto`` -> the dataset's standard (mean, std) (None for tensor files); ``none``; or ``MEAN,STD``."""
    if text == "auto":
        return source.normalization
    if text == "none":
        return None
    parts = text.split(",")
    try:
        mean, std = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--normalize {text!r} is not auto, none or MEAN,STD", hint="e.g. 0.286,0.353") from None
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise UsageError(f"--normalize {text!r}: mean and std must be finite numbers")
    if std <= 0:
        raise UsageError(f"--normalize std must be positive, got {std}")
    return mean, std


def subset_indices(n: int, samples: int | None, seed: int) -> torch.Tensor | None:
    """A seeded subset of ``samples`` indices out of ``n``, sorted; None means all of them."""
    if samples is None or samples >= n:
        return None
    if samples <= 0:
        raise UsageError(f"--samples must be positive, got {samples}")
    gen = torch.Generator().manual_seed(seed)
    return torch.sort(torch.randperm(n, generator=gen)[:samples]).values


def load_split(
    source: DataSource,
    split: str,
    *,
    samples: int | None = None,
    seed: int = 0,
    normalization: tuple[float, float] | None = None,
) -> Split:
    """Read one split into memory: uint8 images become float32 in [0, 1], then (x − mean) / std.

    Args:
        samples: draw this many examples (seeded, without replacement); None for all.
        seed: seed of the subset draw.
        normalization: (mean, std) to apply, or None.
    """
    x, y = source.read(split)
    idx = subset_indices(int(y.shape[0]), samples, seed)
    if idx is not None:
        x, y = x[idx], y[idx]
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    if normalization is not None:
        mean, std = normalization
        x = (x - mean) / std
    if y.is_floating_point() or y.dtype == torch.bool:
        raise DataError(
            f"{source.name}: {split} targets are {str(y.dtype).removeprefix('torch.')}, expected integer class labels"
        )
    return Split(split, x.contiguous(), y.long().contiguous(), None if idx is None else tuple(int(i) for i in idx))

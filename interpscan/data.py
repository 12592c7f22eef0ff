"""Datasets as tensors: the standard ones from their original files, the bundled subset, and the user's own.

``open_data`` resolves ``--data`` into a DataSource (named datasets are found in their usual layouts or
downloaded); ``load_split`` reads one split into memory as float32 inputs and targets, optionally a seeded
subset, normalized. No DataLoader anywhere: the engine slices these tensors directly.
"""

from __future__ import annotations

import codecs
import difflib
import gzip
import importlib
import importlib.util
import io
import math
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .download import DownloadError, DownloadProgress, Resource, created_dirs, extract_folder, fetch, verify
from .errors import CheckpointError, DataError, UsageError
from .usercode import is_callable_spec, load_callable

# (mean, std) applied as (x − mean) / std to inputs in [0, 1]: one number each, or one per channel (dim 1).
Normalization = tuple[float | tuple[float, ...], float | tuple[float, ...]]
Reader = Callable[[str], tuple[torch.Tensor, torch.Tensor]]
Log = Callable[[str], None]

# Statistics of each dataset's training images in [0, 1], the normalization its users expect.
STANDARD_NORMALIZATION: dict[str, Normalization] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": (0.1307, 0.3081),
    "fashion-mnist": (0.2860, 0.3530),
    "fashion-mnist-small": (0.2860, 0.3530),
}

# The IDX file names shared by MNIST and Fashion-MNIST.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_FILES = IDX_FILES
# Where the Debian package dataset-fashion-mnist puts the files; searched last, and only under the default root.
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


# ------------------------------------------------------------------------------------- file formats


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


# ------------------------------------------------------------------------------------------ sources


@dataclass(frozen=True)
class DataSource:
    """Where a dataset lives and how to read each of its splits (raw, unnormalized)."""

    name: str
    location: str
    splits: tuple[str, ...]
    normalization: Normalization | None  # what ``--normalize auto`` applies; None: nothing
    reader: Reader = field(repr=False, compare=False)
    kind: str = "named"  # named, bundled, tensor file, factory, image folder
    classes: tuple[str, ...] | None = None  # class names, where the source has them (image folders)

    def read(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.splits:
            raise DataError(
                f"dataset {self.name} has no {split!r} split (it has: {', '.join(self.splits)})",
                hint=f"use --split {self.splits[0]}",
            )
        return self.reader(split)


@dataclass(frozen=True)
class Split:
    """One split in memory: inputs (N, …) float32, normalized; targets (N,) int64 class labels, or (N, …)
    float32 for regression losses."""

    name: str
    inputs: torch.Tensor
    targets: torch.Tensor
    indices: tuple[int, ...] | None  # the subset drawn by --samples, as indices into the full split

    def __len__(self) -> int:
        return int(self.targets.shape[0])


# ----------------------------------------------------------------------------------- named datasets

# Published files and md5 checksums, as listed by torchvision (torchvision/datasets/cifar.py and mnist.py) and
# the datasets' own pages; sizes in bytes as served by those hosts.
CIFAR10_ARCHIVE = Resource(
    "cifar-10-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    "c58f30108f718f92721af3b95e74349a",
    170_498_071,
)
CIFAR100_ARCHIVE = Resource(
    "cifar-100-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
    "eb9058c3a382ffc7106e4002c42a8d85",
    169_001_437,
)
# yann.lecun.com often refuses automated downloads, so PyTorch's mirror comes first.
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28_881),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1_648_877),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4_542),
}
FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)
FASHION_MNIST_GZ = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26_421_880),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", 29_515),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", 4_422_102),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", 5_148),
}


def _mirrored(mirrors: Sequence[str], files: Mapping[str, tuple[str, int]]) -> tuple[Resource, ...]:
    return tuple(Resource(name, tuple(m + name for m in mirrors), md5, size) for name, (md5, size) in files.items())


@dataclass(frozen=True)
class NamedDataset:
    """A standard dataset: which files make it up, where they are looked for, and where they come from."""

    name: str  # the --data value
    title: str  # its name in messages
    format: str  # "cifar" (python pickles in one tar.gz) or "idx" (four gzipped IDX files)
    folder: str  # the folder under the root that a download creates (for cifar, the archive's top folder)
    layouts: tuple[str, ...]  # folders under the root that may hold the files, in order ("" is the root)
    files: Mapping[str, tuple[str, ...]]  # split -> files (IDX: stems, .gz optional)
    resources: tuple[Resource, ...]  # what a download fetches: one archive, or the files themselves
    label_key: str = ""  # cifar: the labels' entry in each batch

    @property
    def download_size(self) -> int:
        return sum(r.size for r in self.resources)


NAMED: dict[str, NamedDataset] = {
    "cifar10": NamedDataset(
        "cifar10",
        "CIFAR-10",
        "cifar",
        "cifar-10-batches-py",
        ("", "cifar-10-batches-py"),
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        (CIFAR10_ARCHIVE,),
        "labels",
    ),
    "cifar100": NamedDataset(
        "cifar100",
        "CIFAR-100",
        "cifar",
        "cifar-100-python",
        ("", "cifar-100-python"),
        {"train": ("train",), "test": ("test",)},
        (CIFAR100_ARCHIVE,),
        "fine_labels",
    ),
    "mnist": NamedDataset(
        "mnist",
        "MNIST",
        "idx",
        "mnist",
        ("", "mnist", "MNIST/raw"),
        IDX_FILES,
        _mirrored(MNIST_MIRRORS, MNIST_FILES),
    ),
    "fashion-mnist": NamedDataset(
        "fashion-mnist",
        "Fashion-MNIST",
        "idx",
        "fashion-mnist",
        ("", "fashion-mnist", "FashionMNIST/raw"),
        IDX_FILES,
        _mirrored(FASHION_MNIST_MIRRORS, FASHION_MNIST_GZ),
    ),
}
NAMED_DATASETS = (*NAMED, "fashion-mnist-small")


def dataset_dirs(name: str, root: Path | None = None) -> list[Path]:
    """Where the files of named dataset ``name`` are looked for, in order.

    Under an explicit ``root`` only its layouts are searched; the system-wide Debian folder for Fashion-MNIST is
    searched only when no root was given (the default root), so ``--data-root`` always means "there".
    """
    spec = NAMED[name]
    base = default_root() if root is None else root
    dirs = [base / rel if rel else base for rel in spec.layouts]
    if root is None and name == "fashion-mnist":
        dirs.append(DEBIAN_FASHION_MNIST)
    return dirs


def fashion_mnist_dirs(root: Path | None = None) -> list[Path]:
    """Where the four Fashion-MNIST IDX files are looked for, in order."""
    return dataset_dirs("fashion-mnist", root)


def _idx_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _complete(spec: NamedDataset, directory: Path) -> bool:
    stems = [stem for files in spec.files.values() for stem in files]
    if spec.format == "idx":
        return all(_idx_file(directory, stem) is not None for stem in stems)
    return all((directory / stem).is_file() for stem in stems)


def _idx_reader(directory: Path, names: Mapping[str, tuple[str, ...]]) -> Reader:
    def find(stem: str) -> Path:
        path = _idx_file(directory, stem)
        if path is None:
            raise DataError(f"{directory}: missing {stem}.gz")
        return path

    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images_name, labels_name = names[split]
        images = read_idx(find(images_name))
        labels = read_idx(find(labels_name))
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{directory}: {split} has {images.shape[0]} images but {labels.shape[0]} labels")
        x = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, H, W) uint8
        y = torch.from_numpy(labels.astype(np.int64))
        return x, y

    return read


def _cifar_reader(spec: NamedDataset, load: Callable[[str], bytes], where: str) -> Reader:
    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [read_cifar_batch(load(stem), f"{where}/{stem}", spec.label_key) for stem in spec.files[split]]
        x = np.concatenate([b[0] for b in batches])  # (N, 3, 32, 32) uint8
        y = np.concatenate([b[1] for b in batches])
        return torch.from_numpy(x), torch.from_numpy(y)

    return read


def _source(spec: NamedDataset, directory: Path) -> DataSource:
    if spec.format == "idx":
        reader = _idx_reader(directory, spec.files)
    else:
        reader = _cifar_reader(spec, lambda stem: (directory / stem).read_bytes(), str(directory))
    return DataSource(spec.name, str(directory), tuple(spec.files), STANDARD_NORMALIZATION[spec.name], reader)


def _archive_source(spec: NamedDataset, archive: Path) -> DataSource:
    """Read the batches straight out of the archive (when its folder is not writable)."""

    def load(stem: str) -> bytes:
        try:
            with tarfile.open(archive, "r:*") as tar:
                member = tar.extractfile(f"{spec.folder}/{stem}")
                if member is None:
                    raise KeyError(stem)
                return member.read()
        except (KeyError, tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{archive}: cannot read {spec.folder}/{stem} ({exc})") from exc

    reader = _cifar_reader(spec, load, f"{archive}:{spec.folder}")
    return DataSource(spec.name, str(archive), tuple(spec.files), STANDARD_NORMALIZATION[spec.name], reader)


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def _by_hand_hint(spec: NamedDataset, base: Path) -> str:
    if spec.format == "cifar":
        archive = spec.resources[0]
        return (
            f"put {archive.filename} ({archive.url}, md5 {archive.md5}) or its extracted {spec.folder}/ "
            f"folder in {base}"
        )
    mirror = spec.resources[0].url.rsplit("/", 1)[0] + "/"
    names = ", ".join(r.filename for r in spec.resources)
    return f"put the four files {names} (from {mirror}) in {base / spec.folder}"


def _unpack(spec: NamedDataset, archive: Path, log: Log) -> DataSource:
    """Use an archive found in the root: check it is the published file, then extract it beside itself."""
    resource = spec.resources[0]
    problem = verify(archive, resource)
    if problem is not None:
        raise DataError(
            f"{archive} is not the published {resource.filename} ({problem})",
            hint=f"delete it, then run again to download it or put the right file there ({resource.url})",
        )
    if not os.access(archive.parent, os.W_OK):
        log(f"reading {spec.title} from {archive} (its folder is read-only, so it is not extracted)")
        return _archive_source(spec, archive)
    log(f"extracting {archive} into {archive.parent / spec.folder}")
    return _source(spec, extract_folder(archive, spec.folder, archive.parent))


def _download(spec: NamedDataset, base: Path, progress: DownloadProgress | None, log: Log) -> Path:
    """Fetch the dataset into ``base``; returns the folder holding its files. Leaves nothing behind on failure."""
    if spec.format == "cifar":
        resource = spec.resources[0]
        with created_dirs(base):
            archive = fetch(resource, base, progress=progress)
            try:
                folder = extract_folder(archive, spec.folder, base)
            except DataError:
                if not _complete(spec, base / spec.folder):
                    raise
                folder = base / spec.folder  # another run extracted it first: use theirs
            finally:
                archive.unlink(missing_ok=True)  # the extracted folder is what is kept
        log(f"downloaded {spec.title} from {resource.url} (md5 checked) and extracted it into {folder}")
        return folder
    directory = base / spec.folder
    with created_dirs(directory):
        missing = [r for r in spec.resources if _idx_file(directory, r.filename.removesuffix(".gz")) is None]
        for resource in missing:
            fetch(resource, directory, progress=progress)
    log(f"downloaded {spec.title} ({len(missing)} files, md5 checked) into {directory}")
    return directory


def open_named(
    name: str,
    root: Path | None = None,
    *,
    download: bool = False,
    progress: DownloadProgress | None = None,
    log: Log | None = None,
) -> DataSource:
    """Find a standard dataset's files in their usual layouts, else (with ``download``) fetch them.

    Args:
        name: one of NAMED (cifar10, cifar100, mnist, fashion-mnist).
        root: ``--data-root``; None means the default cache root (plus, for Fashion-MNIST, the Debian folder).
        download: fetch missing files from the official location into ``root``, checking size and md5.
        progress: download progress callback, (filename, bytes so far, total bytes).
        log: receives one-line messages about what is downloaded or extracted.

    Raises:
        DataError: the files are not there and ``download`` is off, or a found archive is not the published one.
        DownloadError: the files are not there and the download failed (offline, HTTP error, bad checksum).
    """
    spec = NAMED[name]
    say = log or (lambda _msg: None)
    base = default_root() if root is None else root
    dirs = dataset_dirs(name, root)
    for directory in dirs:
        if _complete(spec, directory):
            return _source(spec, directory)
    places = [str(d) for d in dirs]
    if spec.format == "cifar":
        archive = base / spec.resources[0].filename
        places.append(str(archive))
        if archive.is_file():
            return _unpack(spec, archive, say)
    scope = f" under --data-root {base}" if root is not None else ""  # an explicit root is searched alone
    if not download:
        extra = "; or use the bundled subset: --data fashion-mnist-small" if name == "fashion-mnist" else ""
        raise DataError(
            f"{spec.title} not found{scope} (looked in {', '.join(places)}) and --no-download is set",
            hint=f"drop --no-download to fetch it ({_mib(spec.download_size)}), or {_by_hand_hint(spec, base)}{extra}",
        )
    try:
        return _source(spec, _download(spec, base, progress, say))
    except DownloadError as exc:
        raise DownloadError(
            f"{spec.title} not found{scope or f' in {base}'} and the download failed: "
            + ("; ".join(exc.failures) or exc.message),
            hint=f"without network access, {_by_hand_hint(spec, base)}",
            failures=exc.failures,
        ) from exc


def _open_bundled() -> DataSource:
    directory = Path(str(resources.files("interpscan").joinpath(BUNDLED_DIR)))
    if not _complete(NAMED["fashion-mnist"], directory):
        raise DataError(
            f"the bundled subset is missing from the installation ({directory})", hint="reinstall interpscan"
        )
    return DataSource(
        "fashion-mnist-small",
        str(directory),
        ("train", "test"),
        STANDARD_NORMALIZATION["fashion-mnist-small"],
        _idx_reader(directory, IDX_FILES),
        kind="bundled",
    )


# ------------------------------------------------------------------------------------- tensor files

# Names a tensor file may use for inputs and targets, tried in order (unless --data-keys names them).
INPUT_KEYS = ("inputs", "x", "data", "images", "features")
TARGET_KEYS = ("targets", "y", "labels", "target", "label")
TENSOR_FILE_SUFFIXES = (".pt", ".pth", ".npz", ".safetensors")
SPLIT_NAMES = ("train", "test")


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


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return _from_numpy(value)
    return None


def _from_numpy(value: np.ndarray[Any, Any]) -> torch.Tensor:
    # torch warns about (and could write through) arrays that are read-only: copy those
    return torch.from_numpy(np.ascontiguousarray(value) if value.flags.writeable else value.copy())


def _to_tensor(value: Any) -> torch.Tensor:
    """A tensor, array or number (one example's input or target) as a tensor."""
    return _from_numpy(value) if isinstance(value, np.ndarray) else torch.as_tensor(value)


def _pick(entries: Mapping[str, Any], keys: Sequence[str], suffix: str = "") -> torch.Tensor | None:
    for key in keys:
        value = _as_tensor(entries.get(key + suffix))
        if value is not None:
            return value
    return None


def _check_pair(label: str, split: str, x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() == 0 or y.dim() == 0:
        raise DataError(
            f"{label}: {split} inputs have shape {list(x.shape)} and targets {list(y.shape)}; "
            "expected inputs (N, ...) and targets (N, ...)"
        )
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{label}: {split} has {x.shape[0]} inputs but {y.shape[0]} targets")


def _tensor_splits(
    label: str, entries: Mapping[str, Any], keys: tuple[str, str] | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Find (inputs, targets) per split: nested {"train": {...}}, suffixed x_train/y_train, or flat x/y.

    ``keys`` (from --data-keys) replaces the usual names for inputs and targets.
    """
    input_keys, target_keys = ((keys[0],), (keys[1],)) if keys else (INPUT_KEYS, TARGET_KEYS)
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split in SPLIT_NAMES:
        nested = entries.get(split)
        if isinstance(nested, Mapping):
            x, y = _pick(nested, input_keys), _pick(nested, target_keys)
        else:
            x, y = _pick(entries, input_keys, f"_{split}"), _pick(entries, target_keys, f"_{split}")
        if x is not None and y is not None:
            splits[split] = (x, y)
    if not splits:
        x, y = _pick(entries, input_keys), _pick(entries, target_keys)
        if x is not None and y is not None:
            splits["test"] = (x, y)
    if not splits:
        if keys:
            hint = (
                f"--data-keys {','.join(keys)}: expected entries {keys[0]!r} and {keys[1]!r}, "
                f"optionally per split ({keys[0]}_train, {keys[1]}_test, or nested under train/test)"
            )
        else:
            hint = (
                f"name them one of {'/'.join(INPUT_KEYS)} and {'/'.join(TARGET_KEYS)}, optionally per split "
                "(x_train, y_test, or nested under train/test), or pass --data-keys INPUTS,TARGETS"
            )
        raise DataError(f"{label}: no inputs/targets found (keys: {', '.join(sorted(map(str, entries)))})", hint=hint)
    for split, (x, y) in splits.items():
        _check_pair(label, split, x, y)
    return splits


def _open_tensor_file(path: Path, keys: tuple[str, str] | None) -> DataSource:
    if not path.is_file():
        raise DataError(f"data file not found: {path}", hint="check the path given to --data")
    splits = _tensor_splits(str(path), _read_tensor_file(path), keys)
    return DataSource(path.name, str(path), tuple(splits), None, lambda split: splits[split], kind="tensor file")


# ---------------------------------------------------------------------------------------- factories


def _stack_dataset(label: str, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) from a map-style dataset of (input, target) pairs; a TensorDataset's tensors directly."""
    from torch.utils.data import TensorDataset

    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[0], dataset.tensors[1]
    n = len(dataset)
    if n == 0:
        raise DataError(f"{label}: the dataset is empty")
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{label}: item {i} is a {type(item).__name__}, expected an (input, target) pair")
        xs.append(_to_tensor(item[0]))
        ys.append(_to_tensor(item[1]))
    for what, values in (("input", xs), ("target", ys)):
        odd = next((i for i, v in enumerate(values) if v.shape != values[0].shape), None)
        if odd is not None:
            raise DataError(
                f"{label}: {what}s of different shapes: item 0 is {list(values[0].shape)}, "
                f"item {odd} is {list(values[odd].shape)}",
                hint="return tensors of one shape (resize or pad in the factory)",
            )
    return torch.stack(xs), torch.stack(ys)


def _is_dataset(obj: Any) -> bool:
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, (Mapping, str, bytes))


def _pair(label: str, split: str, value: Any, keys: tuple[str, str] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as a factory returned it: (x, y), a Dataset, or a dict with inputs and targets."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        x, y = _as_tensor(value[0]), _as_tensor(value[1])
        if x is not None and y is not None:
            _check_pair(label, split, x, y)
            return x, y
    if isinstance(value, Mapping):
        found = _tensor_splits(f"{label} [{split}]", value, keys)
        if "test" in found and len(found) == 1:
            return found["test"]
    if _is_dataset(value):
        x, y = _stack_dataset(f"{label} [{split}]", value)
        _check_pair(label, split, x, y)
        return x, y
    raise DataError(
        f"{label}: split {split!r} is a {type(value).__name__}",
        hint="return (inputs, targets) tensors, a Dataset of (input, target) pairs, or a dict of splits of those",
    )


def factory_splits(
    label: str, obj: Any, keys: tuple[str, str] | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """What a ``--data`` factory returned, as splits: (inputs, targets) or a Dataset (the ``test`` split), a dict
    of tensors laid out as in a tensor file, or a dict of splits (any names) holding either.

    Raises:
        DataError: anything else, or inputs and targets that do not pair up.
    """
    if isinstance(obj, Mapping):
        if obj and all(_as_tensor(v) is not None for v in obj.values()):
            return _tensor_splits(label, obj, keys)
        if obj and all(isinstance(k, str) and _as_tensor(v) is None for k, v in obj.items()):
            return {str(k): _pair(label, str(k), v, keys) for k, v in obj.items()}
        raise DataError(
            f"{label}: returned a dict mixing tensors and splits (keys: {', '.join(sorted(map(str, obj)))})"
            if obj
            else f"{label}: returned an empty dict",
            hint="return {'train': (x, y), 'test': (x, y)} or {'x': x, 'y': y}",
        )
    return {"test": _pair(label, "test", obj, keys)}


def _open_factory(spec: str, keys: tuple[str, str] | None) -> DataSource:
    factory = load_callable(spec, flag="--data")
    try:
        obj = factory()
    except Exception as exc:
        raise DataError(f"--data {spec}: the factory raised {type(exc).__name__}: {exc}") from exc
    splits = factory_splits(f"--data {spec}", obj, keys)
    return DataSource(spec, spec, tuple(splits), None, lambda split: splits[split], kind="factory")


# ------------------------------------------------------------------------------------- image folders

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff"})
IMAGE_SPLIT_NAMES = frozenset({"train", "test", "val", "valid", "validation"})


def _subdirs(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _image_reader(root: Path, split_dirs: Mapping[str, Path], classes: Sequence[str]) -> Reader:
    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        image = importlib.import_module("PIL.Image")  # optional: checked by _open_image_folder

        files: list[tuple[Path, int]] = []
        for index, name in enumerate(classes):
            folder = split_dirs[split] / name
            if folder.is_dir():
                files += [(p, index) for p in _images(folder)]
        opened = []
        for path, _ in files:
            try:
                with image.open(path) as im:  # reads the header only
                    opened.append((im.mode, im.size))
            except OSError as exc:  # UnidentifiedImageError is an OSError
                raise DataError(f"{path}: not an image Pillow can read ({exc})") from exc
        grey = all(mode in ("L", "1", "I;16", "I", "F") for mode, _ in opened)
        sizes = sorted({size for _, size in opened})
        if len(sizes) > 1:
            shown = ", ".join(f"{w}×{h}" for w, h in sizes[:4]) + (", …" if len(sizes) > 4 else "")
            raise DataError(
                f"{root}: images of {len(sizes)} sizes in the {split} split ({shown})",
                hint="resize them to one size first",
            )
        arrays: list[np.ndarray[Any, Any]] = []
        for path, _ in files:
            with image.open(path) as im:
                arrays.append(np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8))
        x = torch.from_numpy(np.stack(arrays))  # (N, H, W) or (N, H, W, 3)
        x = x.unsqueeze(1) if grey else x.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W) uint8
        y = torch.tensor([index for _, index in files], dtype=torch.int64)
        return x, y

    return read


def _open_image_folder(path: Path) -> DataSource:
    """A folder with one sub-folder of images per class (sorted names are class 0, 1, …): the ``test`` split;
    or sub-folders train/, test/ (val/…) that each hold such class folders."""
    subdirs = _subdirs(path)
    if subdirs and all(d.name in IMAGE_SPLIT_NAMES for d in subdirs):
        split_dirs = {d.name: d for d in subdirs}
    else:
        split_dirs = {"test": path}
    classes = sorted({c.name for d in split_dirs.values() for c in _subdirs(d) if _images(c)})
    counts = {s: sum(len(_images(d / c)) for c in classes if (d / c).is_dir()) for s, d in split_dirs.items()}
    if not classes or not any(counts.values()):
        raise DataError(
            f"{path}: no images in class sub-folders (expected {path}/CLASS/IMAGE, e.g. {path}/cat/001.png)",
            hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}",
        )
    try:
        importlib.import_module("PIL.Image")
    except ImportError:
        raise DataError(
            f"{path} is an image folder, and reading images needs Pillow, which is not installed",
            hint="pip install pillow (into the environment interpscan runs in), or save the images as a tensor file",
        ) from None
    splits = tuple(s for s in sorted(split_dirs, key=lambda s: (s != "train", s)) if counts[s])
    return DataSource(
        path.name or str(path),
        str(path),
        splits,
        None,
        _image_reader(path, split_dirs, classes),
        kind="image folder",
        classes=tuple(classes),
    )


# ------------------------------------------------------------------------------------------ open_data


def open_data(
    spec: str,
    root: Path | None = None,
    *,
    download: bool = False,
    keys: tuple[str, str] | None = None,
    progress: DownloadProgress | None = None,
    log: Log | None = None,
) -> DataSource:
    """Resolve ``--data``: a named dataset (NAMED_DATASETS), a tensor file (.pt, .pth, .npz, .safetensors), a
    factory (``path/to/file.py:fn`` or ``package.module:fn``), or an image folder.

    Args:
        root: ``--data-root`` for named datasets; None for the default cache root.
        download: fetch a named dataset that is not found (see ``open_named``).
        keys: ``--data-keys`` (inputs, targets) for tensor files and factories.
        progress, log: download progress and messages.

    Raises:
        DataError: an unknown name, files that cannot be found or read, or a download that failed.
        UsageError: ``keys`` with a source that has no keys.
    """
    if spec in NAMED or spec == "fashion-mnist-small":
        if keys is not None:
            raise UsageError(f"--data-keys applies to tensor files and factories, not to --data {spec}")
        return (
            _open_bundled()
            if spec == "fashion-mnist-small"
            else open_named(spec, root, download=download, progress=progress, log=log)
        )
    path = Path(spec)
    if path.is_dir():
        if keys is not None:
            raise UsageError(f"--data-keys applies to tensor files and factories, not to the image folder {spec}")
        return _open_image_folder(path)
    if is_callable_spec(spec):
        return _open_factory(spec, keys)
    if path.suffix in TENSOR_FILE_SUFFIXES or path.exists():
        return _open_tensor_file(path, keys)
    close = difflib.get_close_matches(spec.lower(), NAMED_DATASETS, n=1, cutoff=0.6)
    raise DataError(
        f"unknown dataset {spec!r}" + (f"; did you mean {close[0]}?" if close else ""),
        hint=f"use one of {', '.join(NAMED_DATASETS)}, a tensor file ({', '.join(TENSOR_FILE_SUFFIXES)}), "
        "an image folder, or path/to/file.py:factory",
    )


# ------------------------------------------------------------------------------------------ options


def _floats(text: str, what: str, original: str) -> float | tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(
            f"--normalize {original!r}: {what} {text.strip()!r} is not a number or a /-separated list",
            hint="e.g. 0.286,0.353 or per channel 0.4914/0.4822/0.4465,0.2470/0.2435/0.2616",
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"--normalize {original!r}: mean and std must be finite numbers")
    return values[0] if len(values) == 1 else values


def parse_normalize(text: str, source: DataSource) -> Normalization | None:
    """``auto`` -> the dataset's standard (mean, std) (None for the user's own data); ``none``; or ``MEAN,STD``
    where each is a number or a per-channel list separated by ``/`` (``0.49/0.48/0.45,0.25/0.24/0.26``).

    Raises:
        UsageError: anything else, a non-positive std, or per-channel lists of different lengths.
    """
    if text == "auto":
        return source.normalization
    return check_normalize(text)


def check_normalize(text: str) -> Normalization | None:
    """``--normalize`` checked without data: None for ``auto`` (resolved against the data later) and ``none``,
    else the (mean, std) it gives.

    Raises:
        UsageError: see parse_normalize.
    """
    if text in ("auto", "none"):
        return None
    parts = text.split(",")
    if len(parts) != 2:
        raise UsageError(
            f"--normalize {text!r} is not auto, none or MEAN,STD",
            hint="e.g. 0.286,0.353 or per channel 0.4914/0.4822/0.4465,0.2470/0.2435/0.2616",
        )
    mean, std = _floats(parts[0], "mean", text), _floats(parts[1], "std", text)
    stds = std if isinstance(std, tuple) else (std,)
    if any(s <= 0 for s in stds):
        raise UsageError(f"--normalize std must be positive, got {parts[1].strip()}")
    if isinstance(mean, tuple) and isinstance(std, tuple) and len(mean) != len(std):
        raise UsageError(f"--normalize {text!r}: {len(mean)} means but {len(std)} stds")
    return mean, std


def parse_samples(text: str | None) -> int | None:
    """``--samples``: a positive count, or ``all`` (and None) for every example."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"--samples {text!r} is not a count or all", hint="e.g. --samples 2000") from None
    if n <= 0:
        raise UsageError(f"--samples must be positive, got {n}", hint="e.g. --samples 2000, or all")
    return n


def parse_data_keys(text: str | None) -> tuple[str, str] | None:
    """``--data-keys INPUTS,TARGETS``: the names of the inputs and targets in a tensor file or factory dict."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--data-keys {text!r} is not INPUTS,TARGETS", hint="e.g. --data-keys images,labels")
    return parts[0], parts[1]


def subset_indices(n: int, samples: int | None, seed: int) -> torch.Tensor | None:
    """A seeded subset of ``samples`` indices out of ``n``, sorted; None means all of them."""
    if samples is None or samples >= n:
        return None
    if samples <= 0:
        raise UsageError(f"--samples must be positive, got {samples}")
    gen = torch.Generator().manual_seed(seed)
    return torch.sort(torch.randperm(n, generator=gen)[:samples]).values


def _normalize(x: torch.Tensor, normalization: Normalization, where: str) -> torch.Tensor:
    mean, std = (torch.tensor(v, dtype=torch.float32).reshape(-1) for v in normalization)
    channels = max(mean.numel(), std.numel())
    if channels > 1:
        if x.dim() < 2 or x.shape[1] != channels:
            raise DataError(
                f"--normalize has {channels} values per channel but the {where} inputs have shape "
                f"{list(x.shape)} (channels are dimension 1)",
                hint="give one mean and std, or one per channel",
            )
        shape = (1, channels, *([1] * (x.dim() - 2)))
        mean = mean.expand(channels).reshape(shape) if mean.numel() == 1 else mean.reshape(shape)
        std = std.expand(channels).reshape(shape) if std.numel() == 1 else std.reshape(shape)
    return (x - mean) / std


def load_split(
    source: DataSource,
    split: str,
    *,
    samples: int | None = None,
    seed: int = 0,
    normalization: Normalization | None = None,
    class_targets: bool = True,
) -> Split:
    """Read one split into memory: uint8 images become float32 in [0, 1], then (x − mean) / std.

    Args:
        samples: draw this many examples (seeded, without replacement); None for all.
        seed: seed of the subset draw.
        normalization: (mean, std) to apply, each one number or one per channel; or None.
        class_targets: targets must be integer class labels (N,) (cross-entropy); otherwise floating targets
            of any shape are kept, as float32 (regression and custom losses).

    Raises:
        DataError: targets that are not class labels when ``class_targets``; per-channel normalization that does
            not fit the inputs.
    """
    x, y = source.read(split)
    idx = subset_indices(int(y.shape[0]), samples, seed)
    if idx is not None:
        x, y = x[idx], y[idx]
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    if normalization is not None:
        x = _normalize(x, normalization, f"{source.name} {split}")
    if class_targets:
        if y.is_floating_point() or y.dtype == torch.bool:
            raise DataError(
                f"{source.name}: {split} targets are {str(y.dtype).removeprefix('torch.')}, "
                "expected integer class labels",
                hint="for regression targets use --loss mse",
            )
        if y.dim() != 1:
            raise DataError(
                f"{source.name}: {split} targets have shape {list(y.shape)}; class labels have shape (N,)",
                hint="for regression targets use --loss mse",
            )
        y = y.long()
    else:
        y = y.float() if y.is_floating_point() or y.dtype == torch.bool else y.long()
    return Split(split, x.contiguous(), y.contiguous(), None if idx is None else tuple(int(i) for i in idx))

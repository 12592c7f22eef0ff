"""The standard datasets: where their files are looked for, where they come from (downloads with size and
md5 checks), how they are read, and the bundled Fashion-MNIST subset."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..download import DownloadError, DownloadProgress, Resource, created_dirs, extract_folder, fetch, verify
from ..errors import DataError, opt
from ..files import check_regular
from ..values import Normalization
from .decoders import read_cifar_batch, read_idx
from .source import DataSource, Log, Reader

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


def default_root() -> Path:
    """The cache directory: ``$XDG_CACHE_HOME/interpscan``, else ``~/.cache/interpscan``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "interpscan"


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
        # not only regular files: a FIFO or a broken link is refused by name when read, not passed over
        if (candidate.exists() and not candidate.is_dir()) or candidate.is_symlink():
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
        images_path, labels_path = find(images_name), find(labels_name)
        images, labels = read_idx(images_path), read_idx(labels_path)
        for path, arr, ndim in ((images_path, images, 3), (labels_path, labels, 1)):
            if arr.dtype != np.uint8 or arr.ndim != ndim:
                # e.g. float labels, which would be truncated to classes without a word
                raise DataError(
                    f"{path}: IDX data of {arr.dtype.name} {list(arr.shape)}; expected uint8 "
                    + ("images (N, H, W)" if ndim == 3 else "labels (N,)"),
                    hint="the file is not the dataset's original; delete it and fetch it again",
                )
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


def _read_regular(path: Path) -> bytes:
    check_regular(path, DataError, what="dataset file")
    return path.read_bytes()


def _source(spec: NamedDataset, directory: Path) -> DataSource:
    if spec.format == "idx":
        reader = _idx_reader(directory, spec.files)
    else:
        reader = _cifar_reader(spec, lambda stem: _read_regular(directory / stem), str(directory))
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
    scope = f" under {opt('data_root', str(base))}" if root is not None else ""  # an explicit root is searched alone
    if not download:
        extra = f"; or use the bundled subset: {opt('data', 'fashion-mnist-small')}" if name == "fashion-mnist" else ""
        raise DataError(
            f"{spec.title} not found{scope} (looked in {', '.join(places)}) and {opt('download', False)} is set",
            hint=f"drop {opt('download', False)} to fetch it ({_mib(spec.download_size)}), or "
            f"{_by_hand_hint(spec, base)}{extra}",
        )
    try:
        return _source(spec, _download(spec, base, progress, say))
    except DownloadError as exc:
        raise DownloadError(
            f"{spec.title} not found{scope or f' in {base}'} and the download failed: "
            + ("; ".join(exc.failures) or exc.text),
            hint=f"without network access, {_by_hand_hint(spec, base)}",
            failures=exc.failures,
        ) from exc


def open_bundled() -> DataSource:
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

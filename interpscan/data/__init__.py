"""Datasets: the standard ones from their original files (found or downloaded), the bundled subset, and the
user's own (tensor files, factories, image folders).

``open_data`` resolves ``--data`` into a DataSource; ``load_split`` reads one split into memory as a Split
(float32 inputs in [0, 1] normalized, integer inputs as they are), optionally a seeded subset.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from ..download import DownloadProgress
from ..errors import DataError, UsageError, opt
from ..usercode import is_callable_spec
from ..values import Normalization
from .batches import Batches, Split, Stream, as_splits
from .decoders import read_cifar_batch, read_idx
from .images import ImageStream, Transform, open_imagenet
from .mapped import TensorStream
from .named import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_FILES,
    NAMED,
    NAMED_DATASETS,
    STANDARD_NORMALIZATION,
    dataset_dirs,
    default_root,
    fashion_mnist_dirs,
    open_bundled,
    open_named,
)
from .source import (
    DataSource,
    Log,
    load_split,
    parse_normalize,
    subset,
    subset_indices,
)
from .user import TENSOR_FILE_SUFFIXES, factory_splits, open_factory, open_image_folder, open_tensor_file

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "FASHION_MNIST_FILES",
    "NAMED",
    "NAMED_DATASETS",
    "STANDARD_NORMALIZATION",
    "Batches",
    "DataSource",
    "ImageStream",
    "Normalization",
    "Split",
    "Stream",
    "TensorStream",
    "Transform",
    "as_splits",
    "dataset_dirs",
    "default_root",
    "factory_splits",
    "fashion_mnist_dirs",
    "load_split",
    "open_data",
    "open_named",
    "parse_normalize",
    "read_cifar_batch",
    "read_idx",
    "subset",
    "subset_indices",
]


def open_data(
    spec: str,
    root: Path | None = None,
    *,
    download: bool = False,
    keys: tuple[str, str] | None = None,
    progress: DownloadProgress | None = None,
    log: Log | None = None,
) -> DataSource:
    """Resolve ``--data``: a named dataset (NAMED_DATASETS; imagenet is found, never downloaded), a tensor file
    (.pt, .pth, .npz, .safetensors; memory-mapped when large, data/mapped.py), a factory (``path/to/file.py:fn``
    or ``package.module:fn``), or an image folder.

    Args:
        root: ``--data-root`` for named datasets; None for the default cache root.
        download: fetch a named dataset that is not found (see ``open_named``).
        keys: ``--data-keys`` (inputs, targets) for tensor files and factories.
        progress, log: download progress and messages.

    Raises:
        DataError: an unknown name, files that cannot be found or read, or a download that failed.
        UsageError: ``keys`` with a source that has no keys.
    """
    if not spec.strip():
        raise UsageError(
            f"{opt('data')} is empty",
            hint="name a dataset (e.g. fashion-mnist-small), a tensor file, a folder or a factory",
        )
    if spec == "imagenet":
        if keys is not None:
            raise UsageError(f"{opt('data_keys')} applies to tensor files and factories, not to {opt('data', spec)}")
        return open_imagenet(root)
    if spec in NAMED or spec == "fashion-mnist-small":
        if keys is not None:
            raise UsageError(f"{opt('data_keys')} applies to tensor files and factories, not to {opt('data', spec)}")
        return (
            open_bundled()
            if spec == "fashion-mnist-small"
            else open_named(spec, root, download=download, progress=progress, log=log)
        )
    path = Path(spec)
    if path.is_dir() and path.suffix in TENSOR_FILE_SUFFIXES:
        raise DataError(
            f"{path} is a directory, not a data file",
            hint="pass the file inside it (a folder of images must not be named like a tensor file)",
        )
    if path.is_dir():
        if keys is not None:
            raise UsageError(
                f"{opt('data_keys')} applies to tensor files and factories, not to the image folder {spec}"
            )
        return open_image_folder(path)
    if is_callable_spec(spec):
        return open_factory(spec, keys)
    if path.suffix in TENSOR_FILE_SUFFIXES or path.exists() or path.is_symlink():
        return open_tensor_file(path, keys, log)
    close = difflib.get_close_matches(spec.lower(), NAMED_DATASETS, n=1, cutoff=0.6)
    raise DataError(
        f"unknown dataset {spec!r}" + (f"; did you mean {close[0]}?" if close else ""),
        hint=f"use one of {', '.join(NAMED_DATASETS)}, a tensor file ({', '.join(TENSOR_FILE_SUFFIXES)}), "
        "an image folder, or path/to/file.py:factory",
    )

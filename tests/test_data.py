"""Tests for interpscan.data: IDX and CIFAR files in their original formats, dataset discovery and downloads (from
a local server), splits, normalization, tensor files, factories and image folders."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import re
import socket
import struct
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from interpscan import data, values
from interpscan.data import (
    DataSource,
    Split,
    default_root,
    fashion_mnist_dirs,
    load_split,
    named,
    open_data,
    parse_normalize,
    read_idx,
    subset_indices,
)
from interpscan.download import DownloadError, Resource
from interpscan.errors import DataError, UsageError
from interpscan.options import flags

# IDX type codes (third byte of the magic number) of LeCun's format.
IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def idx_bytes(arr: np.ndarray[Any, Any], dtype: str | type = np.uint8) -> bytes:
    """The IDX encoding: magic 0x0000TTDD (type, ndim), big-endian uint32 dims, big-endian data."""
    dt = np.dtype(dtype).newbyteorder(">") if np.dtype(dtype).itemsize > 1 else np.dtype(dtype)
    magic = (IDX_CODES[dt] << 8) | arr.ndim
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(dt).tobytes()


def write_idx(path: Path, arr: np.ndarray[Any, Any], *, compress: bool = True) -> Path:
    raw = idx_bytes(arr)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw, mtime=0))
    else:
        path.write_bytes(raw)
    return path


def fake_fashion_mnist(directory: Path, *, n_train: int = 6, n_test: int = 4, compress: bool = True) -> dict[str, Any]:
    """The four Fashion-MNIST files for tiny 5×3 images; returns what was written per split."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 5, 3), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        images_name, labels_name = data.FASHION_MNIST_FILES[split]
        write_idx(directory / images_name, images, compress=compress)
        write_idx(directory / labels_name, labels, compress=compress)
        written[split] = (images, labels)
    return written


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    # torch.testing.assert_close costs half a second of imports on first use; this is all we need of it.
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6), (got, want)


@pytest.fixture(autouse=True)
def no_system_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Tests must not depend on the machine having the Debian package installed."""
    missing = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(named, "DEBIAN_FASHION_MNIST", missing)
    return missing


# ---------------------------------------------------------------------------------------------- IDX


def test_idx_golden_bytes(tmp_path: Path) -> None:
    # Two 2×3 uint8 images, written out by hand: magic 0x00000803, dims 2, 2, 3, then the pixels.
    raw = bytes.fromhex("00000803 00000002 00000002 00000003") + bytes(range(1, 13))
    (tmp_path / "images").write_bytes(raw)
    arr = read_idx(tmp_path / "images")
    assert arr.dtype == np.uint8
    assert arr.tolist() == [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]]
    # Labels: magic 0x00000801, one dim.
    (tmp_path / "labels").write_bytes(bytes.fromhex("00000801 00000003 09 00 05"))
    assert read_idx(tmp_path / "labels").tolist() == [9, 0, 5]


def test_idx_helper_writes_the_original_format() -> None:
    assert idx_bytes(np.zeros((1, 2, 2), np.uint8))[:16] == bytes.fromhex("00000803 00000001 00000002 00000002")
    assert idx_bytes(np.zeros(7, np.uint8))[:8] == bytes.fromhex("00000801 00000007")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_dtypes(tmp_path: Path, dtype: str | type, compress: bool) -> None:
    values = (
        np.array([[0, 1, -2, 100], [7, -128, 127, 3]]) if np.dtype(dtype).kind != "u" else np.arange(8).reshape(2, 4)
    )
    if np.dtype(dtype).kind == "f":
        values = values + 0.25
    raw = idx_bytes(values, dtype)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    arr = read_idx(path)
    assert arr.dtype == np.dtype(dtype).newbyteorder("=")
    assert arr.dtype.isnative
    assert arr.shape == (2, 4)
    np.testing.assert_array_equal(arr, values.astype(dtype))


def test_read_idx_zero_dimensional(tmp_path: Path) -> None:
    (tmp_path / "scalar").write_bytes(bytes.fromhex("00000c00 0000002a"))
    arr = read_idx(tmp_path / "scalar")
    assert arr.shape == ()
    assert int(arr) == 42


def test_gzip_is_detected_from_content(tmp_path: Path) -> None:
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "images-idx3-ubyte"  # no .gz suffix, gzip inside
    path.write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(path), images)


def corrupt_gzip(raw: bytes) -> bytes:
    packed = bytearray(gzip.compress(raw, mtime=0))
    for i in range(12, 20):  # the deflate stream, past the 10-byte header
        packed[i] ^= 0xFF
    return bytes(packed)


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not an IDX file (bad magic number)"),
        (b"\x00\x00", "not an IDX file (bad magic number)"),
        (b"\x01" + GOOD[1:], "not an IDX file (bad magic number)"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "not an IDX file (bad magic number)"),  # unknown type code
        (b"P5\n28 28\n255\n" + bytes(784), "not an IDX file (bad magic number)"),  # a PGM image
        (GOOD[:10], "truncated IDX header"),
        (GOOD[:-1], "IDX header promises 24 bytes of data, file has 23"),
        (GOOD + b"\x00", "IDX header promises 24 bytes of data, file has 25"),
        (gzip.compress(GOOD, mtime=0)[:-12], "corrupt gzip data"),  # truncated
        (corrupt_gzip(GOOD), "corrupt gzip data"),  # damaged deflate stream
        (gzip.compress(GOOD[:-1], mtime=0), "IDX header promises"),  # good gzip, truncated IDX inside
    ],
)
def test_malformed_idx(tmp_path: Path, raw: bytes, message: str) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(raw)
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert str(exc.value).startswith(f"{path}: {message}")


# ------------------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("layout", [(), ("fashion-mnist",), ("FashionMNIST", "raw")])
@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_layouts(tmp_path: Path, layout: tuple[str, ...], compress: bool) -> None:
    root = tmp_path / "root"
    directory = root.joinpath(*layout)
    written = fake_fashion_mnist(directory, compress=compress)
    source = open_data("fashion-mnist", root)
    assert source.name == "fashion-mnist"
    assert source.location == str(directory)
    assert source.splits == ("train", "test")
    assert source.normalization == (0.2860, 0.3530)
    for split, (images, labels) in written.items():
        x, y = source.read(split)
        assert x.dtype == torch.uint8
        assert x.shape == (len(labels), 1, 5, 3)
        assert y.dtype == torch.int64
        assert torch.equal(x[:, 0], torch.from_numpy(images))
        assert y.tolist() == labels.tolist()


def test_fashion_mnist_first_folder_wins(tmp_path: Path) -> None:
    fake_fashion_mnist(tmp_path, n_train=3)
    fake_fashion_mnist(tmp_path / "fashion-mnist", n_train=5)
    source = open_data("fashion-mnist", tmp_path)
    assert source.location == str(tmp_path)
    assert len(source.read("train")[1]) == 3


def test_fashion_mnist_system_folder_is_searched_last(
    tmp_path: Path, no_system_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_fashion_mnist(no_system_dataset)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "cache" / "interpscan"
    assert fashion_mnist_dirs() == [
        root,
        root / "fashion-mnist",
        root / "FashionMNIST" / "raw",
        no_system_dataset,
    ]
    assert open_data("fashion-mnist").location == str(no_system_dataset)


def test_explicit_root_is_searched_alone(tmp_path: Path, no_system_dataset: Path) -> None:
    """An explicit --data-root that lacks the files is an error naming it, never a silent fallback."""
    fake_fashion_mnist(no_system_dataset)
    root = tmp_path / "no-such-root"
    assert fashion_mnist_dirs(root) == [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    with pytest.raises(DataError) as exc:
        open_data("fashion-mnist", root)
    assert str(exc.value).startswith(f"Fashion-MNIST not found under data_root='{root}' (looked in {root}, ")
    assert str(no_system_dataset) not in str(exc.value)
    assert not root.exists()


def test_fashion_mnist_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_root() == tmp_path / "cache" / "interpscan"
    fake_fashion_mnist(tmp_path / "cache" / "interpscan" / "fashion-mnist")
    assert open_data("fashion-mnist").location == str(tmp_path / "cache" / "interpscan" / "fashion-mnist")


def test_default_root_without_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_root() == tmp_path / ".cache" / "interpscan"


def test_fashion_mnist_not_found(tmp_path: Path) -> None:
    root = tmp_path / "root"
    written = fake_fashion_mnist(root / "fashion-mnist")
    assert written  # three of four files are not enough
    (root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as exc:
        open_data("fashion-mnist", root)
    folders = [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    assert str(exc.value) == (
        f"Fashion-MNIST not found under data_root='{root}' (looked in {', '.join(map(str, folders))}) "
        "and download=False is set"
    )
    assert exc.value.hint is not None
    assert exc.value.hint.startswith("drop download=False to fetch it (29 MiB), or put the four files ")
    assert f"in {root / 'fashion-mnist'}" in exc.value.hint
    assert "data='fashion-mnist-small'" in exc.value.hint
    assert "--data fashion-mnist-small" in str(exc.value.rendered(flags())[1])


def test_fashion_mnist_with_mismatched_counts(tmp_path: Path) -> None:
    fake_fashion_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    source = open_data("fashion-mnist", tmp_path)
    with pytest.raises(DataError, match="train has 6 images but 5 labels"):
        source.read("train")
    assert len(source.read("test")[1]) == 4


def test_unknown_split(tmp_path: Path) -> None:
    fake_fashion_mnist(tmp_path)
    with pytest.raises(DataError) as exc:
        open_data("fashion-mnist", tmp_path).read("valid")
    assert str(exc.value) == "dataset fashion-mnist has no 'valid' split (it has: train, test)"
    assert exc.value.hint == "use splits='train'"


# ------------------------------------------------------------------------------------ bundled subset


@pytest.fixture(scope="module")
def bundled() -> tuple[DataSource, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    source = open_data("fashion-mnist-small")
    return source, {split: source.read(split) for split in source.splits}


def test_bundled_subset(bundled: tuple[DataSource, dict[str, tuple[torch.Tensor, torch.Tensor]]]) -> None:
    source, splits = bundled
    assert source.name == "fashion-mnist-small"
    assert source.splits == ("train", "test")
    assert source.normalization == (0.2860, 0.3530)
    assert (Path(source.location) / "LICENSE").is_file()
    for split, n in (("train", 2500), ("test", 1000)):
        x, y = splits[split]
        assert x.shape == (n, 1, 28, 28)
        assert x.dtype == torch.uint8
        assert y.shape == (n,)
        assert y.dtype == torch.int64
        assert torch.bincount(y).tolist() == [n // 10] * 10
        # Real images: the mean pixel sits near Fashion-MNIST's 0.286, and both ends of the range occur.
        assert abs(float(x.float().mean()) / 255 - 0.286) < 0.01
        assert (int(x.min()), int(x.max())) == (0, 255)


def test_bundled_does_not_depend_on_root(tmp_path: Path) -> None:
    assert open_data("fashion-mnist-small", tmp_path).location == open_data("fashion-mnist-small").location


def test_bundled_auto_normalization(bundled: tuple[DataSource, dict[str, tuple[torch.Tensor, torch.Tensor]]]) -> None:
    source, _ = bundled
    split = load_split(source, "train", normalization=parse_normalize("auto", source))
    assert split.inputs.dtype == torch.float32
    assert abs(float(split.inputs.mean())) < 0.02
    assert abs(float(split.inputs.std()) - 1) < 0.03


# ----------------------------------------------------------------------------------------- load_split


def make_source(x: torch.Tensor, y: torch.Tensor, normalization: tuple[float, float] | None = None) -> DataSource:
    return DataSource("toy", "memory", ("test",), normalization, lambda split: (x, y))


def test_load_split_scales_uint8_to_unit_range() -> None:
    x = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    split = load_split(make_source(x, torch.tensor([4], dtype=torch.uint8)), "test")
    assert isinstance(split, Split)
    assert split.name == "test"
    assert split.inputs.dtype == torch.float32
    assert_close(split.inputs, torch.tensor([[0.0, 0.2, 1.0]]))
    assert split.targets.dtype == torch.int64
    assert split.targets.tolist() == [4]
    assert split.indices is None
    assert len(split) == 1


def test_load_split_normalizes_with_mean_and_std() -> None:
    x = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    split = load_split(make_source(x, torch.tensor([0])), "test", normalization=(0.2, 0.4))
    assert_close(split.inputs, torch.tensor([[-0.5, 0.0, 2.0]]))


def test_load_split_leaves_float_inputs_unscaled() -> None:
    x = torch.tensor([[0.0, 2.0, 255.0]], dtype=torch.float64)
    split = load_split(make_source(x, torch.tensor([1])), "test", normalization=(1.0, 2.0))
    assert split.inputs.dtype == torch.float32
    assert split.inputs.tolist() == [[-0.5, 0.5, 127.0]]


def test_load_split_does_not_change_the_source() -> None:
    x = torch.arange(6, dtype=torch.uint8).reshape(3, 2)
    source = make_source(x, torch.arange(3))
    load_split(source, "test", normalization=(1.0, 2.0))
    assert x.tolist() == [[0, 1], [2, 3], [4, 5]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_non_integer_targets(dtype: torch.dtype) -> None:
    source = make_source(torch.zeros(3, 2), torch.tensor([0, 1, 1]).to(dtype))
    with pytest.raises(DataError) as exc:
        load_split(source, "test")
    name = str(dtype).removeprefix("torch.")
    assert str(exc.value) == f"toy: test targets are {name}, expected integer class labels"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", None),
        ("0.5,0.25", (0.5, 0.25)),
        (" 0.1 , 2 ", (0.1, 2.0)),
        ("-1,1e-3", (-1.0, 0.001)),
        ("0,1", (0.0, 1.0)),
    ],
)
def test_parse_normalize(text: str, expected: tuple[float, float] | None) -> None:
    assert parse_normalize(text, make_source(torch.zeros(1), torch.zeros(1), (0.3, 0.4))) == expected


def test_parse_normalize_auto() -> None:
    assert parse_normalize("auto", make_source(torch.zeros(1), torch.zeros(1), (0.3, 0.4))) == (0.3, 0.4)
    assert parse_normalize("auto", make_source(torch.zeros(1), torch.zeros(1), None)) is None


@pytest.mark.parametrize(
    "text", ["", "0.5", "a,b", "1,2,3", "0.5,", "0.5,0", "0.5,-1", "nan,1", "0,nan", "0,inf", "Auto", "NONE"]
)
def test_parse_normalize_rejects(text: str) -> None:
    with pytest.raises(UsageError, match=r"^normalize "):
        parse_normalize(text, make_source(torch.zeros(1), torch.zeros(1), (0.3, 0.4)))


def test_subset_indices() -> None:
    idx = subset_indices(100, 10, seed=3)
    assert idx is not None
    assert idx.dtype == torch.int64
    assert len(idx) == 10
    assert idx.tolist() == sorted(set(idx.tolist()))  # sorted, no repeats
    assert int(idx.min()) >= 0
    assert int(idx.max()) < 100
    assert torch.equal(idx, subset_indices(100, 10, seed=3))  # the seed fixes it
    other = subset_indices(100, 10, seed=4)
    assert other is not None
    assert not torch.equal(idx, other)
    gen = torch.Generator().manual_seed(3)
    assert idx.tolist() == sorted(torch.randperm(100, generator=gen)[:10].tolist())  # documented recipe


@pytest.mark.parametrize("samples", [None, 100, 1000])
def test_subset_of_everything_is_none(samples: int | None) -> None:
    assert subset_indices(100, samples, seed=0) is None


@pytest.mark.parametrize("samples", [0, -5])
def test_subset_must_be_positive(samples: int) -> None:
    with pytest.raises(UsageError, match=rf"^samples must be positive, got {samples}"):
        subset_indices(100, samples, seed=0)


def test_load_split_subset_is_recorded() -> None:
    x = torch.arange(50, dtype=torch.uint8).reshape(50, 1) * 5
    y = torch.arange(50) % 7
    source = make_source(x, y)
    a = load_split(source, "test", samples=8, seed=1)
    b = load_split(source, "test", samples=8, seed=1)
    c = load_split(source, "test", samples=8, seed=2)
    assert a.indices is not None
    assert len(a) == 8
    assert list(a.indices) == sorted(a.indices)
    assert all(type(i) is int for i in a.indices)
    assert a.indices == b.indices
    assert a.indices != c.indices
    idx = torch.tensor(a.indices)
    assert_close(a.inputs, x[idx].float() / 255)
    assert torch.equal(a.targets, y[idx])
    assert load_split(source, "test", samples=50, seed=1).indices is None


# -------------------------------------------------------------------------------------- tensor files


def tensors(n: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 3, generator=gen), torch.randint(0, 4, (n,), generator=gen)


X_TRAIN, Y_TRAIN = tensors(6, seed=1)
X_TEST, Y_TEST = tensors(4, seed=2)


def save_pt(path: Path, obj: Any) -> None:
    torch.save(obj, path)


def save_npz(path: Path, obj: dict[str, torch.Tensor]) -> None:
    np.savez(path, **{k: v.numpy() for k, v in obj.items()})


def save_st(path: Path, obj: dict[str, torch.Tensor]) -> None:
    save_file(obj, str(path))


Writer = Callable[[Path, Any], None]


@pytest.mark.parametrize(
    ("name", "writer", "obj", "expected"),
    [
        ("flat.pt", save_pt, {"x": X_TEST, "y": Y_TEST}, {"test": (X_TEST, Y_TEST)}),
        ("named.pth", save_pt, {"inputs": X_TEST, "targets": Y_TEST, "note": "v1"}, {"test": (X_TEST, Y_TEST)}),
        ("images.pt", save_pt, {"images": X_TEST, "labels": Y_TEST}, {"test": (X_TEST, Y_TEST)}),
        (
            "suffixed.pt",
            save_pt,
            {"x_train": X_TRAIN, "y_train": Y_TRAIN, "x_test": X_TEST, "y_test": Y_TEST},
            {"train": (X_TRAIN, Y_TRAIN), "test": (X_TEST, Y_TEST)},
        ),
        (
            "nested.pt",
            save_pt,
            {"train": {"x": X_TRAIN, "y": Y_TRAIN}, "test": {"images": X_TEST, "labels": Y_TEST}},
            {"train": (X_TRAIN, Y_TRAIN), "test": (X_TEST, Y_TEST)},
        ),
        ("train-only.pt", save_pt, {"x_train": X_TRAIN, "y_train": Y_TRAIN}, {"train": (X_TRAIN, Y_TRAIN)}),
        (
            "arrays.npz",
            save_npz,
            {"x_train": X_TRAIN, "y_train": Y_TRAIN, "x_test": X_TEST, "y_test": Y_TEST},
            {"train": (X_TRAIN, Y_TRAIN), "test": (X_TEST, Y_TEST)},
        ),
        ("flat.npz", save_npz, {"data": X_TEST, "label": Y_TEST}, {"test": (X_TEST, Y_TEST)}),
        ("flat.safetensors", save_st, {"x": X_TEST, "y": Y_TEST}, {"test": (X_TEST, Y_TEST)}),
        (
            "split.safetensors",
            save_st,
            {"x_train": X_TRAIN, "y_train": Y_TRAIN, "x_test": X_TEST, "y_test": Y_TEST},
            {"train": (X_TRAIN, Y_TRAIN), "test": (X_TEST, Y_TEST)},
        ),
        ("torch-inside.safetensors", save_pt, {"x": X_TEST, "y": Y_TEST}, {"test": (X_TEST, Y_TEST)}),
        ("safetensors-inside.pt", save_st, {"x": X_TEST, "y": Y_TEST}, {"test": (X_TEST, Y_TEST)}),
    ],
)
def test_tensor_file_splits(
    tmp_path: Path,
    name: str,
    writer: Writer,
    obj: Any,
    expected: dict[str, tuple[torch.Tensor, torch.Tensor]],
) -> None:
    path = tmp_path / name
    writer(path, obj)
    source = open_data(str(path))
    assert source.name == name
    assert source.location == str(path)
    assert source.splits == tuple(expected)
    assert source.normalization is None
    for split, (x, y) in expected.items():
        got_x, got_y = source.read(split)
        assert torch.equal(got_x, x)
        assert torch.equal(got_y, y)
        loaded = load_split(source, split, normalization=parse_normalize("auto", source))
        assert torch.equal(loaded.inputs, x)  # float inputs, no normalization for tensor files
        assert torch.equal(loaded.targets, y)


def test_tensor_file_with_uint8_images_and_a_subset(tmp_path: Path) -> None:
    x = torch.arange(40, dtype=torch.uint8).reshape(10, 1, 2, 2)
    y = torch.arange(10, dtype=torch.int32)
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    split = load_split(open_data(str(tmp_path / "d.pt")), "test", samples=4, seed=0)
    assert split.indices is not None
    idx = list(split.indices)
    assert_close(split.inputs, x[idx].float() / 255)
    assert split.targets.dtype == torch.int64
    assert split.targets.tolist() == idx


def test_tensor_file_missing_split(tmp_path: Path) -> None:
    torch.save({"x_train": X_TRAIN, "y_train": Y_TRAIN}, tmp_path / "d.pt")
    with pytest.raises(DataError) as exc:
        open_data(str(tmp_path / "d.pt")).read("test")
    assert str(exc.value) == "dataset d.pt has no 'test' split (it has: train)"
    assert exc.value.hint == "use splits='train'"


def test_tensor_file_float_targets(tmp_path: Path) -> None:
    torch.save({"x": X_TEST, "y": Y_TEST.float()}, tmp_path / "d.pt")
    with pytest.raises(DataError, match=r"d\.pt: test targets are float32, expected integer class labels"):
        load_split(open_data(str(tmp_path / "d.pt")), "test")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"x": X_TEST, "y": Y_TEST[:3]}, "test has 4 inputs but 3 targets"),
        (
            {"x_train": X_TRAIN, "y_train": Y_TEST, "x_test": X_TEST, "y_test": Y_TEST},
            "train has 6 inputs but 4 targets",
        ),
        ({"x": torch.tensor(1.0), "y": torch.tensor(1)}, "test inputs have shape [] and targets []"),
        ({"x": X_TEST, "y": torch.tensor(1)}, "test inputs have shape [4, 2, 3] and targets []"),
        ({"weights": X_TEST, "y": Y_TEST}, "no inputs/targets found (keys: weights, y)"),
        ({"x_train": X_TRAIN, "y_test": Y_TEST}, "no inputs/targets found (keys: x_train, y_test)"),
        ({"train": {"x": X_TRAIN}}, "no inputs/targets found (keys: train)"),
    ],
)
def test_unusable_tensor_file(tmp_path: Path, obj: dict[str, Any], message: str) -> None:
    path = tmp_path / "d.pt"
    torch.save(obj, path)
    with pytest.raises(DataError) as exc:
        open_data(str(path))
    assert str(exc.value).startswith(f"{path}: {message}")


def test_no_inputs_hint(tmp_path: Path) -> None:
    torch.save({"a": X_TEST}, tmp_path / "d.pt")
    with pytest.raises(DataError) as exc:
        open_data(str(tmp_path / "d.pt"))
    assert exc.value.hint is not None
    assert "inputs/x/data/images/features" in exc.value.hint
    assert "targets/y/labels/target/label" in exc.value.hint


class Pickled:
    pass


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.pt", b"", "not a data file interpscan can read (an empty file)"),
        ("d.pt", b"junk data", "not a data file interpscan can read"),
        ("d.pt", b"PK\x03\x04 truncated zip", "unreadable PyTorch file"),
        ("d.pt", pickle.dumps([1, 2], protocol=2), "a Python pickle (pickle.dump), not torch.save output"),
        ("d.npz", b"", "unreadable .npz archive"),
        ("d.npz", b"PK\x03\x04 truncated zip", "unreadable .npz archive"),
        ("d.npz", bytes(range(256)), "unreadable .npz archive"),
        ("d.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + bytes(14), "unreadable safetensors file"),
    ],
)
def test_unreadable_tensor_file(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"^" + str(path).replace(".", r"\.") + ": ") as exc:
        open_data(str(path))
    assert message in str(exc.value)


def test_single_array_named_npz(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    with path.open("wb") as fh:
        np.save(fh, X_TEST.numpy())  # .npy content under an .npz name
    with pytest.raises(DataError, match=r"d\.npz: a single array, not an \.npz archive"):
        open_data(str(path))


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([X_TEST, Y_TEST], "expected a dict of tensors, found list"),
        (
            {"x": Pickled()},
            r"refused to unpickle objects other than tensors and plain containers \(it needs test_data.Pickled\)",
        ),
    ],
)
def test_tensor_file_of_the_wrong_kind(tmp_path: Path, obj: Any, message: str) -> None:
    torch.save(obj, tmp_path / "d.pt")
    with pytest.raises(DataError, match=message) as exc:
        open_data(str(tmp_path / "d.pt"))
    assert "weights_only" not in str(exc.value)  # our one line, not torch's paragraphs
    assert "\n" not in str(exc.value)
    if isinstance(obj, dict):
        assert (
            exc.value.hint
            == "a data file must hold plain tensors: save it with torch.save({'inputs': x, 'targets': y}, path)"
        )


def test_missing_tensor_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        open_data(str(tmp_path / "absent.npz"))
    assert str(exc.value) == f"data file not found: {tmp_path / 'absent.npz'}"
    assert exc.value.hint == "check the path given to data"


@pytest.mark.parametrize(
    ("spec", "suggestion"),
    [("cifar-10", "cifar10"), ("fashion_mnist", "fashion-mnist"), ("svhn", None), ("data.csv", None)],
)
def test_unknown_dataset(spec: str, suggestion: str | None) -> None:
    with pytest.raises(DataError) as exc:
        open_data(spec)
    assert str(exc.value) == f"unknown dataset {spec!r}" + (f"; did you mean {suggestion}?" if suggestion else "")
    assert exc.value.hint == (
        "use one of cifar10, cifar100, mnist, fashion-mnist, fashion-mnist-small, a tensor file "
        "(.pt, .pth, .npz, .safetensors), an image folder, or path/to/file.py:factory"
    )


def test_regression_targets_need_a_regression_loss(tmp_path: Path) -> None:
    torch.save({"x": X_TEST, "y": Y_TEST[:, None]}, tmp_path / "d.pt")
    source = open_data(str(tmp_path / "d.pt"))
    with pytest.raises(DataError) as exc:
        load_split(source, "test")
    assert str(exc.value) == "d.pt: test targets have shape [4, 1]; class labels have shape (N,)"
    assert exc.value.hint == "for regression targets use loss='mse'"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.int32])
def test_any_targets_without_class_labels(dtype: torch.dtype) -> None:
    y = torch.arange(8).reshape(4, 2).to(dtype)
    split = load_split(make_source(torch.zeros(4, 3), y), "test", class_targets=False)
    assert split.targets.dtype == (torch.float32 if dtype.is_floating_point else torch.int64)
    assert split.targets.tolist() == y.tolist()


# ------------------------------------------------------------------------------------------------ CIFAR


def cifar_pickle(data: np.ndarray[Any, Any], labels: list[int], label_key: str = "labels", protocol: int = 2) -> bytes:
    """A batch as the CIFAR python archives hold it (written by Python 3 here; see py2_cifar_pickle)."""
    obj = {"batch_label": "batch", label_key: labels, "data": data, "filenames": [f"{i}.png" for i in labels]}
    return pickle.dumps(obj, protocol=protocol)


def py2_cifar_pickle(data: np.ndarray[Any, Any], labels: list[int], label_key: str = "labels") -> bytes:
    """A batch byte for byte as Python 2's cPickle and numpy 1.x wrote the original files (protocol 2): byte
    strings (opcode U/T) for keys and pixel data, numpy.core.multiarray._reconstruct for the array."""
    n, raw, key = data.shape[0], data.tobytes(), label_key.encode()
    assert n < 256
    assert data.shape[1] == 3072
    assert all(0 <= v < 256 for v in labels)
    return (
        b"\x80\x02}q\x01(U\x04dataq\x02"
        b"cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85U\x01b\x87Rq\x05"
        b"(K\x01K" + bytes([n]) + b"M\x00\x0c\x86"  # version 1, shape (n, 3072)
        b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb"  # C order, then the pixels as a byte string
        b"U" + bytes([len(key)]) + key + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"eu."
    )


def fake_cifar(
    directory: Path, name: str = "cifar10", *, per_batch: int = 2, writer: Callable[..., bytes] = cifar_pickle
) -> dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """Tiny batches with the real names in ``directory``; returns (data (N, 3072), labels) per split."""
    spec = data.NAMED[name]
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    written: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    for split, files in spec.files.items():
        chunks, labels = [], []
        for stem in files:
            pixels = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
            y = [int(v) for v in rng.integers(0, 100 if name == "cifar100" else 10, per_batch)]
            (directory / stem).write_bytes(writer(pixels, y, spec.label_key))
            chunks.append(pixels)
            labels += y
        written[split] = (np.concatenate(chunks), np.array(labels))
    return written


def test_cifar_batch_layout() -> None:
    # One image whose red, green and blue planes are 0.., 100.., 200..: channel c of pixel (h, w) sits at
    # c·1024 + h·32 + w in the row.
    row = np.concatenate([np.full(1024, 0), np.full(1024, 100), np.full(1024, 200)]).astype(np.uint8)
    row[1024 + 32 * 2 + 5] = 7  # green, h=2, w=5
    x, y = data.read_cifar_batch(cifar_pickle(row[None], [3]), "b", "labels")
    assert x.shape == (1, 3, 32, 32)
    assert y.tolist() == [3]
    assert y.dtype == np.int64
    assert (x[0, 0] == 0).all()
    assert (x[0, 2] == 200).all()
    assert x[0, 1, 2, 5] == 7
    assert int((x[0, 1] == 100).sum()) == 1023


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batch_pickle_protocols(protocol: int) -> None:
    pixels = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    x, y = data.read_cifar_batch(cifar_pickle(pixels, [4, 9], protocol=protocol), "b", "labels")
    assert np.array_equal(x.reshape(2, -1), pixels)
    assert y.tolist() == [4, 9]


def test_cifar_batch_as_python_2_wrote_it() -> None:
    pixels = np.arange(3 * 3072, dtype=np.int64).astype(np.uint8).reshape(3, 3072)
    raw = py2_cifar_pickle(pixels, [6, 9, 9], "fine_labels")
    assert raw[:2] == b"\x80\x02"
    assert pickle.loads(raw, encoding="latin1")["fine_labels"] == [6, 9, 9]  # the helper is a real pickle
    x, y = data.read_cifar_batch(raw, "b", "fine_labels")
    assert np.array_equal(x.reshape(3, -1), pixels)
    assert y.tolist() == [6, 9, 9]


class Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("pwned",))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (pickle.dumps({"data": Exploit(), "labels": []}), "refusing to load builtins.print"),
        (b"not a pickle", "not a CIFAR batch (UnpicklingError"),
        (cifar_pickle(np.zeros((2, 3072), np.uint8), [1, 2])[:-20], "not a CIFAR batch"),
        (pickle.dumps([1, 2]), "not a CIFAR batch (a pickled list, expected a dict)"),
        (pickle.dumps({"data": np.zeros((1, 3072), np.uint8)}), "no 'data' and 'labels' entries"),
        (cifar_pickle(np.zeros((2, 100), np.uint8), [1, 2]), "data uint8 [2, 100] and 2 labels"),
        (cifar_pickle(np.zeros((2, 3072), np.uint8), [1]), "data uint8 [2, 3072] and 1 labels"),
    ],
)
def test_bad_cifar_batch(raw: bytes, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DataError) as exc:
        data.read_cifar_batch(raw, "data_batch_1", "labels")
    assert str(exc.value).startswith("data_batch_1: ")
    assert message in str(exc.value)
    assert capsys.readouterr().out == ""  # nothing in the pickle ran


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("layout", ["folder", "root"])
@pytest.mark.parametrize("writer", [cifar_pickle, py2_cifar_pickle])
def test_cifar_layouts(tmp_path: Path, name: str, layout: str, writer: Callable[..., bytes]) -> None:
    spec = data.NAMED[name]
    directory = tmp_path / spec.folder if layout == "folder" else tmp_path
    written = fake_cifar(directory, name, writer=writer)
    source = open_data(name, tmp_path)
    assert source.location == str(directory)
    assert source.splits == ("train", "test")
    assert source.normalization == STANDARD[name]
    for split, (pixels, labels) in written.items():
        x, y = source.read(split)
        assert x.dtype == torch.uint8
        assert x.shape == (len(labels), 3, 32, 32)
        assert torch.equal(x.reshape(len(labels), -1), torch.from_numpy(pixels))
        assert y.tolist() == labels.tolist()
    assert len(source.read("train")[1]) == 2 * len(spec.files["train"])


STANDARD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": (0.1307, 0.3081),
    "fashion-mnist": (0.2860, 0.3530),
}


def test_standard_normalizations() -> None:
    assert {k: data.STANDARD_NORMALIZATION[k] for k in STANDARD} == STANDARD


def test_cifar_auto_normalization_is_per_channel(tmp_path: Path) -> None:
    fake_cifar(tmp_path / "cifar-10-batches-py")
    source = open_data("cifar10", tmp_path)
    raw = load_split(source, "test")
    split = load_split(source, "test", normalization=parse_normalize("auto", source))
    mean = torch.tensor(STANDARD["cifar10"][0]).view(1, 3, 1, 1)
    std = torch.tensor(STANDARD["cifar10"][1]).view(1, 3, 1, 1)
    assert_close(split.inputs, (raw.inputs - mean) / std)


def make_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def cifar_archive(tmp_path: Path, name: str = "cifar10") -> tuple[bytes, dict[str, Any]]:
    """The bytes of a fake ``cifar-10-python.tar.gz`` (real member names) and what it holds."""
    spec = data.NAMED[name]
    staging = tmp_path / "staging"
    written = fake_cifar(staging / spec.folder, name)
    files = {f"{spec.folder}/{p.name}": p.read_bytes() for p in sorted((staging / spec.folder).iterdir())}
    archive = make_tar(tmp_path / "staging.tar.gz", files)
    return archive.read_bytes(), written


def publish(monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, bytes], base_url: str) -> None:
    """Point named dataset ``name`` at ``base_url`` with these files' sizes and md5s, as if they were official."""
    spec = data.NAMED[name]
    resources = tuple(
        Resource(
            r.filename,
            (f"{base_url}/{r.filename}",),
            hashlib.md5(files[r.filename]).hexdigest(),
            len(files[r.filename]),
        )
        for r in spec.resources
    )
    monkeypatch.setitem(data.NAMED, name, replace(spec, resources=resources))


def test_cifar_archive_in_root_is_checked_and_extracted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, written = cifar_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(raw)
    publish(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": raw}, "http://127.0.0.1:9")
    messages: list[str] = []
    source = open_data("cifar10", root, log=messages.append)
    assert source.location == str(root / "cifar-10-batches-py")
    assert messages == [f"extracting {root / 'cifar-10-python.tar.gz'} into {root / 'cifar-10-batches-py'}"]
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert source.read("test")[1].tolist() == written["test"][1].tolist()
    assert open_data("cifar10", root).location == str(root / "cifar-10-batches-py")  # found now, no extraction


def test_cifar_archive_that_is_not_the_published_one(tmp_path: Path) -> None:
    raw, _ = cifar_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(raw)  # md5 differs from the official archive's
    with pytest.raises(DataError) as exc:
        open_data("cifar10", root)
    assert str(exc.value) == (
        f"{root / 'cifar-10-python.tar.gz'} is not the published cifar-10-python.tar.gz "
        f"({len(raw)} bytes, expected 170498071)"
    )
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]  # nothing extracted


def test_cifar_archive_in_a_read_only_folder_is_read_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, written = cifar_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(raw)
    publish(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": raw}, "http://127.0.0.1:9")
    monkeypatch.setattr(named.os, "access", lambda path, mode: False)  # as for a user without write access
    source = open_data("cifar10", root)
    assert source.location == str(root / "cifar-10-python.tar.gz")
    x, y = source.read("train")
    assert torch.equal(x.reshape(len(y), -1), torch.from_numpy(written["train"][0]))
    assert y.tolist() == written["train"][1].tolist()
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]


# ------------------------------------------------------------------------------------------------ MNIST


@pytest.mark.parametrize("layout", [(), ("mnist",), ("MNIST", "raw")])
def test_mnist_layouts(tmp_path: Path, layout: tuple[str, ...]) -> None:
    directory = tmp_path.joinpath(*layout)
    written = fake_fashion_mnist(directory)  # the same four IDX files
    source = open_data("mnist", tmp_path)
    assert source.name == "mnist"
    assert source.location == str(directory)
    assert source.normalization == (0.1307, 0.3081)
    assert source.read("test")[1].tolist() == written["test"][1].tolist()


def test_torchvision_raw_folder_with_extracted_files(tmp_path: Path) -> None:
    # torchvision keeps both the .gz and the extracted files in MNIST/raw; either is read.
    directory = tmp_path / "MNIST" / "raw"
    fake_fashion_mnist(directory, compress=False)
    assert open_data("mnist", tmp_path).location == str(directory)


# ------------------------------------------------------------------------------------------ downloads


@dataclass
class Served:
    base: str
    files: dict[str, bytes]
    hits: list[str]


@pytest.fixture
def http_files() -> Iterator[Served]:
    """Files served from memory by a local HTTP server on 127.0.0.1 (a 404 for anything not in ``files``)."""
    state = Served("", {}, [])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            body = state.files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_cifar_download(tmp_path: Path, http_files: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, written = cifar_archive(tmp_path)
    http_files.files["cifar-10-python.tar.gz"] = raw
    publish(monkeypatch, "cifar10", http_files.files, http_files.base)
    root = tmp_path / "cache" / "interpscan"  # does not exist yet
    progress: list[tuple[str, int, int]] = []
    messages: list[str] = []
    source = open_data("cifar10", root, download=True, progress=lambda *a: progress.append(a), log=messages.append)
    assert source.location == str(root / "cifar-10-batches-py")
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # archive removed, no temp files
    assert progress[0] == ("cifar-10-python.tar.gz", 0, len(raw))
    assert progress[-1] == ("cifar-10-python.tar.gz", len(raw), len(raw))
    assert messages == [
        f"downloaded CIFAR-10 from {http_files.base}/cifar-10-python.tar.gz (md5 checked) and extracted it "
        f"into {root / 'cifar-10-batches-py'}"
    ]
    assert source.read("test")[1].tolist() == written["test"][1].tolist()


def test_mnist_download_fetches_what_is_missing(
    tmp_path: Path, http_files: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = tmp_path / "staging"
    written = fake_fashion_mnist(staging)
    http_files.files.update({p.name: p.read_bytes() for p in staging.iterdir()})
    publish(monkeypatch, "mnist", http_files.files, http_files.base)
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    (root / "mnist" / "train-images-idx3-ubyte.gz").write_bytes((staging / "train-images-idx3-ubyte.gz").read_bytes())
    source = open_data("mnist", root, download=True)
    assert source.location == str(root / "mnist")
    assert sorted(http_files.hits) == [f"/{n}" for n in sorted(http_files.files) if not n.startswith("train-images")]
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(http_files.files)
    assert source.read("train")[1].tolist() == written["train"][1].tolist()


@pytest.mark.parametrize("failure", ["404", "corrupt", "offline"])
def test_failed_download_leaves_the_cache_as_it_was(
    tmp_path: Path, http_files: Served, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    raw, _ = cifar_archive(tmp_path)
    publish(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": raw}, http_files.base)
    if failure == "corrupt":
        http_files.files["cifar-10-python.tar.gz"] = bytes(len(raw))
    elif failure == "offline":
        spec = data.NAMED["cifar10"]
        offline = replace(spec.resources[0], urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",))
        monkeypatch.setitem(data.NAMED, "cifar10", replace(spec, resources=(offline,)))

        def offline_urlopen(*args: object, **kwargs: object) -> None:
            raise URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

        monkeypatch.setattr("urllib.request.urlopen", offline_urlopen)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "cache" / "interpscan"  # the default root, which does not exist yet
    with pytest.raises(DownloadError) as exc:
        open_data("cifar10", download=True)
    url = data.NAMED["cifar10"].resources[0].url
    reason = {
        "404": "HTTP 404 Not Found",
        "corrupt": "checksum mismatch",
        "offline": "Temporary failure in name resolution",
    }[failure]
    assert str(exc.value).startswith(f"CIFAR-10 not found in {root} and the download failed: {url}: {reason}")
    assert exc.value.hint == (
        f"without network access, put cifar-10-python.tar.gz ({url}, md5 {hashlib.md5(raw).hexdigest()}) "
        f"or its extracted cifar-10-batches-py/ folder in {root}"
    )
    assert exc.value.exit_code == 1
    assert not (tmp_path / "cache").exists()  # not even the folders it made


def test_no_download_never_touches_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was used")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    monkeypatch.setattr(named, "fetch", no_network)
    for name in data.NAMED:
        with pytest.raises(DataError, match="download=False is set") as exc:
            open_data(name, tmp_path / "root")
        assert not isinstance(exc.value, DownloadError)
        assert exc.value.hint is not None
        assert exc.value.hint.startswith("drop download=False to fetch it (")
    assert not (tmp_path / "root").exists()


# ---------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5,0.25", (0.5, 0.25)),
        ("0.4914/0.4822/0.4465,0.2470/0.2435/0.2616", ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))),
        ("0.5/0.4,0.2", ((0.5, 0.4), 0.2)),
        ("0.5, 0.2/0.3", (0.5, (0.2, 0.3))),
    ],
)
def test_parse_normalize_per_channel(text: str, expected: Any) -> None:
    assert parse_normalize(text, make_source(torch.zeros(1), torch.zeros(1))) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.1/0.2,0.3/0.4/0.5", "2 means but 3 stds"),
        ("0.1/,0.2", "mean '0.1/' is not a number"),
        ("0.1,0.2/0", "std must be positive"),
        ("0.1/nan,0.2", "finite"),
    ],
)
def test_parse_normalize_per_channel_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_normalize(text, make_source(torch.zeros(1), torch.zeros(1)))


def test_per_channel_normalization_values() -> None:
    x = torch.full((2, 3, 2, 2), 51, dtype=torch.uint8)  # 0.2 everywhere
    split = load_split(make_source(x, torch.tensor([0, 1])), "test", normalization=((0.0, 0.2, 0.4), (0.1, 0.2, 0.4)))
    assert_close(split.inputs[:, 0], torch.full((2, 2, 2), 2.0))
    assert_close(split.inputs[:, 1], torch.zeros(2, 2, 2))
    assert_close(split.inputs[:, 2], torch.full((2, 2, 2), -0.5))


def test_per_channel_normalization_must_fit_the_channels() -> None:
    source = make_source(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(DataError) as exc:
        load_split(source, "test", normalization=((0.1, 0.2, 0.3), 0.5))
    assert str(exc.value) == (
        "normalize has 3 values per channel but the toy test inputs have shape [2, 1, 4, 4] (channels are dimension 1)"
    )


@pytest.mark.parametrize(("text", "expected"), [(None, None), ("all", None), ("ALL", None), ("5", 5), (" 12 ", 12)])
def test_parse_samples(text: str | None, expected: int | None) -> None:
    assert values.parse_samples(text) == expected


@pytest.mark.parametrize(
    ("text", "message"), [("0", "must be at least 1"), ("-3", "must be at least 1"), ("x", "count")]
)
def test_parse_samples_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        values.parse_samples(text)


def test_parse_data_keys() -> None:
    assert values.parse_data_keys(None) is None
    assert values.parse_data_keys("img, lbl") == ("img", "lbl")
    for bad in ("img", "img,", ",lbl", "a,b,c"):
        with pytest.raises(UsageError, match="is not INPUTS,TARGETS"):
            values.parse_data_keys(bad)


# ---------------------------------------------------------------------------------------- data keys


@pytest.mark.parametrize(
    ("obj", "splits"),
    [
        ({"img": X_TEST, "lbl": Y_TEST, "x": X_TRAIN, "y": Y_TRAIN}, {"test": (X_TEST, Y_TEST)}),
        ({"img_train": X_TRAIN, "lbl_train": Y_TRAIN, "img_test": X_TEST, "lbl_test": Y_TEST}, None),
        ({"train": {"img": X_TRAIN, "lbl": Y_TRAIN}, "test": {"img": X_TEST, "lbl": Y_TEST}}, None),
    ],
    ids=["flat", "suffixed", "nested"],
)
def test_data_keys(tmp_path: Path, obj: dict[str, Any], splits: dict[str, Any] | None) -> None:
    expected = splits or {"train": (X_TRAIN, Y_TRAIN), "test": (X_TEST, Y_TEST)}
    for suffix, writer in ((".pt", save_pt), (".npz", save_npz), (".safetensors", save_st)):
        if suffix != ".pt" and "train" in obj:
            continue  # nested dicts only fit torch files
        path = tmp_path / f"d{suffix}"
        writer(path, obj)
        source = open_data(str(path), keys=("img", "lbl"))
        assert source.splits == tuple(expected)
        for split, (x, y) in expected.items():
            got_x, got_y = source.read(split)
            assert torch.equal(got_x, x)
            assert torch.equal(got_y, y)


def test_data_keys_not_found(tmp_path: Path) -> None:
    torch.save({"x": X_TEST, "y": Y_TEST}, tmp_path / "d.pt")
    with pytest.raises(DataError) as exc:
        open_data(str(tmp_path / "d.pt"), keys=("img", "lbl"))
    assert str(exc.value) == f"{tmp_path / 'd.pt'}: no inputs/targets found (keys: x, y)"
    assert exc.value.hint == (
        "data_keys=('img', 'lbl'): expected entries 'img' and 'lbl', optionally per split "
        "(img_train, lbl_test, or nested under the split's name)"
    )


@pytest.mark.parametrize("spec", ["cifar10", "fashion-mnist-small"])
def test_data_keys_only_apply_to_files_and_factories(spec: str) -> None:
    with pytest.raises(UsageError, match=f"^data_keys applies to tensor files and factories, not to data='{spec}'$"):
        open_data(spec, keys=("a", "b"))


# ----------------------------------------------------------------------------------------- factories

FACTORY_FILE = """
import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

X = torch.arange(24, dtype=torch.float32).reshape(6, 4)
Y = torch.tensor([0, 1, 2, 0, 1, 2])


class Pairs(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return X[i].numpy(), int(Y[i])


def pair():
    return X, Y


def numpy_pair():
    return X.numpy(), Y.numpy()


def dataset():
    return Pairs()


def tensor_dataset():
    return TensorDataset(X, Y)


def splits():
    return {"train": Pairs(), "test": (X[:2], Y[:2]), "valid": {"x": X[2:4], "y": Y[2:4]}}


def tensors():
    return {"x_train": X, "y_train": Y, "x_test": X[:3], "y_test": Y[:3]}


def keyed():
    return {"feat": X, "cls": Y}


def ragged():
    return [(torch.zeros(3), 0), (torch.zeros(4), 1)]


def not_pairs():
    return [1, 2, 3]


def mixed():
    return {"train": (X, Y), "x": X}


def broken():
    raise RuntimeError("no data today")


def triple():
    return X, Y, torch.arange(6)


def exits():
    import sys

    sys.exit(0)


def with_names():
    return {"x": X, "y": Y, "names": np.array(["a", "b", "c", "a", "b", "c"])}


def string_inputs():
    return np.array(["a"] * 6), Y.numpy()


def complex_targets():
    return X, Y.to(torch.complex64)


VALUE = 3
"""

X_F = torch.arange(24, dtype=torch.float32).reshape(6, 4)
Y_F = torch.tensor([0, 1, 2, 0, 1, 2])


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "mydata.py"
    path.write_text(FACTORY_FILE)
    return path


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        ("pair", {"test": (X_F, Y_F)}),
        ("numpy_pair", {"test": (X_F, Y_F)}),
        ("dataset", {"test": (X_F, Y_F)}),
        ("tensor_dataset", {"test": (X_F, Y_F)}),
        ("splits", {"train": (X_F, Y_F), "test": (X_F[:2], Y_F[:2]), "valid": (X_F[2:4], Y_F[2:4])}),
        ("tensors", {"train": (X_F, Y_F), "test": (X_F[:3], Y_F[:3])}),
    ],
)
def test_factory_results(factory_file: Path, fn: str, expected: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    spec = f"{factory_file}:{fn}"
    source = open_data(spec)
    assert source.kind == "factory"
    assert source.name == spec
    assert source.normalization is None
    assert source.splits == tuple(expected)
    for split, (x, y) in expected.items():
        got_x, got_y = source.read(split)
        assert torch.equal(got_x, x)
        assert torch.equal(got_y, y)


def test_factory_entries_beside_inputs_and_targets_are_not_read(factory_file: Path) -> None:
    assert torch.equal(open_data(f"{factory_file}:with_names").read("test")[0], X_F)  # "names": strings, unused


def test_factory_with_data_keys(factory_file: Path) -> None:
    source = open_data(f"{factory_file}:keyed", keys=("feat", "cls"))
    assert torch.equal(source.read("test")[0], X_F)


def test_factory_from_a_module(factory_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(factory_file.parent))
    try:
        source = open_data("mydata:pair")
    finally:
        sys.modules.pop("mydata", None)  # the next test's tmp_path holds another mydata.py
    assert torch.equal(source.read("test")[1], Y_F)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        ("ragged", "inputs of different shapes: item 0 is [3], item 1 is [4]"),
        ("not_pairs", "item 0 is a int, expected an (input, target) pair"),
        ("mixed", "returned a dict mixing tensors and splits (keys: train, x)"),
        ("broken", "the factory raised RuntimeError: no data today"),
        ("triple", "returned a 3-tuple of tensors ([6, 4], [6], [6]) for split 'test'; expected 2"),
        ("exits", "the factory raised ExitCalled: it called sys.exit(0) instead of returning"),
        ("string_inputs", "test inputs: an array of strings (dtype <U1), not numbers interpscan can use"),
        ("complex_targets", "test targets are complex64; interpscan reads class labels (integers) or real-valued"),
        ("VALUE", "is a int, not a function"),
        ("pari", "has no 'pari'; closest: pair"),
    ],
)
def test_factory_errors(factory_file: Path, fn: str, message: str) -> None:
    with pytest.raises(DataError) as exc:
        open_data(f"{factory_file}:{fn}")
    assert str(exc.value).startswith(f"data='{factory_file}:{fn}'")
    assert message in str(exc.value)


def test_factory_file_missing_or_broken(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        open_data(f"{tmp_path / 'absent.py'}:make")
    (tmp_path / "bad.py").write_text("import no_such_module_here\n")
    with pytest.raises(DataError, match=r"importing .*bad\.py failed: ModuleNotFoundError"):
        open_data(f"{tmp_path / 'bad.py'}:make")
    with pytest.raises(DataError, match="cannot resolve it"):
        open_data("no_such_package_xyz.sub:make")


# -------------------------------------------------------------------------------------- image folders


def write_images(directory: Path, classes: dict[str, int], size: tuple[int, int], mode: str = "L") -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (directory / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(directory / name / f"{i}.png")


def test_image_folder(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is optional; the image folder test needs it")
    from PIL import Image

    write_images(tmp_path / "imgs", {"cat": 2, "dog": 3}, (5, 4))
    (tmp_path / "imgs" / "notes.txt").write_text("ignored")
    source = open_data(str(tmp_path / "imgs"))
    assert source.kind == "image folder"
    assert source.classes == ("cat", "dog")
    assert source.splits == ("test",)
    x, y = source.read("test")
    assert x.shape == (5, 1, 4, 5)  # (N, C, H, W)
    assert x.dtype == torch.uint8
    assert y.tolist() == [0, 0, 1, 1, 1]
    with Image.open(tmp_path / "imgs" / "dog" / "1.png") as im:
        assert torch.equal(x[3, 0], torch.from_numpy(np.array(im)))


def test_image_folder_rgb_with_splits(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is optional; the image folder test needs it")
    write_images(tmp_path / "imgs" / "train", {"a": 2, "b": 1}, (3, 3), "RGB")
    write_images(tmp_path / "imgs" / "test", {"b": 2}, (3, 3), "RGB")
    source = open_data(str(tmp_path / "imgs"))
    assert source.splits == ("train", "test")
    assert source.classes == ("a", "b")
    x, y = source.read("test")
    assert x.shape == (2, 3, 3, 3)
    assert y.tolist() == [1, 1]  # "b" is class 1 in every split
    assert source.read("train")[1].tolist() == [0, 0, 1]


def test_image_folder_of_mixed_sizes(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is optional; the image folder test needs it")
    write_images(tmp_path / "imgs", {"a": 1}, (3, 3))
    write_images(tmp_path / "imgs", {"b": 1}, (4, 3))
    with pytest.raises(DataError, match=r"images of 2 sizes in the test split \(3×3, 4×3\)"):
        open_data(str(tmp_path / "imgs")).read("test")


def test_image_folder_without_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        (tmp_path / "imgs" / cls / "0.png").write_bytes(b"\x89PNG not really")
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(DataError) as exc:
        open_data(str(tmp_path / "imgs"))
    assert (
        str(exc.value)
        == f"{tmp_path / 'imgs'} is an image folder, and reading images needs Pillow, which is not installed"
    )
    assert exc.value.hint == (
        "pip install 'interpscan[images]' (or pip install Pillow), or save the images as a tensor file"
    )


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images in class sub-folders"):
        open_data(str(tmp_path / "empty"))


def test_download_racing_another_run(tmp_path: Path, http_files: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs download at once: the one whose extracted folder lands second uses the first one's."""
    raw, written = cifar_archive(tmp_path)
    http_files.files["cifar-10-python.tar.gz"] = raw
    publish(monkeypatch, "cifar10", http_files.files, http_files.base)
    root = tmp_path / "root"
    real_extract = named.extract_folder

    def extract_after_the_other_run(archive: Path, folder: str, directory: Path) -> Path:
        real_extract(archive, folder, directory)  # the other run's extraction, finished first
        return real_extract(archive, folder, directory)  # ours: the name is taken

    monkeypatch.setattr(named, "extract_folder", extract_after_the_other_run)
    source = open_data("cifar10", root, download=True)
    assert source.location == str(root / "cifar-10-batches-py")
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]
    assert source.read("test")[1].tolist() == written["test"][1].tolist()


# ------------------------------------------------------------------------------------ unusual arrays and files


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a.astype(">f4"),  # big-endian
        lambda a: np.asfortranarray(a),
        lambda a: a.astype(np.float16),  # every value below is exact in float16
    ],
)
def test_inputs_in_any_layout_or_float_width_give_the_same_split(tmp_path: Path, convert: Any) -> None:
    x = (np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4) / 32).astype(np.float32)
    y = np.array([3, 1])
    np.savez(tmp_path / "ref.npz", inputs=x, targets=y)
    np.savez(tmp_path / "odd.npz", inputs=convert(x), targets=y.astype(">i8"))
    ref = load_split(open_data(str(tmp_path / "ref.npz")), "test")
    odd = load_split(open_data(str(tmp_path / "odd.npz")), "test")
    assert odd.inputs.dtype == torch.float32  # type: ignore[union-attr]
    assert torch.equal(odd.inputs, ref.inputs)  # type: ignore[arg-type]
    assert odd.targets.tolist() == [3, 1]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.uint32, torch.uint64, torch.int16])
def test_unsigned_and_narrow_class_labels_become_int64(tmp_path: Path, dtype: torch.dtype) -> None:
    save_pt(tmp_path / "d.pt", {"inputs": torch.zeros(3, 2), "targets": torch.tensor([0, 9, 4]).to(dtype)})
    split = load_split(open_data(str(tmp_path / "d.pt")), "test")
    assert split.targets.dtype == torch.int64
    assert split.targets.tolist() == [0, 9, 4]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"inputs": torch.eye(3).to_sparse(), "targets": torch.zeros(3)}, "test inputs are a sparse_coo tensor"),
        ({"inputs": torch.zeros(3, 2), "targets": torch.zeros(3, dtype=torch.complex64)}, "targets are complex64"),
        ({"inputs": torch.empty(3, 2, device="meta"), "targets": torch.zeros(3)}, "test inputs are a meta tensor"),
    ],
)
def test_tensors_that_are_not_plain_numbers(tmp_path: Path, obj: dict[str, torch.Tensor], message: str) -> None:
    save_pt(tmp_path / "d.pt", obj)
    with pytest.raises(DataError, match=message):
        open_data(str(tmp_path / "d.pt"))


def test_a_fifo_or_device_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"pipe\.pt is a named pipe \(FIFO\), not a regular data file"):
        open_data(str(fifo))
    with pytest.raises(DataError, match=r"^/dev/zero is a character device, not a regular data file"):
        open_data("/dev/zero")
    (tmp_path / "code").mkdir()
    os.mkfifo(tmp_path / "code" / "make.py")
    with pytest.raises(DataError, match=r"make\.py is a named pipe \(FIFO\), not a regular Python file"):
        open_data(f"{tmp_path / 'code' / 'make.py'}:make")


def test_a_directory_named_like_a_data_file(tmp_path: Path) -> None:
    (tmp_path / "data.pt").mkdir()
    with pytest.raises(DataError, match=r"data\.pt is a directory, not a data file"):
        open_data(str(tmp_path / "data.pt"))


def test_a_gzipped_idx_file_is_decompressed_no_further_than_it_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bad_inputs import bombs

    from interpscan.files import BUDGET_ENV

    header = bytes.fromhex("00000803") + struct.pack(">III", 1 << 14, 32, 32)  # 16 MiB of 32×32 images
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(bombs.gzip_zeros(header, 1 << 24))
    monkeypatch.setenv(BUDGET_ENV, "8M")
    with pytest.raises(DataError, match=r"images-idx3-ubyte\.gz declares 16\.0 MiB of data in 16\.\d KiB on disk"):
        read_idx(path)
    monkeypatch.setenv(BUDGET_ENV, "16M")
    assert read_idx(path).shape == (1 << 14, 32, 32)


def test_idx_dims_whose_product_overflows_int64(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(bytes.fromhex("00000803") + struct.pack(">III", *[2**32 - 1] * 3) + bytes(8))
    with pytest.raises(DataError, match=f"IDX header promises {(2**32 - 1) ** 3} bytes"):
        read_idx(tmp_path / "x")


@pytest.mark.parametrize(
    ("which", "arr", "message"),
    [
        ("labels", np.array([1.0, 2.0, 3.0, 4.0], np.float32), "IDX data of float32 [4]; expected uint8 labels (N,)"),
        ("images", np.zeros((4, 3), np.uint8), "IDX data of uint8 [4, 3]; expected uint8 images (N, H, W)"),
        ("images", np.zeros((), np.uint8), "IDX data of uint8 []; expected uint8 images (N, H, W)"),
    ],
)
def test_idx_files_of_the_wrong_kind(tmp_path: Path, which: str, arr: np.ndarray[Any, Any], message: str) -> None:
    root = tmp_path / "fashion-mnist"
    fake_fashion_mnist(root, n_test=4)
    name = "t10k-labels-idx1-ubyte" if which == "labels" else "t10k-images-idx3-ubyte"
    (root / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(arr, ">f4" if arr.dtype.kind == "f" else np.uint8)))
    with pytest.raises(DataError, match=re.escape(message)):
        open_data("fashion-mnist", tmp_path).read("test")


# ------------------------------------------------------------------------------ image folders: odd images


def save_image(path: Path, array: np.ndarray[Any, Any], mode: str | None = None, fmt: str = "PNG") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path, fmt)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is optional")
    deep = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000).astype(np.uint16)  # up to 60000
    save_image(tmp_path / "imgs" / "a" / "0.png", deep)
    save_image(tmp_path / "imgs" / "b" / "0.png", np.full((4, 4), 51, np.uint8))  # 8-bit beside it
    x, y = open_data(str(tmp_path / "imgs")).read("test")
    assert x.dtype == torch.float32
    assert x.shape == (2, 1, 4, 4)
    assert torch.allclose(x[0, 0], torch.from_numpy(deep.astype(np.float32) / 65535))
    assert torch.allclose(x[1, 0], torch.full((4, 4), 0.2))
    assert y.tolist() == [0, 1]


@pytest.mark.parametrize("mode", ["CMYK", "P", "RGBA", "LA", "1"])
def test_other_image_modes_are_converted(tmp_path: Path, mode: str) -> None:
    pytest.importorskip("PIL", reason="Pillow is optional")
    rgb = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    for cls in ("a", "b"):
        save_image(tmp_path / "imgs" / cls / "0.tif", rgb, mode, "TIFF")
    x, _ = open_data(str(tmp_path / "imgs")).read("test")
    assert x.shape == ((2, 1, 4, 4) if mode in ("LA", "1") else (2, 3, 4, 4))
    assert x.dtype == torch.uint8


def test_float_images_are_refused(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is optional")
    save_image(tmp_path / "imgs" / "a" / "0.tif", np.ones((4, 4), np.float32), fmt="TIFF")
    with pytest.raises(DataError, match=r"0\.tif: an image of 32-bit float pixels \(mode F\)"):
        open_data(str(tmp_path / "imgs")).read("test")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda png: png[: len(png) // 2], "the image cannot be decoded (OSError: image file is truncated"),
        (lambda png: b"", "not an image Pillow can read"),
        (lambda png: b"just some text", "not an image Pillow can read"),
    ],
)
def test_damaged_images(tmp_path: Path, content: Any, message: str) -> None:
    pytest.importorskip("PIL", reason="Pillow is optional")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    save_image(tmp_path / "imgs" / "a" / "0.png", noise)
    save_image(tmp_path / "imgs" / "b" / "0.png", noise)
    bad = tmp_path / "imgs" / "b" / "0.png"
    bad.write_bytes(content(bad.read_bytes()))
    with pytest.raises(DataError) as exc:
        open_data(str(tmp_path / "imgs")).read("test")
    assert exc.value.message.startswith(f"{bad}: {message}")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` grey pixels and holds none."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_image_bombs(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is optional")
    (tmp_path / "one" / "a").mkdir(parents=True)
    (tmp_path / "one" / "a" / "0.png").write_bytes(png_header_only(20000, 20000))  # Pillow refuses it outright
    with pytest.raises(DataError, match=r"0\.png: Pillow refuses to decode it as a decompression bomb"):
        open_data(str(tmp_path / "one")).read("test")
    for i in range(4):  # each under Pillow's limit, together 324 MB: our bound, checked before decoding
        (tmp_path / "many" / "a").mkdir(parents=True, exist_ok=True)
        (tmp_path / "many" / "a" / f"{i}.png").write_bytes(png_header_only(9000, 9000))
    with pytest.raises(DataError, match=r"many \(4 images in the test split\) declares 309\.0 MiB of data"):
        open_data(str(tmp_path / "many")).read("test")


def test_a_class_folder_without_images_would_renumber_the_classes(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is optional")
    write_images(tmp_path / "imgs", {"a": 1, "c": 1}, (3, 3))
    (tmp_path / "imgs" / "b").mkdir()
    (tmp_path / "imgs" / "b" / "README").write_text("images to follow")
    with pytest.raises(DataError, match=r"imgs: 1 class folder without images \(.*imgs/b\); classes are numbered"):
        open_data(str(tmp_path / "imgs"))


def test_a_fifo_among_the_images(tmp_path: Path) -> None:
    import os

    pytest.importorskip("PIL", reason="Pillow is optional")
    write_images(tmp_path / "imgs", {"a": 1, "b": 1}, (3, 3))
    os.mkfifo(tmp_path / "imgs" / "b" / "1.png")
    with pytest.raises(DataError, match=r"1\.png is a named pipe \(FIFO\), not a regular image"):
        open_data(str(tmp_path / "imgs")).read("test")

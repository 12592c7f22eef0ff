"""Tests for interpscan.data: IDX files in their original format, dataset discovery, splits, tensor files."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from interpscan import data
from interpscan.data import (
    DataSource,
    Split,
    default_root,
    fashion_mnist_dirs,
    load_split,
    open_data,
    parse_normalize,
    read_idx,
    subset_indices,
)
from interpscan.errors import DataError, UsageError

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
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", missing)
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
        (gzip.compress(GOOD)[:-12], "corrupt gzip data"),  # truncated
        (corrupt_gzip(GOOD), "corrupt gzip data"),  # damaged deflate stream
        (gzip.compress(GOOD[:-1]), "IDX header promises"),  # good gzip, truncated IDX inside
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


def test_fashion_mnist_system_folder_is_searched_last(tmp_path: Path, no_system_dataset: Path) -> None:
    fake_fashion_mnist(no_system_dataset)
    root = tmp_path / "empty-root"
    assert fashion_mnist_dirs(root) == [
        root,
        root / "fashion-mnist",
        root / "FashionMNIST" / "raw",
        no_system_dataset,
    ]
    assert open_data("fashion-mnist", root).location == str(no_system_dataset)


def test_fashion_mnist_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_root() == tmp_path / "cache" / "interpscan"
    fake_fashion_mnist(tmp_path / "cache" / "interpscan" / "fashion-mnist")
    assert open_data("fashion-mnist").location == str(tmp_path / "cache" / "interpscan" / "fashion-mnist")


def test_default_root_without_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_root() == tmp_path / ".cache" / "interpscan"


def test_fashion_mnist_not_found(tmp_path: Path, no_system_dataset: Path) -> None:
    root = tmp_path / "root"
    written = fake_fashion_mnist(root / "fashion-mnist")
    assert written  # three of four files are not enough
    (root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as exc:
        open_data("fashion-mnist", root)
    folders = [root, root / "fashion-mnist", root / "FashionMNIST" / "raw", no_system_dataset]
    assert str(exc.value) == f"Fashion-MNIST not found (looked in {', '.join(map(str, folders))})"
    assert exc.value.hint is not None
    assert "--data-root" in exc.value.hint
    assert "--data fashion-mnist-small" in exc.value.hint


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
    assert exc.value.hint == "use --split train"


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
    with pytest.raises(UsageError, match="--normalize"):
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
    with pytest.raises(UsageError, match=f"--samples must be positive, got {samples}"):
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
    assert exc.value.hint == "use --split train"


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
        ({"x": X_TEST, "y": Y_TEST[:, None]}, "test inputs have shape [4, 2, 3] and targets [4, 1]"),
        ({"x": torch.tensor(1.0), "y": torch.tensor(1)}, "test inputs have shape [] and targets []"),
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
        ("d.pt", b"", "not a checkpoint interpscan can read (an empty file)"),
        ("d.pt", b"junk data", "not a checkpoint interpscan can read"),
        ("d.pt", b"PK\x03\x04 truncated zip", "unreadable tensor file"),
        ("d.pt", pickle.dumps([1, 2], protocol=2), "unreadable tensor file"),
        ("d.npz", b"", "unreadable .npz file"),
        ("d.npz", b"PK\x03\x04 truncated zip", "unreadable .npz file"),
        ("d.npz", bytes(range(256)), "unreadable .npz file"),
        ("d.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + bytes(14), "unreadable safetensors file"),
    ],
)
def test_unreadable_tensor_file(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match="^" + str(path).replace(".", r"\.") + ": ") as exc:
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
    [([X_TEST, Y_TEST], "expected a dict of tensors, found list"), ({"x": Pickled()}, "unreadable tensor file")],
)
def test_tensor_file_of_the_wrong_kind(tmp_path: Path, obj: Any, message: str) -> None:
    torch.save(obj, tmp_path / "d.pt")
    with pytest.raises(DataError, match=message):
        open_data(str(tmp_path / "d.pt"))


def test_missing_tensor_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        open_data(str(tmp_path / "absent.npz"))
    assert str(exc.value) == f"data file not found: {tmp_path / 'absent.npz'}"
    assert exc.value.hint == "check the path given to --data"


@pytest.mark.parametrize("spec", ["mnist", "cifar10", "fashion_mnist", "data.csv"])
def test_unknown_dataset(spec: str) -> None:
    with pytest.raises(DataError) as exc:
        open_data(spec)
    assert str(exc.value) == f"unknown dataset {spec!r}"
    assert exc.value.hint == (
        "use one of fashion-mnist, fashion-mnist-small, or a tensor file (.pt, .pth, .npz, .safetensors)"
    )

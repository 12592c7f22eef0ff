"""Files of named tensors (interpscan/tensorfile.py): sizes checked before reading, arrays converted to the same
numbers or refused by name, tensor kinds interpscan cannot interpolate refused, plain pickles told apart."""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bad_inputs import bombs

from interpscan.checkpoints import load_checkpoint
from interpscan.errors import CheckpointError, DataError
from interpscan.files import BUDGET_ENV
from interpscan.tensorfile import (
    array_problem,
    detect_format,
    read_npz,
    read_tensor_dict,
    read_torch,
    tensor_from_array,
    tensor_kind_problem,
)

# ---------------------------------------------------------------------------------------- declared sizes


def test_deflated_zeros_load_within_the_budget_and_not_beyond(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "zeros.pt"
    path.write_bytes(bombs.torch_zeros(32 << 20))  # 32 MiB of zeros in ~32 KiB
    monkeypatch.setenv(BUDGET_ENV, "16M")
    with pytest.raises(CheckpointError, match=r"zeros\.pt declares 32\.0 MiB of data in 3\d\.\d KiB on disk"):
        read_torch(path)
    monkeypatch.setenv(BUDGET_ENV, "32M")
    w = read_torch(path)["w"]
    assert w.shape == (8 << 20,)
    assert w.dtype == torch.float32
    assert not w.any()


def test_npz_compressed_within_the_budget_and_not_beyond(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "zeros.npz"
    path.write_bytes(bombs.npz_zeros(32 << 20))
    monkeypatch.setenv(BUDGET_ENV, "16M")
    with pytest.raises(DataError, match=r"zeros\.npz declares 32\.0 MiB of data"):
        read_tensor_dict(path)
    monkeypatch.setenv(BUDGET_ENV, "32M")
    entries = read_tensor_dict(path)
    assert entries["inputs"].shape == (8 << 20,)
    assert entries["targets"].tolist() == [0] * 16


def test_a_real_compressed_npz_reads_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 3, 4)).astype(np.float32), rng.integers(0, 10, 20)
    np.savez_compressed(tmp_path / "d.npz", inputs=x, targets=y)
    got = read_npz(tmp_path / "d.npz", error=DataError)
    np.testing.assert_array_equal(got["inputs"].numpy(), x)
    np.testing.assert_array_equal(got["targets"].numpy(), y)


def _npz_with(entry: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(entry, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("entry", "data", "message"),
    [
        ("w.npy", bombs.npy_header((1000, 1000)) + bytes(16), "entry 'w' declares shape [1000, 1000] of float32"),
        ("w.npy", bombs.npy_header((2,)) + bytes(16), "entry 'w' declares shape [2] of float32 (8 bytes) but holds"),
        ("w.npy", b"\x93NUMPY\x01\x00\x10\x00{garbage}      \n", "entry w.npy is not a readable .npy array"),
        ("w.npy", b"PK not an array", "entry w.npy is not a readable .npy array (the magic string is not correct"),
        ("notes.txt", b"hello", "entry notes.txt is not a readable .npy array (not named .npy)"),
        ("w.npy", bombs.npy_header((2,), "<U3") + bytes(24), "entry 'w' is an array of strings (dtype <U3)"),
    ],
)
def test_npz_headers_are_checked_before_numpy_allocates(tmp_path: Path, entry: str, data: bytes, message: str) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(_npz_with(entry, data))
    with pytest.raises(CheckpointError) as exc:
        read_npz(path)
    assert message in exc.value.message


def test_a_single_npy_array_is_named(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(tmp_path / "a.pt")
    with pytest.raises(DataError, match="a single NumPy array"):
        read_tensor_dict(tmp_path / "a.pt")


# ------------------------------------------------------------------------------------------------- arrays


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.astype(">f4"),  # big-endian
        lambda a: np.asfortranarray(a),
        lambda a: a[:, ::-1],  # negative strides
        lambda a: a.astype(np.float16).astype(np.float32),
        lambda a: np.require(a, requirements="C").copy().view(a.dtype),
    ],
)
def test_arrays_become_tensors_of_the_same_numbers(make: Any) -> None:
    base = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    array = make(base)
    array.flags.writeable = False  # read-only arrays are copied, so torch cannot write through them
    t = tensor_from_array(array, "x")
    np.testing.assert_array_equal(t.numpy(), array)
    assert t.is_contiguous()


def test_a_zero_dimensional_array_stays_zero_dimensional() -> None:
    assert tensor_from_array(np.array(7, dtype=">i8"), "x").shape == ()


@pytest.mark.parametrize(
    ("dtype", "words"),
    [
        ("<U3", "strings (dtype <U3)"),
        ("S2", "bytes (dtype |S2)"),
        ("V4", "raw bytes (dtype |V4)"),
        ("datetime64[s]", "dates (dtype <M8[s])"),
        ("timedelta64[s]", "time spans (dtype <m8[s])"),
        ([("a", "<f4"), ("b", "<i4")], "records (structured dtype with fields a, b)"),
        (np.longdouble, "extended precision"),
        (object, "Python objects (dtype object), which only pickle can read"),
    ],
)
def test_arrays_of_non_numbers_are_refused_by_name(dtype: Any, words: str) -> None:
    array = np.zeros(2, dtype=dtype)
    assert words in (array_problem(array.dtype) or "")
    with pytest.raises(DataError, match=r"^f\.npz: entry 'x': an array of "):
        tensor_from_array(array, "f.npz: entry 'x'")


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint16, np.uint64, np.float16, np.float64, np.complex64])
def test_numeric_arrays_pass(dtype: Any) -> None:
    assert array_problem(np.dtype(dtype)) is None


# ------------------------------------------------------------------------------------------- tensor kinds


def _quietly(make: Any) -> torch.Tensor:
    with warnings.catch_warnings():  # quantized: deprecated; nested: prototype
        warnings.simplefilter("ignore", UserWarning)
        return make()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda: torch.eye(3).to_sparse(), "a sparse_coo tensor"),
        (lambda: torch.eye(3).to_sparse_csr(), "a sparse_csr tensor"),
        (lambda: torch.quantize_per_tensor(torch.eye(3), 0.1, 0, torch.qint8), "a quantized tensor (qint8)"),
        (lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]), "a nested tensor"),
        (lambda: torch.empty(3, device="meta"), "a meta tensor (shape only, no data)"),
        (lambda: torch.zeros(2, dtype=torch.uint8).view(torch.float4_e2m1fn_x2), "which torch cannot compute with"),
    ],
)
def test_tensors_interpscan_cannot_interpolate(make: Any, what: str) -> None:
    problem = tensor_kind_problem(_quietly(make))
    assert problem is not None
    assert what in problem[0]


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16, torch.float8_e4m3fn, torch.int64, torch.bool, torch.uint64]
)
def test_plain_tensors_pass(dtype: torch.dtype) -> None:
    assert tensor_kind_problem(torch.zeros(3, dtype=dtype)) is None


def test_every_odd_tensor_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"a": torch.eye(2).to_sparse(), "b": torch.empty(2, device="meta"), "c": torch.ones(2)}, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert exc.value.message == f"{path}: a is a sparse_coo tensor; b is a meta tensor (shape only, no data)"


def test_float8_weights_are_read_as_float32_exactly(tmp_path: Path) -> None:
    w = torch.linspace(-3, 3, 50).to(torch.float8_e4m3fn)
    path = tmp_path / "w.pt"
    torch.save({"w": w, "steps": torch.tensor(3)}, path)
    ckpt = load_checkpoint(path)
    assert ckpt.tensors["w"].dtype == torch.float32
    assert torch.equal(ckpt.tensors["w"], w.to(torch.float32))
    assert ckpt.info.dtypes == {"float8_e4m3fn": 1, "int64": 1}  # provenance: what the file holds


# ------------------------------------------------------------------------------------------------ pickles


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_legacy_torch_files_are_told_from_plain_pickles(tmp_path: Path, protocol: int) -> None:
    legacy, plain = tmp_path / "legacy.pt", tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    plain.write_bytes(pickle.dumps({"w": [1.0, 1.0]}, protocol=protocol))
    assert detect_format(legacy) == "torch-legacy"
    if protocol < 4:
        assert read_torch(legacy)["w"].tolist() == [1.0, 1.0]
    else:  # torch's safe unpickler does not read pickle frames
        with pytest.raises(CheckpointError, match="written with pickle protocol 4 or later"):
            read_torch(legacy)
        assert read_torch(legacy, unsafe_pickle=True)["w"].tolist() == [1.0, 1.0]
    with pytest.raises(DataError) as exc:
        read_tensor_dict(plain)
    assert (
        exc.value.message
        == f"{plain}: a Python pickle (pickle.dump), not torch.save output; unpickling it could run any code it names"
    )
    assert exc.value.hint is not None
    assert "interpscan does not unpickle data files" in exc.value.hint
    assert "np.savez" in exc.value.hint


def test_a_legacy_file_declaring_an_absurd_storage(tmp_path: Path) -> None:
    path = tmp_path / "absurd.pt"
    path.write_bytes(bombs.legacy_torch_declaring(1 << 30))
    with pytest.raises(CheckpointError, match="a tensor's declared size does not match the data the file holds"):
        read_torch(path)

"""Tensor files too large for memory, memory-mapped and streamed (data/mapped.py): with the resident limit lowered
(INTERPSCAN_RESIDENT_BYTES), each format streams batches equal to the resident path's, subsets and shares
included; whole scans give the resident scan's numbers; a file changed mid-scan is one error; what cannot be
mapped is read whole with a warning; the safe loader and the size checks still apply."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli

from interpscan.data import Split, TensorStream, open_data
from interpscan.data.source import RESIDENT_ENV, stream_reason
from interpscan.errors import DataError, UsageError
from interpscan.inputs import data_from_source

CPU = torch.device("cpu")


def _save_pt(path: Path, entries: dict[str, Any]) -> None:
    torch.save(entries, path)


def _save_safetensors(path: Path, entries: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in entries.items()}, str(path))


def _save_npz(path: Path, entries: dict[str, Any]) -> None:
    np.savez(path, **{k: v.numpy() for k, v in entries.items()})


SAVERS: dict[str, tuple[str, Callable[[Path, dict[str, Any]], None]]] = {
    "pt": (".pt", _save_pt),
    "safetensors": (".safetensors", _save_safetensors),
    "npz": (".npz", _save_npz),
}


def _images(n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (n, 3, 5, 5), generator=gen, dtype=torch.uint8)
    return torch.rand(n, 3, 5, 5, generator=gen).to(dtype)


def _write(tmp_path: Path, fmt: str, entries: dict[str, Any], name: str = "data") -> Path:
    suffix, save = SAVERS[fmt]
    path = tmp_path / f"{name}{suffix}"
    save(path, entries)
    return path


def _batches(split: Any, batch_size: int = 8, select: range | None = None) -> list[tuple[Any, torch.Tensor]]:
    return list(split.batches(batch_size, CPU, select))


def _opened(path: Path, monkeypatch: pytest.MonkeyPatch, limit: str | None, **kw: Any) -> Any:
    """The data of ``path`` as a scan reads it, with the resident limit ``limit`` (None: the default)."""
    if limit is None:
        monkeypatch.delenv(RESIDENT_ENV, raising=False)
    else:
        monkeypatch.setenv(RESIDENT_ENV, limit)
    return data_from_source(open_data(str(path)), kw.pop("splits", None), **kw)


def _assert_equal_batches(a: list[tuple[Any, torch.Tensor]], b: list[tuple[Any, torch.Tensor]]) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        if isinstance(xa, dict):
            assert xa.keys() == xb.keys()
            for k in xa:
                assert xa[k].dtype == xb[k].dtype
                assert torch.equal(xa[k], xb[k])
        else:
            assert xa.dtype == xb.dtype == torch.float32
            torch.testing.assert_close(xb, xa, rtol=1e-6, atol=1e-6)
        assert ya.dtype == yb.dtype
        assert torch.equal(ya, yb)


@pytest.mark.parametrize("fmt", sorted(SAVERS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32])
def test_each_format_streams_the_resident_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, dtype: torch.dtype
) -> None:
    n = 37  # not a multiple of the batch size
    y = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(1))
    path = _write(tmp_path, fmt, {"x": _images(n, dtype), "y": y})
    norm = "0.5/0.4/0.3,0.2/0.25/0.3"
    resident = _opened(path, monkeypatch, None, normalize=norm).splits[0]
    streamed = _opened(path, monkeypatch, "1K", normalize=norm).splits[0]
    assert isinstance(resident, Split)
    assert isinstance(streamed, TensorStream)
    assert len(streamed) == n
    assert streamed.num_batches(8) == 5
    a = _batches(resident)
    _assert_equal_batches(a, _batches(streamed))
    # a torchrun rank's share reads only its batches
    _assert_equal_batches(a[2:4], _batches(streamed, select=range(2, 4)))


@pytest.mark.parametrize("fmt", sorted(SAVERS))
def test_samples_draw_the_same_examples_streamed_or_resident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    path = _write(tmp_path, fmt, {"inputs": _images(50, torch.float32), "targets": torch.arange(50) % 3})
    resident = _opened(path, monkeypatch, None, samples=13, seed=5).splits[0]
    streamed = _opened(path, monkeypatch, "1K", samples=13, seed=5).splits[0]
    assert isinstance(streamed, TensorStream)
    assert streamed.indices == resident.indices is not None
    _assert_equal_batches(_batches(resident, 4), _batches(streamed, 4))


def test_named_text_inputs_stream_with_masked_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (20, 7), generator=gen)
    mask = (torch.arange(7) < torch.randint(2, 8, (20, 1), generator=gen)).long()
    path = _write(tmp_path, "pt", {"input_ids": ids, "attention_mask": mask, "labels": ids.clone()})
    resident = _opened(path, monkeypatch, None, class_targets=False).splits[0]
    streamed = _opened(path, monkeypatch, "100", class_targets=False).splits[0]
    assert isinstance(streamed, TensorStream)
    a, b = _batches(resident, 6), _batches(streamed, 6)
    _assert_equal_batches(a, b)
    assert int((torch.cat([y for _, y in b]) == -100).sum()) == int((mask == 0).sum()) > 0


def test_only_the_splits_too_large_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = {
        "train": {"x": _images(400, torch.uint8), "y": torch.arange(400) % 5},  # 120,000 bytes as float32
        "test": {"x": _images(30, torch.uint8, seed=1), "y": torch.arange(30) % 5},  # 9,000 bytes
    }
    path = _write(tmp_path, "pt", entries)
    data = _opened(path, monkeypatch, "50K", splits=["train", "test"])
    train, test = data.splits
    assert isinstance(train, TensorStream)
    assert isinstance(test, Split)
    assert torch.equal(test.inputs, entries["test"]["x"].float() / 255)  # type: ignore[arg-type]
    assert isinstance(data.calibration(64, 0), TensorStream)


def test_the_one_resident_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RESIDENT_ENV, raising=False)
    assert stream_reason(2 * 2**30) is None
    assert stream_reason(2 * 2**30 + 1) == "its float32 copy would take 2.0 GiB, more than 2.0 GiB"
    monkeypatch.setenv(RESIDENT_ENV, "512M")
    assert "more than 512.0 MiB" in str(stream_reason(600 << 20))
    monkeypatch.setenv(RESIDENT_ENV, "lots")
    with pytest.raises(UsageError, match=f"{RESIDENT_ENV}='lots' is not a size"):
        stream_reason(1)


def _scan_files(tmp_path: Path, fmt: str) -> Path:
    gen = torch.Generator().manual_seed(3)
    entries = {
        "x_train": torch.randint(0, 256, (96, 1, 28, 28), generator=gen, dtype=torch.uint8),
        "y_train": torch.randint(0, 10, (96,), generator=gen),
        "x_test": torch.randint(0, 256, (90, 1, 28, 28), generator=gen, dtype=torch.uint8),
        "y_test": torch.randint(0, 10, (90,), generator=gen),
    }
    return _write(tmp_path, fmt, entries)


@pytest.mark.parametrize("fmt", sorted(SAVERS))
def test_a_streamed_scan_equals_the_resident_scan(
    tmp_path: Path,
    ckpts: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
) -> None:
    data = _scan_files(tmp_path, fmt)
    args = ["run", *map(str, ckpts), "--model", "cnn", "--data", str(data), "--bn", "recompute", "--bn-samples", "50"]
    args += ["--alphas", "3", "--batch-size", "32", "--bootstrap", "20", "--no-html"]
    frames = []
    for limit in (None, "10K"):
        if limit is None:
            monkeypatch.delenv(RESIDENT_ENV, raising=False)
        else:
            monkeypatch.setenv(RESIDENT_ENV, limit)
        out = tmp_path / f"out-{limit}"
        code, err = run_cli(monkeypatch, capsys, *args, "--out", str(out))
        assert code == 0, err
        assert ("streams from a memory map" in err) == (limit is not None)
        frames.append((pd.read_csv(out / "results.csv"), pd.read_csv(out / "summary.csv")))
    for resident, streamed in zip(frames[0], frames[1], strict=True):
        pd.testing.assert_frame_equal(resident, streamed, rtol=1e-6)


def _rewrite(path: Path, how: str) -> None:
    if how == "truncated":
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    elif how == "replaced":
        path.with_suffix(".tmp").write_bytes(path.read_bytes())
        os.replace(path.with_suffix(".tmp"), path)
    else:  # rewritten in place, same size, later time
        st = path.stat()
        path.write_bytes(path.read_bytes())
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


@pytest.mark.parametrize("fmt", sorted(SAVERS))
@pytest.mark.parametrize("how", ["truncated", "replaced", "rewritten"])
def test_a_file_changed_mid_scan_stops_it_with_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, how: str
) -> None:
    path = _write(tmp_path, fmt, {"x": _images(40, torch.uint8), "y": torch.arange(40) % 2})
    stream = _opened(path, monkeypatch, "1K").splits[0]
    batches = stream.batches(8, CPU)
    next(batches)
    _rewrite(path, how)
    with pytest.raises(DataError, match="the data file changed during the scan") as info:
        next(batches)
    assert str(path) in str(info.value)
    assert "another name" in str(info.value.hint)


def test_a_file_changed_during_a_library_scan(
    tmp_path: Path, ckpts: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from interpscan import scan

    data = _scan_files(tmp_path, "pt")
    monkeypatch.setenv(RESIDENT_ENV, "10K")
    seen: list[Any] = []

    def progress(done: int, total: int | None) -> None:
        if not seen:
            _rewrite(data, "truncated")
        seen.append(done)

    with pytest.raises(DataError, match="changed during the scan"):
        scan("cnn", *ckpts, str(data), bn="interpolate", alphas=2, batch_size=16, bootstrap=0, progress=progress)


def _resident_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: Path) -> tuple[Split, list[str]]:
    said: list[str] = []
    monkeypatch.setenv(RESIDENT_ENV, "1K")
    source = open_data(str(path), log=said.append)
    split = data_from_source(source, None).splits[0]
    assert isinstance(split, Split)
    return split, said


def test_what_cannot_be_mapped_is_read_whole_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _images(30, torch.uint8), torch.arange(30) % 3
    expected = x.float() / 255
    compressed = tmp_path / "c.npz"
    np.savez_compressed(compressed, x=x.numpy(), y=y.numpy())
    legacy = tmp_path / "legacy.pt"
    torch.save({"x": x, "y": y}, legacy, _use_new_zipfile_serialization=False)
    rezipped = tmp_path / "rezipped.pt"
    torch.save({"x": x, "y": y}, tmp_path / "plain.pt")
    with zipfile.ZipFile(tmp_path / "plain.pt") as src, zipfile.ZipFile(rezipped, "w", zipfile.ZIP_DEFLATED) as dst:
        for e in src.infolist():
            dst.writestr(e.filename, src.read(e))
    big_endian = tmp_path / "be.npz"
    np.savez(big_endian, x=x.numpy().astype(">f4"), y=y.numpy())
    for path, why in (
        (compressed, "np.savez_compressed"),
        (legacy, "legacy (pre-1.6) torch file"),
        (rezipped, "re-zipped"),
        (big_endian, "stored >-endian"),
    ):
        split, said = _resident_with(tmp_path, monkeypatch, path)
        assert len(said) == 1, said
        assert said[0].startswith(f"warning: {path}: ")
        assert why in said[0]
        assert "read whole into memory; to stream it, re-save" in said[0]
        scale = 255 if path == big_endian else 1  # stored as floats 0..255, read as they are
        torch.testing.assert_close(split.inputs, expected * scale)  # type: ignore[arg-type]


def test_safe_loading_and_size_checks_apply_to_mapped_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RESIDENT_ENV, "1K")
    pickled = tmp_path / "objects.pt"
    torch.save({"x": _images(30, torch.uint8), "y": torch.arange(30), "extra": Path("/")}, pickled)
    with pytest.raises(DataError, match="refused to unpickle objects other than tensors"):
        open_data(str(pickled))
    # an entry whose header declares more rows than it holds: refused before anything is mapped
    short = tmp_path / "short.npz"
    header, y = io.BytesIO(), io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1000, 3, 5, 5)})
    np.save(y, np.zeros(30, np.int64))
    with zipfile.ZipFile(short, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + np.zeros((30, 3, 5, 5), np.float32).tobytes())
        zf.writestr("y.npy", y.getvalue())
    with pytest.raises(DataError, match=r"entry 'x' declares shape \[1000, 3, 5, 5\]"):
        open_data(str(short))


def _start(args: list[str], env: dict[str, str], out: Path) -> Any:
    """A real, slowed `interpscan ARGS` process, returned once it has saved a partial scan in ``out``."""
    import subprocess
    import sys
    import time

    from conftest import slow_main

    proc = subprocess.Popen([sys.executable, "-c", slow_main(0.2), *args], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / ".interpscan-partial.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc


@pytest.mark.slow
def test_the_cli_stops_on_a_changed_file_and_refuses_to_resume_after_it_changed(
    tmp_path: Path, ckpts: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    data = _scan_files(tmp_path, "pt")
    args = ["run", *map(str, ckpts), "--model", "cnn", "--data", str(data), "--bn", "interpolate", "--alphas", "11"]
    args += ["--batch-size", "10", "--bootstrap", "0", "--no-html", "-q"]
    env = {**os.environ, RESIDENT_ENV: "10K", "INTERPSCAN_SAVE_EVERY": "0", "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "changed"
    proc = _start([*args, "--out", str(out)], env, out)
    _rewrite(data, "replaced")  # a new inode: the old one stays mapped, so this cannot end in SIGBUS
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    assert f"error: {data}: the data file changed during the scan" in stderr
    assert "Traceback" not in stderr
    assert not (out / "results.csv").exists()

    out = tmp_path / "interrupted"  # an interrupted scan keeps its partial scan, which records the file
    proc = _start([*args, "--out", str(out)], env, out)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    _rewrite(data, "rewritten")
    monkeypatch.setenv(RESIDENT_ENV, "10K")
    code, err = run_cli(monkeypatch, capsys, *args, "--out", str(out), "--resume")
    assert code == 2
    assert "made with other inputs or options" in err

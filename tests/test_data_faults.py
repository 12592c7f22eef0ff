"""Data that misbehaves while it is read (issue #23's data classes): a DataLoader worker forked during the CLI's
background imports, image folders whose links leave the tree or reach an image twice, a mapped file rewritten in
place, options that cannot apply, memory that cannot fit, and the user's own datasets and loaders failing."""

from __future__ import annotations

import importlib
import io
import os
import resource
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs.streams import FACTORY

from interpscan.data import Transform, open_data
from interpscan.errors import DataError, UsageError
from interpscan.inputs import data_from_source

Image = pytest.importorskip("PIL.Image")


class _Imports(torch.utils.data.Dataset[int]):
    """Each item imports module ``name`` (in a DataLoader worker) and returns its VALUE."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> int:
        return int(importlib.import_module(self.name).VALUE)


def _child_imports(name: str) -> str:
    """Fork; the child imports ``name``: "imported", or "hung" when it has not after 2 s (then it is killed)."""
    pid = os.fork()
    if pid == 0:
        importlib.import_module(name)
        os._exit(0)
    for _ in range(20):
        if os.waitpid(pid, os.WNOHANG)[0]:
            return "imported"
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"


def test_a_worker_forked_during_the_warm_up_imports_waits_for_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two background imports, each 1.5 s long, and a process forked while each is under way. Through a plain daemon
    # thread (what the CLI's warm-up was on main), the child inherits a module lock that no thread of it holds, and
    # its own import of that module never returns. Through cli._in_background, the fork waits for the import: a
    # DataLoader worker reads its batch.
    from interpscan import cli

    plain, joined = (f"slow_{kind}_{tmp_path.name}".replace("-", "_") for kind in ("plain", "joined"))
    for name in (plain, joined):
        (tmp_path / f"{name}.py").write_text("import time\ntime.sleep(1.5)\nVALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    threading.Thread(target=importlib.import_module, args=(plain,), daemon=True).start()
    time.sleep(0.3)  # the import holds the module's lock now
    assert _child_imports(plain) == "hung"
    cli._in_background(lambda: importlib.import_module(joined) and None, "probe")
    time.sleep(0.3)
    loader = torch.utils.data.DataLoader(
        _Imports(joined), batch_size=2, num_workers=1, multiprocessing_context="fork", timeout=20
    )
    assert [b.tolist() for b in loader] == [[7, 7]]


def _grey_folder(root: Path, classes: str = "ab", per_class: int = 2) -> Path:
    gen = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(gen.integers(0, 256, (4, 4), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_a_class_folder_linking_to_the_root_is_refused_not_counted_twice(tmp_path: Path) -> None:
    # on main: the 4 images of a/ and b/ were read again under class c (c/a/0.png … labelled 2): 8 images, 3 classes
    root = _grey_folder(tmp_path / "imgs")
    (root / "c").symlink_to(root)
    with pytest.raises(DataError, match=r"c leads to .*imgs again \(a symbolic link to a folder already read\)"):
        open_data(str(root))


@pytest.mark.parametrize("where", ["/", "elsewhere"])
def test_a_link_out_of_the_folder_is_refused_before_it_is_walked(tmp_path: Path, where: str) -> None:
    # on main: a class folder linking to / made the listing walk the whole file system; one linking to a folder
    # of images outside the dataset read them as class c
    root = _grey_folder(tmp_path / "imgs")
    target = Path(where) if where == "/" else _grey_folder(tmp_path / where, classes="x") / "x"
    (root / "c").symlink_to(target)
    with pytest.raises(DataError, match=rf"imgs/c is a symbolic link to {target}, outside the image folder"):
        open_data(str(root))
    (root / "c").unlink()
    (root / "b" / "deeper").symlink_to(target)  # a folder linked inside a class folder: the same rule
    with pytest.raises(DataError, match=rf"b/deeper is a symbolic link to {target}, outside the image folder"):
        open_data(str(root))


def test_an_image_linked_into_a_second_class_is_refused(tmp_path: Path) -> None:
    root = _grey_folder(tmp_path / "imgs")
    (root / "b" / "9.png").symlink_to(root / "a" / "0.png")
    with pytest.raises(DataError, match=r"b/9.png is .*a/0.png again .*the image would count twice"):
        open_data(str(root))


def test_links_inside_the_folder_are_followed_once(tmp_path: Path) -> None:
    root = _grey_folder(tmp_path / "imgs", classes="a")
    _grey_folder(root / ".store", classes="x", per_class=3)  # hidden: no class of its own
    (root / "b").symlink_to(root / ".store" / "x")
    (root / "a" / "notes.txt").symlink_to("/etc/hostname")  # not an image: never read, wherever it leads
    source = open_data(str(root))
    assert source.classes == ("a", "b")
    assert source.files is not None
    assert [(p.relative_to(root).as_posix(), label) for p, label in source.files("test")] == [
        ("a/0.png", 0),
        ("a/1.png", 0),
        ("b/0.png", 1),
        ("b/1.png", 1),
        ("b/2.png", 1),
    ]
    x, y = source.read("test")
    assert x.shape == (5, 1, 4, 4)
    assert y.tolist() == [0, 0, 1, 1, 1]


def test_a_crop_larger_than_the_images_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    # on main: each worker decoded its images and the refusal came back through the DataLoader, after the fork
    # (a crop past the resize could not be caught at all before the images were read)
    source = open_data(str(_grey_folder(tmp_path / "imgs")))
    stream = data_from_source(source, None, transform=Transform(None, 16), workers=2).splits[0]
    with pytest.raises(DataError, match=r"imgs/a/0.png: 4×4 is smaller than crop=16; add resize=16 or more$"):
        next(stream.batches(4, torch.device("cpu")))
    with pytest.raises(UsageError, match=r"^crop=20 is larger than resize=16: after the resize an image's shorter"):
        Transform(16, 20)


def test_a_resize_that_cannot_fit_is_refused_with_the_number(tmp_path: Path) -> None:
    # 8 images of 8×512 pixels, resized to a shorter side of 8192: 8192×524288 each, 32 Gi values a batch; on main
    # the first worker resized the first of them (4 GiB) before anything was checked, and the allocator ended the
    # run with an internal error. Refused from the images' headers: the process grows by less than the bound.
    root = tmp_path / "imgs"
    gen = np.random.default_rng(0)
    for c in "ab":
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(gen.integers(0, 256, (512, 8), dtype=np.uint8)).save(root / c / f"{i}.png")
    stream = data_from_source(open_data(str(root)), None, transform=Transform(8192, None), workers=1).splits[0]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with pytest.raises(DataError) as caught:
        next(stream.batches(256, torch.device("cpu")))
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < 64 * 2**20  # bound: 64 MiB (headers only; one resized image alone would take 4 GiB)
    # host: 32 Gi values × (2 + 2 per worker) bytes as uint8, plus × 12 bytes as float32 on the CPU
    assert caught.value.message == (
        f"{root}: a batch of 8 images of up to 8192×524288 pixels needs at least 512.0 GiB of host memory, "
        "more than is free"
    )
    assert str(caught.value.hint).endswith(
        "is free: one image alone does not fit, or bring the images to fewer pixels with resize and crop"
    )


def test_image_options_on_tensor_data_are_refused(tmp_path: Path) -> None:
    # on main: ignored, while run.json recorded the transform
    torch.save({"x": torch.rand(4, 1, 8, 8), "y": torch.arange(4)}, tmp_path / "t.pt")
    source = open_data(str(tmp_path / "t.pt"))
    with pytest.raises(UsageError, match=r"^resize, crop apply to image folders, and t.pt is a tensor file$"):
        data_from_source(source, None, transform=Transform(8, 8))
    with pytest.raises(UsageError, match=r"^workers applies to image folders, and t.pt is a tensor file$"):
        data_from_source(source, None, workers=2)


def _data_bytes(seed: int) -> bytes:
    """A torch.save file of 2 MiB of uint8 images (sampled, not hashed whole) and labels, the same layout for
    every seed."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (2048, 1, 32, 32), generator=gen, dtype=torch.uint8)
    buffer = io.BytesIO()
    torch.save({"x": x, "y": torch.randint(0, 10, (2048,), generator=gen)}, buffer)
    return buffer.getvalue()


def _same_size_other_data(path: Path, seed: int) -> None:
    """``path`` rewritten in place (the same inode) with other values, its size and modification time kept."""
    st = path.stat()
    with path.open("r+b") as fh:
        fh.write(_data_bytes(seed))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


@pytest.fixture
def mapped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INTERPSCAN_RESIDENT_BYTES", "1K")
    path = tmp_path / "data.pt"
    path.write_bytes(_data_bytes(0))
    return path


def test_a_mapped_file_rewritten_in_place_with_its_size_and_time_is_noticed(mapped_file: Path) -> None:
    # on main: the stamp (device, inode, size, mtime) was the same, and the scan went on reading the new values
    stream = data_from_source(open_data(str(mapped_file)), None).splits[0]
    batches = stream.batches(512, torch.device("cpu"))
    next(batches)
    _same_size_other_data(mapped_file, 1)
    with pytest.raises(DataError, match="the data file changed during the scan"):
        next(batches)


def test_a_resume_sees_a_rewrite_by_its_content(mapped_file: Path) -> None:
    # on main: the resume's fingerprint (path, size, mtime) was the same before and after the rewrite
    from interpscan.data.mapped import FileStamp

    before = FileStamp.of(mapped_file)
    _same_size_other_data(mapped_file, 1)
    after = FileStamp.of(mapped_file)
    assert (after.size, after.mtime_ns, after.inode) == (before.size, before.mtime_ns, before.inode)
    assert after.sample != before.sample  # the bytes, without the change time (a file copied back keeps them)
    assert str(after) != str(before)
    _same_size_other_data(mapped_file, 0)
    assert FileStamp.of(mapped_file).sample == before.sample


@pytest.mark.parametrize(
    ("fn", "said"),
    [
        ("by_item", r"by_item' \[test\]: item 5: the data raised KeyError: 'no row 5'$"),
        ("by_len", r"by_len' \[test\]: its dataset's length: the data raised OSError: the shard index is gone$"),
    ],
)
def test_a_factorys_dataset_that_raises_is_one_data_error(tmp_path: Path, fn: str, said: str) -> None:
    # on main: the KeyError and the OSError came through as they were (the CLI's "internal error … a bug")
    (tmp_path / "make.py").write_text(FACTORY)  # the corpus's (bad_inputs/streams.py)
    with pytest.raises(DataError, match=said) as caught:
        open_data(f"{tmp_path / 'make.py'}:{fn}")
    assert caught.value.hint == "INTERPSCAN_DEBUG=1 shows its traceback"


class _FailsAt(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if i == 9:
            raise ValueError(f"row {i} is damaged")
        return torch.zeros(1, 28, 28), i % 10


@pytest.mark.parametrize("workers", [0, 1])
def test_a_loader_failing_mid_scan_is_a_run_error_of_the_library(ckpts: tuple[Path, Path], workers: int) -> None:
    # on main: ValueError (in the process) or torch's "Caught ValueError in DataLoader worker process 0" with the
    # worker's traceback in its message, out of interpscan.scan
    from interpscan import scan
    from interpscan.errors import RunError

    loader = torch.utils.data.DataLoader(_FailsAt(), batch_size=4, num_workers=workers)
    with pytest.raises(RunError) as caught:
        scan("cnn", *ckpts, loader, model_args={"width": 4}, bn="interpolate", alphas=2, bootstrap=0)
    where = " (in DataLoader worker process 0)" if workers else ""
    assert caught.value.message == f"data['test'] batch 2: the data raised ValueError: row 9 is damaged{where}"


def test_data_on_the_meta_device_is_refused(ckpts: tuple[Path, Path]) -> None:
    # on main: NotImplementedError "Cannot copy out of meta tensor; no data!" out of the library (tensor files and
    # factories were refused already)
    from interpscan import scan

    x, y = torch.empty(8, 1, 28, 28, device="meta"), torch.zeros(8, dtype=torch.int64, device="meta")
    for data, where in (((x, y), r"data\['test'\]"), ([(x, y)], r"data\['test'\] batch 0")):
        with pytest.raises(
            DataError, match=rf"^{where}: the tensors are on the meta device \(shapes without values\)$"
        ):
            scan("cnn", *ckpts, data, model_args={"width": 4}, bn="interpolate", alphas=2, bootstrap=0)


def test_a_streaming_worker_killed_by_the_system_is_a_run_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on main: torch's RuntimeError "DataLoader worker (pid …) is killed by signal: Killed.", which the CLI calls an
    # internal error (seen when the resize above ran on main: the system killed the worker for memory)
    from interpscan.data import images
    from interpscan.errors import RunError

    source = open_data(str(_grey_folder(tmp_path / "imgs")))
    stream = data_from_source(source, None, transform=Transform(None, 4), workers=1).splits[0]
    monkeypatch.setattr(images, "_read", lambda *_: os.kill(os.getpid(), signal.SIGKILL))  # in the forked worker
    with pytest.raises(RunError, match=r"imgs: DataLoader worker \(pid\(?s?\)? \d+\) .*(Killed|exited unexpectedly)"):
        next(stream.batches(4, torch.device("cpu")))

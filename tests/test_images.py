"""Image folders streamed through DataLoader workers: the evaluation transform against a plain reference, the
streamed batches equal to the resident ones, --workers, --data imagenet's layout and its error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import run_cli

from interpscan.data import ImageStream, Transform, open_data
from interpscan.data.images import default_workers, stream_choice
from interpscan.errors import DataError, UsageError
from interpscan.inputs import data_from_source

Image = pytest.importorskip("PIL.Image")


def _folder(root: Path, sizes: list[tuple[int, int]], classes: int = 2, fmt: str = "png", mode: str = "RGB") -> Path:
    gen = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        d = root / f"c{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        shape = (h, w) if mode == "L" else (h, w, 3)
        Image.fromarray(gen.integers(0, 256, shape, dtype=np.uint8), mode).save(d / f"{i:03d}.{fmt}")
    return root


def _reference(image: Image.Image, resize: int, crop: int) -> np.ndarray:  # type: ignore[type-arg]
    """torchvision's Resize(resize) + CenterCrop(crop), written out."""
    w, h = image.size
    size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    image = image.resize(size, Image.BILINEAR)
    w, h = image.size
    top, left = round((h - crop) / 2.0), round((w - crop) / 2.0)
    return np.asarray(image)[top : top + crop, left : left + crop]


@pytest.mark.parametrize("size", [(40, 30), (30, 40), (33, 33), (64, 17)])
def test_transform_equals_the_reference(size: tuple[int, int]) -> None:
    gen = np.random.default_rng(1)
    image = Image.fromarray(gen.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    got = np.asarray(Transform(16, 12).apply(image))
    np.testing.assert_array_equal(got, _reference(image, 16, 12))
    assert got.shape == (12, 12, 3)


def test_transform_checks_its_sizes() -> None:
    with pytest.raises(UsageError, match=r"^crop must be a whole number of pixels"):
        Transform(None, 0)
    with pytest.raises(DataError, match=r"^40×60 is smaller than crop=50; add resize=50 or more$"):
        Transform(None, 50).apply(Image.new("RGB", (40, 60)))


def _batches(split, batch_size: int = 4, select=None) -> list[tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[no-untyped-def]
    return list(split.batches(batch_size, torch.device("cpu"), select))


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_the_resident_ones(tmp_path: Path, workers: int) -> None:
    source = open_data(str(_folder(tmp_path / "f", [(10, 10)] * 11, classes=3)))
    norm = "0.5/0.4/0.3,0.2/0.25/0.3"
    resident = data_from_source(source, None, normalize=norm).splits[0]
    # a crop of the whole image changes nothing, and makes the folder stream
    streamed = data_from_source(source, None, normalize=norm, transform=Transform(None, 10), workers=workers)
    stream = streamed.splits[0]
    assert isinstance(stream, ImageStream)
    assert stream.workers == workers
    a, b = _batches(resident), _batches(stream)
    assert len(a) == len(b) == 3
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xb.dtype == torch.float32
        torch.testing.assert_close(xa, xb, rtol=0, atol=0)
        assert torch.equal(ya, yb)
    # a share of the batches (a torchrun rank's) decodes only those
    ((x1, y1), (x2, y2)) = _batches(stream, select=range(1, 3))
    assert torch.equal(x1, a[1][0])
    assert torch.equal(y1, a[1][1])
    assert torch.equal(x2, a[2][0])
    assert torch.equal(y2, a[2][1])


def test_samples_draw_the_same_images_streamed_or_resident(tmp_path: Path) -> None:
    source = open_data(str(_folder(tmp_path / "f", [(8, 8)] * 20, mode="L")))
    resident = data_from_source(source, None, samples=7, seed=3).splits[0]
    stream = data_from_source(source, None, samples=7, seed=3, transform=Transform(None, 8), workers=0).splits[0]
    assert isinstance(stream, ImageStream)
    assert stream.indices == resident.indices  # type: ignore[attr-defined]
    (xa, ya), (xb, yb) = _batches(resident, 7)[0], _batches(stream, 7)[0]
    assert xb.shape == (7, 1, 8, 8)
    assert torch.equal(xa, xb)
    assert torch.equal(ya, yb)


def test_images_of_several_sizes_stream_with_resize_and_crop(tmp_path, ckpts, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = _folder(tmp_path / "f", [(40, 30), (28, 50), (31, 31), (60, 45)] * 3, fmt="jpg", mode="L")
    args = ["run", *map(str, ckpts), "--model", "cnn", "--data", str(folder), "--bn", "interpolate"]
    code, err = run_cli(monkeypatch, capsys, *args, "--out", str(tmp_path / "a"))
    assert code == 2
    assert "images of 4 sizes" in err
    assert "--resize" in err
    out = tmp_path / "b"
    code, err = run_cli(
        monkeypatch, capsys, *args, "--resize", "32", "--crop", "28", "--workers", "0", "--out", str(out), "--no-html"
    )
    assert code == 0, err
    assert "streams (a resize or crop was asked for), 0 workers" in err
    assert (out / "results.csv").exists()


def test_the_resident_path_stays_for_what_fits() -> None:
    assert stream_choice(60_000, (28, 28), True, Transform()) is None
    assert "GiB" in str(stream_choice(50_000, (256, 256), False, Transform()))
    assert stream_choice(10, (8, 8), True, Transform(8, None)) == "a resize or crop was asked for"


def test_default_workers_share_the_cores() -> None:
    assert 0 <= default_workers({}) <= 8
    assert default_workers({"LOCAL_WORLD_SIZE": "1000"}) == 0
    assert default_workers({"LOCAL_WORLD_SIZE": ""}) == default_workers({})


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_malformed_local_world_size_is_the_users_mistake(value: str) -> None:
    """Before: "two" raised int()'s ValueError, an internal error; "0" and "-1" were taken as 1."""
    with pytest.raises(UsageError, match=f"LOCAL_WORLD_SIZE={value!r} is not a whole number ≥ 1"):
        default_workers({"LOCAL_WORLD_SIZE": value})


def test_imagenet_is_found_in_torchvisions_layout_and_never_downloaded(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        open_data("imagenet", tmp_path)
    assert f"{tmp_path}/imagenet/val/<wnid>/" in info.value.message
    assert "never downloaded" in str(info.value.hint)
    _folder(tmp_path / "imagenet" / "val", [(300, 260), (260, 300)], classes=2, fmt="jpg")
    (tmp_path / "imagenet" / "val" / "c0").rename(tmp_path / "imagenet" / "val" / "n01440764")
    source = open_data("imagenet", tmp_path)
    assert source.name == "imagenet"
    assert source.splits == ("test",)
    data = data_from_source(source, None, workers=0)
    (x, y), *_ = _batches(data.splits[0], 2)
    assert x.shape == (2, 3, 224, 224)  # the preset: resize 256, crop 224
    assert y.tolist() == [0, 1]
    assert data.normalization == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_the_library_scan_takes_the_streaming_knobs(tmp_path: Path) -> None:
    from interpscan import scan
    from interpscan.models import build_model, parse_model_spec

    # 12 grey images of shorter side 30 (no-op resize) and two sizes: only resize + crop brings them to one
    folder = _folder(tmp_path / "f", [(30, 40), (44, 30)] * 6, classes=3, mode="L")
    spec = parse_model_spec("cnn", {"width": 4, "num_classes": 3})
    torch.manual_seed(0)
    a, b = build_model(spec), build_model(spec)
    said: list[str] = []
    kw: dict[str, Any] = {"bn": "interpolate", "alphas": 3, "bootstrap": 0, "batch_size": 5}
    with pytest.raises(DataError, match="images of 2 sizes"):
        scan(a, a.state_dict(), b.state_dict(), str(folder), **kw)
    streamed = scan(
        a, a.state_dict(), b.state_dict(), str(folder), resize=30, crop=28, workers=0, log=said.append, **kw
    )
    assert any("streams (a resize or crop was asked for), 0 workers" in line for line in said)
    # the reference: each image's centre 28 × 28, cut out by hand, scanned as tensors
    files = sorted(folder.rglob("*.png"), key=lambda p: (p.parent.name, p.name))
    crops = []
    for path in files:
        pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
        h, w = pixels.shape
        top, left = round((h - 28) / 2), round((w - 28) / 2)
        crops.append(torch.from_numpy(pixels[top : top + 28, left : left + 28].copy()))
    x = torch.stack(crops).unsqueeze(1)
    y = torch.tensor([int(p.parent.name.removeprefix("c")) for p in files])
    reference = scan(a, a.state_dict(), b.state_dict(), (x, y), **kw)
    for column in ("loss", "accuracy"):
        np.testing.assert_allclose(streamed.results[column], reference.results[column], rtol=1e-6, atol=1e-7)
    with pytest.raises(UsageError, match="this data is in memory"):
        scan(a, a.state_dict(), b.state_dict(), (x, y), crop=28, **kw)
    with pytest.raises(UsageError, match=r"^crop must be a whole number"):
        scan(a, a.state_dict(), b.state_dict(), str(folder), crop=0, **kw)

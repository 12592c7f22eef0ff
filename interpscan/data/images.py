"""Image folders read lazily, for datasets larger than memory: DataLoader workers decode each image and apply
the evaluation transform (shorter side resized, centre crop), the pixels stay uint8 until they reach the device,
and are normalized there. Peak memory is bounded by the batch size and the workers, not the dataset.

``stream_choice`` decides between this and the resident fast path (data/user.py reads a small folder into
memory once); ``ImageStream`` is the streamed split, a ``Batches`` of the engine.
"""

from __future__ import annotations

import importlib
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, RunError, UsageError, opt
from ..files import describe_size
from ..values import env_number
from .batches import Batch
from .source import DataSource, stream_reason

IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
GREY_MODES = frozenset({"1", "L", "LA", "La"})
HEADERS_SAMPLED = 16  # a streamed folder is grey when its first images all are (reading every header is slow)


@dataclass(frozen=True)
class Transform:
    """The evaluation transform: the shorter side resized to ``resize`` pixels (bilinear, aspect kept), then a
    centre crop of ``crop`` × ``crop``; either may be None (left out). ``IMAGENET`` is the convention."""

    resize: int | None = None
    crop: int | None = None

    def __post_init__(self) -> None:
        for value, name in ((self.resize, "resize"), (self.crop, "crop")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8192):
                raise UsageError(f"{opt(name)} must be a whole number of pixels from 1 to 8192, got {value!r}")
        if self.resize is not None and self.crop is not None and self.crop > self.resize:
            raise UsageError(
                f"{opt('crop', self.crop)} is larger than {opt('resize', self.resize)}: after the resize an image's "
                f"shorter side is {self.resize} pixels, too short for the crop",
                hint=f"make {opt('crop')} at most {opt('resize')} (e.g. {opt('resize', 256)} {opt('crop', 224)})",
            )

    def __bool__(self) -> bool:
        return self.resize is not None or self.crop is not None

    def _resized(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) after the resize alone: the shorter side ``resize``, the longer one scaled with it."""
        w, h = size
        if self.resize is None:
            return w, h
        short, long = (w, h) if w <= h else (h, w)
        if short == self.resize:
            return w, h
        other = int(self.resize * long / short)
        return (self.resize, other) if w <= h else (other, self.resize)

    def size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of an image of ``size`` once through the transform (what ``apply`` makes).

        Raises:
            DataError: an image smaller than the crop.
        """
        w, h = self._resized(size)
        if self.crop is None:
            return w, h
        if w < self.crop or h < self.crop:
            raise DataError(f"{w}×{h} is smaller than {opt('crop', self.crop)}; add {opt('resize', self.crop)} or more")
        return self.crop, self.crop

    def apply(self, image: Any) -> Any:
        """A PIL image through the transform (torchvision's Resize(resize) then CenterCrop(crop) rules).

        Raises:
            DataError: an image smaller than the crop.
        """
        self.size(image.size)  # an image smaller than the crop is refused before it is resized
        resized = self._resized(image.size)
        if resized != image.size:
            image = image.resize(resized, resample=2)  # 2: Image.BILINEAR (antialiased in Pillow, as torchvision)
        if self.crop is not None:
            w, h = image.size
            top, left = round((h - self.crop) / 2.0), round((w - self.crop) / 2.0)
            image = image.crop((left, top, left + self.crop, top + self.crop))
        return image


IMAGENET = Transform(256, 224)


def default_workers(env: Mapping[str, str] | None = None) -> int:
    """DataLoader workers per process when --workers is not given: the cores this process may use, shared with
    the other processes torchrun started on the node (LOCAL_WORLD_SIZE), less one for the process itself;
    at most 8."""
    env = os.environ if env is None else env
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(env_number("LOCAL_WORLD_SIZE", 1, whole=True, low=1, hint="torchrun sets it: unset it", env=env))
    return max(0, min(8, cores // local - 1))


def _pillow() -> Any:
    return importlib.import_module("PIL.Image")


def _read(path: Path, grey: bool, transform: Transform) -> torch.Tensor | str:
    """One image as uint8 (C, H, W), or the reason it cannot be read (raised in the main process: an exception
    from a worker would reach the user wrapped in the worker's traceback)."""
    image = _pillow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", image.DecompressionBombWarning)
            with image.open(path) as im:
                if str(im.mode) in ("I", "F") or str(im.mode).startswith("I;16"):
                    return (
                        f"{path}: an image of {im.mode} pixels, which is read only into memory "
                        f"(drop {opt('resize')}/{opt('crop')})"
                    )
                pixels = np.asarray(transform.apply(im.convert("L" if grey else "RGB")), dtype=np.uint8)
    except DataError as exc:  # an image smaller than the crop: its text with the options still marked (errors.opt)
        return f"{path}: {exc.text}"
    except ValueError as exc:
        return f"{path}: {exc}"
    except Exception as exc:  # a damaged image raises anything from OSError ("truncated") to SyntaxError
        return f"{path}: the image cannot be decoded ({type(exc).__name__}: {exc})"
    x = torch.from_numpy(pixels.copy())
    return x.unsqueeze(0) if grey else x.permute(2, 0, 1).contiguous()


class ImageFiles(torch.utils.data.Dataset[tuple[torch.Tensor | str, int]]):
    """Image files and their labels, read one at a time (in a DataLoader worker)."""

    def __init__(self, files: Sequence[tuple[Path, int]], grey: bool, transform: Transform) -> None:
        self.files, self.grey, self.transform = list(files), grey, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | str, int]:
        path, label = self.files[i]
        return _read(path, self.grey, self.transform), label


def _as_list(items: list[Any]) -> list[Any]:
    """The DataLoader's collate: the items as they are, stacked in the main process (see ImageStream)."""
    return items


def _stack(items: list[tuple[torch.Tensor | str, int]], where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of decoded images as (B, C, H, W) uint8 and their labels.

    Raises:
        DataError: an image that could not be read, or images of several sizes in one batch.
    """
    for pixels, _ in items:
        if isinstance(pixels, str):
            raise DataError(pixels)
    images = [p for p, _ in items if isinstance(p, torch.Tensor)]
    sizes = sorted({tuple(p.shape[1:]) for p in images})
    if len(sizes) > 1:
        shown = ", ".join(f"{w}×{h}" for h, w in sizes[:4])
        raise DataError(
            f"{where}: images of {len(sizes)} sizes in one batch ({shown})",
            hint=f"add {opt('crop')} N (and {opt('resize')} M ≥ N) to bring them to one size",
        )
    return torch.stack(images), torch.tensor([label for _, label in items], dtype=torch.int64)


def normalize_on_device(x: torch.Tensor, normalization: Any) -> torch.Tensor:
    """uint8 pixels (on their device) as float32 in [0, 1], then (x − mean) / std per channel (dim 1)."""
    x = x.float().div_(255.0)
    if normalization is None:
        return x
    mean, std = (torch.tensor(v, dtype=torch.float32, device=x.device).reshape(-1) for v in normalization)
    channels = x.shape[1]
    shape = (1, -1, 1, 1)
    if max(mean.numel(), std.numel()) not in (1, channels):
        raise DataError(
            f"{opt('normalize')} has {max(mean.numel(), std.numel())} values per channel but the images have "
            f"{channels} channels",
            hint="give one mean and std, or one per channel",
        )
    return (x - mean.reshape(shape)) / std.reshape(shape)


class ImageStream:
    """One split of an image folder, streamed: a ``Batches`` whose batches a DataLoader with ``workers``
    processes reads (``select``: only those batches' images are decoded). ``indices``: the --samples subset's,
    for run.json."""

    def __init__(
        self,
        name: str,
        files: ImageFiles,
        normalization: Any,
        workers: int,
        indices: tuple[int, ...] | None = None,
        where: str = "",
    ) -> None:
        self.name, self.files, self.normalization, self.workers = name, files, normalization, workers
        self.indices, self.where = indices, where or name

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"ImageStream({self.name!r}, {len(self)} images, workers={self.workers})"

    def num_batches(self, batch_size: int) -> int | None:
        return math.ceil(len(self) / batch_size)

    def _size(self, path: Path, size: tuple[int, int]) -> tuple[int, int]:
        try:
            return self.files.transform.size(size)  # type: ignore[no-any-return]
        except DataError as exc:  # an image smaller than the crop, found from its header before any is decoded
            raise DataError(f"{path}: {exc.text}") from None

    def batches(self, batch_size: int, device: torch.device, select: range | None = None) -> Iterator[Batch]:
        from torch.utils.data import DataLoader, Subset

        n = len(self)
        chosen = range(n) if select is None else range(select.start * batch_size, min(select.stop * batch_size, n))
        if not len(chosen):
            return
        largest = (0, (0, 0), 0)  # (pixels, one image's size, images) of the batch with the most pixels
        for b in range(chosen.start, chosen.stop, batch_size):  # before any worker decodes them
            part = [p for p, _ in self.files.files[b : min(b + batch_size, n)]]
            whole = len(part) == n
            where = f"{len(part)} images in the {self.name} split" + ("" if whole else f", batch {b // batch_size}")
            headers = check_batch(part, f"{self.where} ({where})")
            sizes = [self._size(path, size) for path, (_, size) in zip(part, headers, strict=True)]
            pixels = sum(w * h for w, h in sizes) * (1 if self.files.grey else 3)
            largest = max(largest, (pixels, max(sizes), len(part)))
        check_memory(*largest, self.workers, device, self.where)
        loader = DataLoader(
            Subset(self.files, chosen),
            batch_size=batch_size,
            num_workers=self.workers,
            collate_fn=_as_list,
            pin_memory=device.type == "cuda",
        )
        for items in _workers_ended(loader, self.where, self.workers):
            x, y = _stack(items, self.where)
            if device.type == "cuda":
                x = x.pin_memory()
            yield normalize_on_device(x.to(device, non_blocking=True), self.normalization), y.to(device)


def _workers_ended(loader: Iterable[Any], where: str, workers: int) -> Iterator[Any]:
    """The loader's batches; a worker that died (killed by the system, most often for memory) as a RunError
    instead of torch's RuntimeError: the images are checked before they are read, so the run failed, not them.

    Raises:
        RunError: a DataLoader worker ended before its batches were read.
    """
    it = iter(loader)
    while True:
        try:
            items = next(it)
        except StopIteration:
            return
        except RuntimeError as exc:
            if "DataLoader worker" not in str(exc):
                raise
            text = " ".join(str(exc).split())
            raise RunError(
                f"{where}: {text}",
                hint=f"a worker killed by the system most often ran out of memory: lower {opt('workers')} (now "
                f"{workers}) or {opt('batch_size')}",
            ) from exc
        yield items


def resident_bytes(count: int, size: tuple[int, int], grey: bool) -> int:
    """Bytes of a resident float32 copy of ``count`` images of ``size`` (width, height)."""
    return count * size[0] * size[1] * (1 if grey else 3) * 4


def stream_choice(count: int, first_size: tuple[int, int], grey: bool, transform: Transform) -> str | None:
    """Why an image folder's split streams, or None for the resident fast path: a transform was asked for (the
    resident path reads images as they are), or its float32 copy is too large (source.stream_reason)."""
    if transform:
        return "a resize or crop was asked for"
    return stream_reason(resident_bytes(count, first_size, grey))


def _headers(files: Sequence[Path]) -> list[tuple[str, tuple[int, int]]]:
    """(mode, (width, height)) of each image, from its header, with the resident path's checks (a regular file,
    not a decompression bomb, pixels of a known range)."""
    from .user import image_header

    image = _pillow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", image.DecompressionBombWarning)
        return [image_header(image, path) for path in files]


def check_batch(files: Sequence[Path], what: str) -> list[tuple[str, tuple[int, int]]]:
    """Refuse a batch whose images declare more pixels than their files' sizes allow (files.check_expansion):
    the bound the resident path sets on a whole split, set here on what is decoded at once.

    Returns:
        Each image's (mode, (width, height)), from its header.

    Raises:
        DataError: too many pixels, or an image the header check refuses.
    """
    from ..files import check_expansion

    headers = _headers(files)
    declared = sum(w * h * (1 if mode in GREY_MODES else 3) for mode, (w, h) in headers)
    check_expansion(what, declared, sum(p.stat().st_size for p in files), DataError)
    return headers


PREFETCH = 2  # batches each DataLoader worker decodes ahead (torch's default prefetch_factor)


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new allocations: the GPU's free memory, or the host's (Linux's MemAvailable); None when
    the system cannot tell."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(
    pixels: int, size: tuple[int, int], images: int, workers: int, device: torch.device, where: str
) -> None:
    """Refuse a streamed batch of ``pixels`` values (``images`` of up to ``size`` once transformed) that cannot
    fit, before any is decoded: on the host, uint8 copies of it (one per batch in flight in the workers, the list
    and its stack); on the device, float32 ones (the pixels, normalized, and a first layer's output of their
    size). A lower bound: the model's activations come on top.

    Raises:
        DataError: the batch needs more than the memory available; the message says how much, and what to lower.
    """
    host = pixels * (2 + PREFETCH * workers)
    on_device = pixels * 4 * 3
    need = {"cuda": on_device} if device.type == "cuda" else {}
    need["cpu"] = host + (0 if device.type == "cuda" else on_device)
    for kind, bytes_needed in need.items():
        free = available_memory(device if kind == "cuda" else torch.device("cpu"))
        if free is None or bytes_needed <= free:
            continue
        fit = images * free // bytes_needed
        lower = f"lower {opt('batch_size')} to {fit} or less" if fit else "one image alone does not fit"
        raise DataError(
            f"{where}: a batch of {images} images of up to {size[0]}×{size[1]} pixels needs at least "
            f"{describe_size(bytes_needed)} of {'GPU' if kind == 'cuda' else 'host'} memory, more than is free",
            hint=f"{describe_size(free)} is free: {lower}, or bring the images to fewer pixels with {opt('resize')} "
            f"and {opt('crop')}",
        )


def open_imagenet(root: Path | None) -> DataSource:
    """ImageNet (ILSVRC2012) as it lies under ``root`` (--data-root, else the cache root): class folders of the
    validation images, ``val/<wnid>/*.JPEG`` (torchvision's layout), in ``root/imagenet``, ``root/ILSVRC2012`` or
    ``root`` itself; a ``train/`` beside it serves --bn recompute. Never downloaded (its licence). Its transform
    and normalization are ImageNet's convention (resize 256, crop 224, the mean and std of its training set).

    Raises:
        DataError: no such folder; the message says where to put it.
    """
    from dataclasses import replace

    from .named import default_root
    from .user import image_folder_source

    base = root if root is not None else default_root()
    for folder in (base / "imagenet", base / "ILSVRC2012", base):
        val = folder / "val"
        if val.is_dir() and any(d.is_dir() for d in val.iterdir()):
            dirs = {"test": val, **({"train": folder / "train"} if (folder / "train").is_dir() else {})}
            source = image_folder_source(folder, dirs, name="imagenet")
            return replace(source, normalization=IMAGENET_NORMALIZATION, transform=IMAGENET, kind="named")
    raise DataError(
        f"ImageNet is not under {base}: put its validation images in class folders, {base}/imagenet/val/<wnid>/"
        f"*.JPEG (torchvision's layout; a train/ beside val/ serves {opt('bn', 'recompute')})",
        hint=f"ImageNet is never downloaded (its licence): get ILSVRC2012 from image-net.org; {opt('data_root')} says "
        "where it is",
    )


_TENSOR_KINDS = {"tensor file": "a tensor file", "factory": "a factory's tensors"}


def stream_split(
    source: Any,
    split: str,
    *,
    samples: int | None,
    seed: int,
    normalization: Any,
    transform: Transform,
    workers: int | None,
) -> tuple[ImageStream, str] | None:
    """A split of an image folder as an ImageStream (its --samples subset drawn as load_split draws it), and
    why it streams; None when the source has no image files or the split is read into memory (stream_choice)."""
    from .source import subset_indices

    if source.files is None:
        # every option takes effect or is refused: these would be recorded and do nothing
        given = [opt(name) for name in ("resize", "crop") if getattr(transform, name) is not None]
        given += [opt("workers")] if workers is not None else []
        if given:
            raise UsageError(
                f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} to image folders, and {source.name} "
                f"is {_TENSOR_KINDS.get(source.kind, 'a dataset stored as tensors')}",
                hint=f"drop {', '.join(given)}" + (", or resize the images before saving them" if transform else ""),
            )
        return None
    files = source.files(split)
    transform = transform or source.transform or Transform()
    if not files:
        return None
    sampled = _headers([p for p, _ in files[:HEADERS_SAMPLED]])
    grey = all(mode in GREY_MODES for mode, _ in sampled)
    reason = stream_choice(len(files), sampled[0][1], grey, transform)
    if reason is None:
        return None
    idx = subset_indices(len(files), samples, seed)
    indices = None if idx is None else tuple(int(i) for i in idx)
    if indices is not None:
        files = [files[i] for i in indices]
    workers = default_workers() if workers is None else workers
    stream = ImageStream(split, ImageFiles(files, grey, transform), normalization, workers, indices, source.location)
    return stream, reason

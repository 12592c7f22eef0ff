"""The user's own data: tensor files (``.pt``, ``.npz``, ``.safetensors``), factories
(``path/to/file.py:fn``, ``package.module:fn``) and folders of images, one sub-folder per class."""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, opt
from ..files import check_expansion, check_regular
from ..optional import import_optional
from ..tensorfile import read_tensor_dict, tensor_from_array, tensor_kind_problem
from ..usercode import load_callable
from .batches import Inputs, users_data
from .mapped import map_tensor_file
from .source import DataSource, Log, Reader, masked_labels

INPUT_KEYS = ("inputs", "x", "data", "images", "features", "pixel_values")
# Named inputs of a text model, passed as model(**inputs): what a tokenizer returns (input_ids first: it must be there).
TEXT_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
TARGET_KEYS = ("targets", "y", "labels", "target", "label")
TENSOR_FILE_SUFFIXES = (".pt", ".pth", ".npz", ".safetensors")
SPLIT_NAMES = ("train", "test")


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _as_tensor(value: Any, where: str) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return tensor_from_array(value, where)
    return None


def _to_tensor(value: Any, where: str) -> torch.Tensor:
    """A tensor, array or number (one example's input or target) as a tensor."""
    return tensor_from_array(value, where) if isinstance(value, np.ndarray) else torch.as_tensor(value)


def _pick(label: str, entries: Mapping[str, Any], keys: Sequence[str], suffix: str = "") -> torch.Tensor | None:
    for key in keys:
        value = _as_tensor(entries.get(key + suffix), f"{label}: entry {key + suffix!r}")
        if value is not None:
            return value
    return None


def _check_kind(label: str, split: str, what: str, t: torch.Tensor) -> None:
    problem = tensor_kind_problem(t)
    if problem is not None:
        raise DataError(f"{label}: {split} {what} are {problem[0]}", hint=problem[1])


def _pick_inputs(
    label: str, entries: Mapping[str, Any], keys: Sequence[str], suffix: str, keyed: bool
) -> Inputs | None:
    """One tensor of inputs under ``keys``; else (without --data-keys) a text model's named inputs, input_ids
    with attention_mask and token_type_ids where present."""
    x = _pick(label, entries, keys, suffix)
    if x is not None or keyed:
        return x
    named = {
        key: t
        for key in TEXT_INPUT_KEYS
        if (t := _as_tensor(entries.get(key + suffix), f"{label}: entry {key + suffix!r}")) is not None
    }
    return named if TEXT_INPUT_KEYS[0] in named else None


def _check_pair(label: str, split: str, x: Inputs, y: torch.Tensor) -> None:
    if isinstance(x, Mapping):
        for key, t in x.items():
            _check_pair(label, split, t, y)
            if t.shape != x[TEXT_INPUT_KEYS[0]].shape:
                raise DataError(
                    f"{label}: {split} {key} has shape {list(t.shape)}, input_ids {list(x[TEXT_INPUT_KEYS[0]].shape)}",
                    hint="a tokenizer's outputs (padding=True) share one shape (N, T)",
                )
        return
    _check_kind(label, split, "inputs", x)
    _check_kind(label, split, "targets", y)
    if y.is_complex():  # cross-entropy and mse would keep the real part only
        raise DataError(
            f"{label}: {split} targets are {str(y.dtype).removeprefix('torch.')}; interpscan reads class labels "
            "(integers) or real-valued targets",
            hint="save the real targets (y.real) or their parts as separate columns",
        )
    if x.dim() == 0 or y.dim() == 0:
        raise DataError(
            f"{label}: {split} inputs have shape {list(x.shape)} and targets {list(y.shape)}; "
            "expected inputs (N, ...) and targets (N, ...)"
        )
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{label}: {split} has {x.shape[0]} inputs but {y.shape[0]} targets")


def _split_order(name: str) -> int:
    return SPLIT_NAMES.index(name) if name in SPLIT_NAMES else len(SPLIT_NAMES)


def _found_splits(
    label: str, entries: Mapping[str, Any], input_keys: Sequence[str], target_keys: Sequence[str], keyed: bool
) -> dict[str, tuple[Inputs, torch.Tensor]]:
    """Every split ``entries`` holds under any name: nested ({"shifted": {"x": …, "y": …}}), suffixed
    (x_shifted beside y_shifted), and flat inputs and targets as the ``test`` split; train and test first, then
    the others in the file's order."""
    splits: dict[str, tuple[Inputs, torch.Tensor]] = {}
    # a text model's suffixed inputs are found by their input_ids (the other named inputs follow it)
    prefixes = tuple(input_keys) + (() if keyed else (TEXT_INPUT_KEYS[0],))
    for key, value in entries.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, Mapping):
            where, suffix, name = value, "", key
        else:
            name = next((key[len(p) + 1 :] for p in prefixes if key.startswith(p + "_") and len(key) > len(p) + 1), "")
            where, suffix = entries, f"_{name}"
        if not name or name in splits:
            continue
        x, y = _pick_inputs(label, where, input_keys, suffix, keyed), _pick(label, where, target_keys, suffix)
        if x is not None and y is not None:
            splits[name] = (x, y)
    x, y = _pick_inputs(label, entries, input_keys, "", keyed), _pick(label, entries, target_keys)
    if x is not None and y is not None:
        if "test" in splits:
            raise DataError(
                f"{label}: holds inputs and targets at its top level (the test split) and a test split besides",
                hint="keep one of them, or save the top-level pair under another split's name",
            )
        splits["test"] = (x, y)
    return {name: splits[name] for name in sorted(splits, key=_split_order)}


def _tensor_splits(
    label: str, entries: Mapping[str, Any], keys: tuple[str, str] | None = None, *, mask: bool = True
) -> dict[str, tuple[Inputs, torch.Tensor]]:
    """Find (inputs, targets) per split, under any split name: nested {"train": {...}, "shifted": {...}},
    suffixed x_train/y_train, x_shifted/y_shifted, or flat x/y (the ``test`` split). Inputs are one tensor, or a
    text model's input_ids (with attention_mask, token_type_ids) beside labels.

    ``keys`` (from --data-keys) replaces the usual names for inputs and targets. ``mask``: token labels masked
    where the attention mask is 0 (source.masked_labels); without it, the entries' own tensors are returned.

    Raises:
        DataError: no split found, a top-level pair beside a test split, or inputs and targets that do not pair.
    """
    input_keys, target_keys = ((keys[0],), (keys[1],)) if keys else (INPUT_KEYS, TARGET_KEYS)
    splits = _found_splits(label, entries, input_keys, target_keys, bool(keys))
    if not splits:
        if keys:
            hint = (
                f"{opt('data_keys', tuple(keys))}: expected entries {keys[0]!r} and {keys[1]!r}, "
                f"optionally per split ({keys[0]}_train, {keys[1]}_test, or nested under the split's name)"
            )
        else:
            hint = (
                f"name them one of {'/'.join(INPUT_KEYS)} and {'/'.join(TARGET_KEYS)} (text: input_ids, "
                "attention_mask and labels), optionally per split (x_train, y_test, x_shifted, or nested under "
                f"the split's name), or pass {opt('data_keys', 'INPUTS,TARGETS')}"
            )
        raise DataError(f"{label}: no inputs/targets found (keys: {', '.join(sorted(map(str, entries)))})", hint=hint)
    for split, (x, y) in splits.items():
        _check_pair(label, split, x, y)
    return {split: (x, masked_labels(x, y) if mask else y) for split, (x, y) in splits.items()}


def open_tensor_file(path: Path, keys: tuple[str, str] | None, log: Log | None = None) -> DataSource:
    """A tensor file's splits: read into memory, or, when their resident copy could be too large, found in a
    memory map (data/mapped.py) for the splits that are to stream (a split that fits is copied out whole)."""
    if not path.exists() and not path.is_symlink():  # a broken or looping link is named as such when read
        raise DataError(f"data file not found: {path}", hint=f"check the path given to {opt('data')}")
    mapped = map_tensor_file(path, log)
    if mapped is None:
        splits = _tensor_splits(str(path), read_tensor_dict(path), keys)
        return DataSource(path.name, str(path), tuple(splits), None, lambda split: splits[split], kind="tensor file")
    pairs = _tensor_splits(str(path), mapped.stand_ins, keys, mask=False)  # the stand-ins themselves, unmasked
    found = {split: mapped.split(x, y) for split, (x, y) in pairs.items()}
    return DataSource(
        path.name,
        str(path),
        tuple(found),
        None,
        lambda split: found[split].read(slice(None)),
        kind="tensor file",
        mapped=found,
    )


# ---------------------------------------------------------------------------------------- factories


def _stack_dataset(label: str, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) from a map-style dataset of (input, target) pairs; a TensorDataset's tensors directly."""
    from torch.utils.data import TensorDataset

    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[0], dataset.tensors[1]
    with users_data(f"{label}: its dataset's length", DataError):
        n = len(dataset)
    if n == 0:
        raise DataError(f"{label}: the dataset is empty")
    xs, ys = [], []
    for i in range(n):
        with users_data(f"{label}: item {i}", DataError):
            item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{label}: item {i} is a {type(item).__name__}, expected an (input, target) pair")
        xs.append(_to_tensor(item[0], f"{label}: item {i}'s input"))
        ys.append(_to_tensor(item[1], f"{label}: item {i}'s target"))
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


def _pair(label: str, split: str, value: Any, keys: tuple[str, str] | None) -> tuple[Inputs, torch.Tensor]:
    """One split as a factory returned it: (x, y), a Dataset, or a dict with inputs and targets."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        x, y = _as_tensor(value[0], f"{label}: {split} inputs"), _as_tensor(value[1], f"{label}: {split} targets")
        if x is not None and y is not None:
            _check_pair(label, split, x, y)
            return x, y
    if isinstance(value, (tuple, list)) and value and all(_is_array(v) for v in value):
        # (x, y, extra) would otherwise read as a dataset of len(value) items that are not pairs
        shapes = ", ".join(str(list(v.shape)) for v in value)
        raise DataError(
            f"{label}: returned a {len(value)}-tuple of tensors ({shapes}) for split {split!r}; expected 2",
            hint="return (inputs, targets), or a dict {'inputs': x, 'targets': y} (other entries are ignored)",
        )
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


def factory_splits(label: str, obj: Any, keys: tuple[str, str] | None = None) -> dict[str, tuple[Inputs, torch.Tensor]]:
    """What a ``--data`` factory returned, as splits: (inputs, targets) or a Dataset (the ``test`` split), a dict
    of tensors laid out as in a tensor file, or a dict of splits (any names) holding either.

    Raises:
        DataError: anything else, or inputs and targets that do not pair up.
    """
    if isinstance(obj, Mapping):
        if obj and all(_is_array(v) for v in obj.values()):
            return _tensor_splits(label, obj, keys)
        if obj and all(isinstance(k, str) and not _is_array(v) for k, v in obj.items()):
            return {str(k): _pair(label, str(k), v, keys) for k, v in obj.items()}
        raise DataError(
            f"{label}: returned a dict mixing tensors and splits (keys: {', '.join(sorted(map(str, obj)))})"
            if obj
            else f"{label}: returned an empty dict",
            hint="return {'train': (x, y), 'test': (x, y)} or {'x': x, 'y': y}",
        )
    return {"test": _pair(label, "test", obj, keys)}


def open_factory(spec: str, keys: tuple[str, str] | None) -> DataSource:
    factory = load_callable(spec, option="data")
    try:
        obj = factory()
    except Exception as exc:
        raise DataError(f"{opt('data', spec)}: the factory raised {type(exc).__name__}: {exc}") from exc
    splits = factory_splits(opt("data", spec), obj, keys)
    return DataSource(spec, spec, tuple(splits), None, lambda split: splits[split], kind="factory")


# ------------------------------------------------------------------------------------- image folders

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff"})
IMAGE_SPLIT_NAMES = frozenset({"train", "test", "val", "valid", "validation"})


def _subdirs(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def _inside(top: Path, link: Path) -> Path:
    """Where ``link`` leads, when that lies inside ``top`` (the image folder, resolved).

    Raises:
        DataError: a link that leaves the folder (to ``/`` it would walk the whole file system).
    """
    target = Path(os.path.realpath(link))
    if target != top and top not in target.parents:
        raise DataError(
            f"{link} is a symbolic link to {target}, outside the image folder {top}: links are followed only "
            "inside the folder",
            hint="copy (or hard-link) the images into the folder, or point the link at a folder inside it",
        )
    return target


class _Walk:
    """One split's folders walked for images, symbolic links followed inside ``top`` only, each folder and each
    image reached once: a link back to a folder already read (a class folder linking to the dataset's root, a
    loop) would count its images again, under another class.

    ``dirs`` and ``files`` map a real path to the path it was first reached by."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.dirs: dict[Path, Path] = {}
        self.files: dict[Path, Path] = {}

    def images(self, folder: Path, real: Path | None = None) -> list[Path]:
        """The image files under ``folder`` (real path ``real``), sorted, by the paths they were reached by.

        Raises:
            DataError: a link out of the folder, a folder or an image reached twice, or a folder not listable.
        """
        real = _inside(self.top, folder) if real is None else real
        if real in self.dirs:
            raise DataError(
                f"{folder} leads to {self.dirs[real]} again (a symbolic link to a folder already read): its images "
                "would count twice",
                hint="remove the link; a class folder holds its own images (or links to folders no other class has)",
            )
        self.dirs[real] = folder
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(f"{folder}: the folder cannot be listed ({exc.strerror})") from exc
        found: list[Path] = []
        for entry in entries:
            path = folder / entry.name
            image = path.suffix.lower() in IMAGE_SUFFIXES
            if entry.is_symlink():
                target = Path(os.path.realpath(path))
                if not (image or target.is_dir()):
                    continue  # never read: where it leads does not matter
                target = _inside(self.top, path)
                if target.is_dir():
                    found += self.images(path, target)
                    continue
            elif entry.is_dir(follow_symlinks=False):
                found += self.images(path, real / entry.name)
                continue
            else:
                target = real / entry.name
            if not image:
                continue
            # anything but a folder: a FIFO or a broken link named like an image is refused by name when read
            if target in self.files:
                raise DataError(
                    f"{path} is {self.files[target]} again (through a symbolic link): the image would count twice",
                    hint="remove the link, or copy the image if it belongs to both places",
                )
            self.files[target] = path
            found.append(path)
        return sorted(found)


def _listing(top: Path, split_dirs: Mapping[str, Path]) -> dict[str, dict[str, list[Path]]]:
    """Each split's class folders (hidden ones left out) and their images, by _Walk's rules."""
    real_top = Path(os.path.realpath(top))
    listing: dict[str, dict[str, list[Path]]] = {}
    for split, folder in split_dirs.items():
        walk = _Walk(real_top)
        walk.dirs[_inside(real_top, folder)] = folder
        listing[split] = {}
        for sub in sorted(os.scandir(folder), key=lambda e: e.name):
            if sub.name.startswith(".") or not sub.is_dir():
                continue
            listing[split][sub.name] = walk.images(folder / sub.name)
    return listing


_GREY_MODES = frozenset({"1", "L", "LA", "La"})
_DEEP_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})  # 16-bit grey, read as values / 65535


def image_header(image: Any, path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) from an image file's header, without decoding its pixels."""
    check_regular(path, DataError, what="image")
    try:
        with image.open(path) as im:
            mode, size = str(im.mode), (int(im.size[0]), int(im.size[1]))
    except image.DecompressionBombError as exc:
        raise DataError(
            f"{path}: Pillow refuses to decode it as a decompression bomb ({exc})",
            hint="an image this large is more likely crafted than real; resize it if it is yours",
        ) from exc
    except OSError as exc:  # UnidentifiedImageError is an OSError
        raise DataError(f"{path}: not an image Pillow can read ({exc})") from exc
    if mode in ("I", "F"):
        raise DataError(
            f"{path}: an image of 32-bit {'integer' if mode == 'I' else 'float'} pixels (mode {mode}), whose value "
            "range interpscan cannot know",
            hint="save it with 8 or 16 bits per channel, or the pixels as a tensor file",
        )
    return mode, size


def _decode(image: Any, path: Path, grey: bool, deep: bool) -> np.ndarray[Any, Any]:
    """One image's pixels: (H, W) grey or (H, W, 3) RGB, uint8, or float32 in [0, 1] when ``deep``."""
    try:
        with image.open(path) as im:
            if str(im.mode) in _DEEP_MODES:
                return np.asarray(im, dtype=np.float32) / 65535.0  # 16-bit grey (Pillow's "L" would clip at 255)
            pixels = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8)
    except Exception as exc:  # a damaged image raises anything from OSError ("truncated") to SyntaxError
        raise DataError(f"{path}: the image cannot be decoded ({type(exc).__name__}: {exc})") from exc
    return pixels.astype(np.float32) / 255.0 if deep else pixels


def _split_files(
    listing: Mapping[str, Mapping[str, list[Path]]], classes: Sequence[str]
) -> Callable[[str], list[tuple[Path, int]]]:
    def files(split: str) -> list[tuple[Path, int]]:
        """A split's images and their class indices, class by class, each class's images sorted."""
        return [(p, index) for index, name in enumerate(classes) for p in listing[split].get(name, [])]

    return files


def _image_reader(root: Path, list_files: Callable[[str], list[tuple[Path, int]]]) -> Reader:

    def read(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        image = importlib.import_module("PIL.Image")  # optional: checked by _open_image_folder

        files = list_files(split)
        with warnings.catch_warnings():
            # Pillow warns per image past 89M pixels; the bound over the whole split below replaces that
            warnings.simplefilter("ignore", image.DecompressionBombWarning)
            opened = [image_header(image, path) for path, _ in files]
        grey = all(mode in _GREY_MODES or mode in _DEEP_MODES for mode, _ in opened)
        deep = any(mode in _DEEP_MODES for mode, _ in opened)
        sizes = sorted({size for _, size in opened})
        if len(sizes) > 1:
            shown = ", ".join(f"{w}×{h}" for w, h in sizes[:4]) + (", …" if len(sizes) > 4 else "")
            raise DataError(
                f"{root}: images of {len(sizes)} sizes in the {split} split ({shown})",
                hint=f"stream them through the evaluation transform: {opt('resize')} M {opt('crop')} N "
                "(e.g. 256 and 224)",
            )
        (width, height), channels = sizes[0], 1 if grey else 3
        check_expansion(
            f"{root} ({len(files)} images in the {split} split)",
            len(files) * width * height * channels * (4 if deep else 1),
            sum(path.stat().st_size for path, _ in files),
            DataError,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", image.DecompressionBombWarning)
            arrays = [_decode(image, path, grey, deep) for path, _ in files]
        x = torch.from_numpy(np.stack(arrays))  # (N, H, W) or (N, H, W, 3)
        x = x.unsqueeze(1) if grey else x.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W), uint8 or float32
        y = torch.tensor([index for _, index in files], dtype=torch.int64)
        return x, y

    return read


def _empty_class_folders(listing: Mapping[str, Mapping[str, list[Path]]], split_dirs: Mapping[str, Path]) -> list[Path]:
    """Class folders that hold no image in any split: skipping them would renumber the classes after them."""
    with_images = {c for classes in listing.values() for c, images in classes.items() if images}
    return sorted(split_dirs[s] / c for s, classes in listing.items() for c in classes if c not in with_images)


def open_image_folder(path: Path) -> DataSource:
    """A folder with one sub-folder of images per class (sorted names are class 0, 1, …): the ``test`` split;
    or sub-folders train/, test/ (val/…) that each hold such class folders.

    Images read as uint8, grey (1, L, LA) or RGB (any other mode, alpha dropped), or as float32 in [0, 1] when a
    split holds 16-bit grey images; 32-bit integer or float images are refused (their range is unknown). A split's
    decoded size is checked against its files' (files.check_expansion) before any image is decoded.

    Raises:
        DataError: no images, a class folder without images (skipping it would renumber the classes after it), or
            no Pillow; when a split is read, unreadable or damaged images, images of several sizes, or too many
            pixels.
    """
    subdirs = _subdirs(path)
    if subdirs and all(d.name in IMAGE_SPLIT_NAMES for d in subdirs):
        split_dirs = {d.name: d for d in subdirs}
    else:
        split_dirs = {"test": path}
    return image_folder_source(path, split_dirs)


def image_folder_source(path: Path, split_dirs: Mapping[str, Path], name: str | None = None) -> DataSource:
    """The DataSource of ``split_dirs`` (split -> folder of class folders), as open_image_folder describes it;
    its ``files`` lists a split's images for streaming (data/images.py)."""
    listing = _listing(path, split_dirs)
    classes = sorted({c for found in listing.values() for c, images in found.items() if images})
    counts = {s: sum(len(images) for images in found.values()) for s, found in listing.items()}
    if not classes or not any(counts.values()):
        raise DataError(
            f"{path}: no images in class sub-folders (expected {path}/CLASS/IMAGE, e.g. {path}/cat/001.png)",
            hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}",
        )
    empty = _empty_class_folders(listing, split_dirs)
    if empty:
        shown = ", ".join(str(c) for c in empty[:3]) + (", …" if len(empty) > 3 else "")
        raise DataError(
            f"{path}: {len(empty)} class folder{'s' if len(empty) > 1 else ''} without images ({shown}); classes are "
            "numbered by sorted folder name, so skipping one would renumber those after it",
            hint="remove the folder if the class is not part of the data, or add its images",
        )
    import_optional(
        "PIL.Image",
        purpose=f"{path} is an image folder, and reading images",
        error=DataError,
        instead="save the images as a tensor file",
    )
    splits = tuple(s for s in sorted(split_dirs, key=lambda s: (s != "train", s)) if counts[s])
    files = _split_files(listing, classes)
    return DataSource(
        name or path.name or str(path),
        str(path),
        splits,
        None,
        _image_reader(path, files),
        kind="image folder",
        classes=tuple(classes),
        files=files,
    )

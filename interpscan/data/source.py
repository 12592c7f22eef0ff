"""Where a dataset's splits come from and how one is read into memory: the DataSource, seeded subsets,
and normalization."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError, UsageError, opt
from ..files import describe_size, env_size
from ..values import Normalization, check_normalize
from .batches import Inputs, Split

Reader = Callable[[str], tuple[Inputs, torch.Tensor]]
Log = Callable[[str], None]
# A split whose resident copy (float32 inputs) would take more than this streams instead (image folders:
# data/images.py; tensor files: data/mapped.py): the fast path is for what fits comfortably.
RESIDENT_BYTES = 2 * 2**30
RESIDENT_ENV = "INTERPSCAN_RESIDENT_BYTES"  # overrides RESIDENT_BYTES (bytes, or e.g. 512M, 8G)


def stream_reason(need: int) -> str | None:
    """Why a split whose resident copy takes ``need`` bytes streams, or None when it is read into memory: the
    one rule for every source, RESIDENT_BYTES or ``INTERPSCAN_RESIDENT_BYTES``.

    Raises:
        UsageError: the variable is set to something that is not a size.
    """
    limit = env_size(RESIDENT_ENV, RESIDENT_BYTES)
    if need <= limit:
        return None
    return f"its float32 copy would take {describe_size(need)}, more than {describe_size(limit)}"


def resident_bytes(t: torch.Tensor) -> int:
    """Bytes ``t`` takes once read into memory as load_split keeps it: images, floats and booleans as float32,
    integers (token ids) as they are."""
    keeps = not (t.is_floating_point() or t.dtype in (torch.uint8, torch.bool))
    return t.numel() * (t.element_size() if keeps else 4)


@dataclass(frozen=True)
class DataSource:
    """Where a dataset lives and how to read each of its splits (raw, unnormalized)."""

    name: str
    location: str
    splits: tuple[str, ...]
    normalization: Normalization | None  # what ``--normalize auto`` applies; None: nothing
    reader: Reader = field(repr=False, compare=False)
    kind: str = "named"  # named, bundled, tensor file, factory, image folder
    classes: tuple[str, ...] | None = None  # class names, where the source has them (image folders)
    # image folders: a split's (image file, class index) pairs, for streaming (data/images.py); else None
    files: Callable[[str], list[tuple[Path, int]]] | None = field(default=None, repr=False, compare=False)
    transform: Any = None  # the evaluation transform a named image dataset implies (ImageNet's), else None
    # a tensor file too large to be sure it fits: split -> its mapped.MappedSplit, for streaming; else None
    mapped: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def read(self, split: str) -> tuple[Inputs, torch.Tensor]:
        if split not in self.splits:
            raise DataError(
                f"dataset {self.name} has no {split!r} split (it has: {', '.join(self.splits)})",
                hint=f"use {opt('splits', self.splits[0])}",
            )
        return self.reader(split)


def parse_normalize(text: str, source: DataSource) -> Normalization | None:
    """``auto`` -> the dataset's standard (mean, std) (None for the user's own data); ``none``; or ``MEAN,STD``
    where each is a number or a per-channel list separated by ``/`` (``0.49/0.48/0.45,0.25/0.24/0.26``).

    Raises:
        UsageError: anything else, a non-positive std, or per-channel lists of different lengths.
    """
    if text == "auto":
        return source.normalization
    return check_normalize(text)


def subset_indices(n: int, samples: int | None, seed: int) -> torch.Tensor | None:
    """A seeded subset of ``samples`` indices out of ``n``, sorted; None means all of them."""
    if samples is None or samples >= n:
        return None
    if samples <= 0:
        raise UsageError(f"{opt('samples')} must be positive, got {samples}")
    gen = torch.Generator().manual_seed(seed)
    return torch.sort(torch.randperm(n, generator=gen)[:samples]).values


def _normalize(x: torch.Tensor, normalization: Normalization, where: str) -> torch.Tensor:
    mean, std = (torch.tensor(v, dtype=torch.float32, device=x.device).reshape(-1) for v in normalization)
    channels = max(mean.numel(), std.numel())
    if channels > 1:
        if x.dim() < 2 or x.shape[1] != channels:
            raise DataError(
                f"{opt('normalize')} has {channels} values per channel but the {where} inputs have shape "
                f"{list(x.shape)} (channels are dimension 1)",
                hint="give one mean and std, or one per channel",
            )
        shape = (1, channels, *([1] * (x.dim() - 2)))
        mean = mean.expand(channels).reshape(shape) if mean.numel() == 1 else mean.reshape(shape)
        std = std.expand(channels).reshape(shape) if std.numel() == 1 else std.reshape(shape)
    return (x - mean) / std


def load_split(
    source: DataSource,
    split: str,
    *,
    samples: int | None = None,
    seed: int = 0,
    normalization: Normalization | None = None,
    class_targets: bool = True,
) -> Split:
    """Read one split into memory: uint8 images become float32 in [0, 1], then (x − mean) / std; other floating
    inputs become float32; other integer inputs (token ids) are kept as they are. Named inputs (``input_ids``,
    ``attention_mask``, …) are each kept the same way, and never normalized.

    Args:
        samples: draw this many examples (seeded, without replacement); None for all.
        seed: seed of the subset draw.
        normalization: (mean, std) to apply, each one number or one per channel; or None.
        class_targets: targets must be integer class labels (N,) (cross-entropy); otherwise floating targets
            of any shape are kept, as float32 (regression and custom losses).

    Raises:
        DataError: targets that are not class labels when ``class_targets``; per-channel normalization that does
            not fit the inputs.
    """
    inputs, y = source.read(split)
    idx = subset_indices(int(y.shape[0]), samples, seed)
    if idx is not None:
        inputs, y = _take(inputs, idx), y[idx]
    x, y = prepare(source.name, split, inputs, y, normalization, class_targets)
    return Split(split, x, y, _indices(idx))


def prepare(
    name: str, split: str, inputs: Inputs, y: torch.Tensor, normalization: Normalization | None, class_targets: bool
) -> tuple[Inputs, torch.Tensor]:
    """Raw inputs and targets (a whole split, or one streamed batch on its device) as the engine reads them:
    see load_split, whose conversions these are; ``name`` is the dataset's, for messages.

    Raises:
        DataError: see load_split.
    """
    if isinstance(inputs, Mapping):  # named inputs (input_ids, attention_mask, …): the model's own encoding
        if normalization is not None:
            raise DataError(
                f"{name}: {split} inputs are named tensors ({', '.join(inputs)}), and {opt('normalize')} applies "
                "to one tensor of intensities",
                hint=f"drop {opt('normalize')} (or pass {opt('normalize', 'none')})",
            )
        x_named = {k: _model_input(v).contiguous() for k, v in inputs.items()}
        return x_named, _targets(name, split, y, class_targets)
    x = _model_input(inputs)
    if normalization is not None:
        if not x.is_floating_point():
            raise DataError(
                f"{name}: {split} inputs are {str(x.dtype).removeprefix('torch.')} (ids, not intensities), "
                f"and {opt('normalize')} applies to floating-point inputs",
                hint=f"drop {opt('normalize')} (or pass {opt('normalize', 'none')})",
            )
        x = _normalize(x, normalization, f"{name} {split}")
    return x.contiguous(), _targets(name, split, y, class_targets)


def masked_labels(x: Inputs, y: torch.Tensor) -> torch.Tensor:
    """Token labels (N, T) with -100 (cross-entropy's ignore_index) where the attention mask is 0: padding is
    never scored, whatever the labels there hold (a tokenizer pads input_ids; labels copied from them keep it)."""
    mask = x.get("attention_mask") if isinstance(x, Mapping) else None
    if mask is None or y.shape != mask.shape or y.is_floating_point():
        return y
    return y.masked_fill(mask == 0, -100)


def _take(inputs: Inputs, idx: torch.Tensor) -> Inputs:
    return inputs[idx] if isinstance(inputs, torch.Tensor) else {k: v[idx] for k, v in inputs.items()}


def _indices(idx: torch.Tensor | None) -> tuple[int, ...] | None:
    return None if idx is None else tuple(int(i) for i in idx)


def _model_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 images become float32 in [0, 1], other floating (and bool) inputs float32; other integer inputs
    (token ids, indices, attention masks) are kept as they are: an embedding needs them so."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)  # images: [0, 255] -> [0, 1]
    if x.is_floating_point() or x.dtype == torch.bool:
        return x.float()
    return x


def _targets(name: str, split: str, y: torch.Tensor, class_targets: bool) -> torch.Tensor:
    """Class labels (N,) as int64 when ``class_targets``; else floating targets as float32, integer ones (token
    labels (N, T) of a language model) as int64.

    Raises:
        DataError: targets that are not class labels when ``class_targets``.
    """
    if class_targets:
        if y.is_floating_point() or y.dtype == torch.bool:
            raise DataError(
                f"{name}: {split} targets are {str(y.dtype).removeprefix('torch.')}, expected integer class labels",
                hint=f"for regression targets use {opt('loss', 'mse')}",
            )
        if y.dim() != 1:
            raise DataError(
                f"{name}: {split} targets have shape {list(y.shape)}; class labels have shape (N,)",
                hint=f"for regression targets use {opt('loss', 'mse')}",
            )
        return y.long().contiguous()
    return (y.float() if y.is_floating_point() or y.dtype == torch.bool else y.long()).contiguous()


def subset(split: Split, samples: int | None, seed: int) -> Split:
    """A seeded subset of ``samples`` examples of a split in memory (the same draw ``load_split`` makes), with
    its indices; the split itself when it has no more examples than that."""
    idx = subset_indices(len(split), samples, seed)
    if idx is None:
        return split
    return Split(split.name, _take(split.inputs, idx), split.targets[idx], tuple(int(i) for i in idx))

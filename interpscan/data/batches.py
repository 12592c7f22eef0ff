"""Data as the engine sees it: each split a stream of ``(inputs, targets)`` batches on the device.

``inputs`` is a tensor or a mapping of tensors (``input_ids``, ``attention_mask``, …), passed to the model as
``model(inputs)`` or ``model(**inputs)``; integer inputs (token ids) are kept as they are. Two kinds of split:

- ``Split``: resident tensors, moved to the device once and sliced there (the fast path; airbench's habit).
- ``Stream``: batches read as they come, from a DataLoader, any iterable of batches, or a Dataset (batched
  here, in order). Its length may be unknown until it has been read.

``as_splits`` turns what a library user passes as ``data`` into named splits of either kind.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, Union, runtime_checkable

import torch

from ..errors import DataError, InterpscanError, RunError, UsageError

Inputs = Union[torch.Tensor, Mapping[str, torch.Tensor]]  # noqa: UP007 (a runtime alias: 3.10 has no `X | Y` on Mapping[...])
Batch = tuple[Inputs, torch.Tensor]
# Keys that hold the targets in a batch given as a dict (the Hugging Face convention first).
TARGET_KEYS = ("labels", "label", "targets", "target", "y")


@runtime_checkable
class Batches(Protocol):
    """One split as a stream of batches, each ``(inputs, targets)`` on ``device``."""

    @property
    def name(self) -> str:
        """The split's name (train, test, …)."""
        ...

    def batches(self, batch_size: int, device: torch.device, select: range | None = None) -> Iterator[Batch]:
        """The batches, or only those whose indices are in ``select`` (a range: a process's share, or what a
        resumed scan has left)."""
        ...

    def num_batches(self, batch_size: int) -> int | None:
        """How many batches ``batches`` yields, when known without reading them."""
        ...


def _their_message(exc: BaseException) -> str:
    """What the data did, in one line: "raised X: its first line" (for an exception a DataLoader worker raised,
    re-raised in this process as "Caught X in DataLoader worker process N." and the worker's traceback, the
    traceback's last line), or "called sys.exit(…)"."""
    from ..usercode import ExitCalled

    if isinstance(exc, SystemExit):
        exc = ExitCalled(exc.code)
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if isinstance(exc, ExitCalled):
        return str(exc).removeprefix("it ")
    if len(lines) > 1 and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        return f"raised {lines[-1]} (in {lines[0].removeprefix('Caught ').split(' in ', 1)[-1].rstrip('.')})"
    return f"raised {type(exc).__name__}" + (f": {lines[0]}" if lines else "")


@contextmanager
def users_data(where: str, error: type[InterpscanError] = RunError) -> Iterator[None]:
    """Translate an exception raised by the user's own data (a Dataset's ``__getitem__`` or ``__len__``, a
    DataLoader, one of its workers, an iterable of batches; or its call of ``sys.exit``) into ``error``: one line
    that says where (``where``), the cause chained. Out-of-memory and interpscan's own errors pass through."""
    try:
        yield
    except (torch.OutOfMemoryError, InterpscanError):
        raise
    except (Exception, SystemExit) as raised:
        raise error(
            f"{where}: the data {_their_message(raised)}", hint="INTERPSCAN_DEBUG=1 shows its traceback"
        ) from raised


def on_meta(inputs: Any, targets: Any, where: str) -> None:
    """Refuse inputs or targets on the meta device: shapes without values (a model's ``device="meta"`` habit
    applied to data), which no copy to a device can fill.

    Raises:
        DataError: a tensor of them is on the meta device.
    """
    tensors = [*(inputs.values() if isinstance(inputs, Mapping) else [inputs]), targets]
    if any(isinstance(t, torch.Tensor) and t.is_meta for t in tensors):
        raise DataError(
            f"{where}: the tensors are on the meta device (shapes without values)",
            hint="create or load the data on the CPU (or its device): a meta tensor holds no numbers to evaluate",
        )


def to_device(inputs: Inputs, device: torch.device) -> Inputs:
    """Inputs on ``device``: a tensor, or each tensor of a mapping (other values are passed as they are)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def batch_len(targets: torch.Tensor) -> int:
    return int(targets.shape[0])


def slice_inputs(inputs: Inputs, sl: slice) -> Inputs:
    if isinstance(inputs, torch.Tensor):
        return inputs[sl]
    return {k: v[sl] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def inputs_len(inputs: Inputs) -> int:
    """Examples in ``inputs``: the first dimension of the tensor, or of a mapping's first tensor."""
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0]) if inputs.dim() else 0
    first = next((v for v in inputs.values() if isinstance(v, torch.Tensor)), None)
    return int(first.shape[0]) if first is not None and first.dim() else 0


@dataclass(frozen=True)
class Split:
    """One split in memory. ``inputs`` (N, …): float32 normalized images and features, integer token ids as they
    are, or a mapping of such tensors; ``targets`` (N,) int64 class labels, or (N, …) float32 for regression.
    Moved to the device once per scan and sliced there."""

    name: str
    inputs: Inputs
    targets: torch.Tensor
    indices: tuple[int, ...] | None  # the subset drawn by --samples, as indices into the full split

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def batches(self, batch_size: int, device: torch.device, select: range | None = None) -> Iterator[Batch]:
        x, y = to_device(self.inputs, device), self.targets.to(device)
        for b in select if select is not None else range(math.ceil(len(self) / batch_size)):
            sl = slice(b * batch_size, min((b + 1) * batch_size, len(self)))
            yield slice_inputs(x, sl), y[sl]

    def num_batches(self, batch_size: int) -> int | None:
        return math.ceil(len(self) / batch_size)


def as_batch(item: Any, where: str) -> Batch:
    """One batch as a loader yields it: ``(inputs, targets)``, or a dict whose ``labels`` (or ``label``,
    ``targets``, ``target``, ``y``) entry holds the targets and whose other entries are the inputs.

    Raises:
        DataError: anything else.
    """
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], torch.Tensor):
        inputs = item[0]
        if isinstance(inputs, torch.Tensor) or (
            isinstance(inputs, Mapping) and all(isinstance(v, torch.Tensor) for v in inputs.values())
        ):
            return inputs, item[1]
    if isinstance(item, Mapping):
        key = next((k for k in TARGET_KEYS if isinstance(item.get(k), torch.Tensor)), None)
        if key is not None:
            inputs = {str(k): v for k, v in item.items() if k != key}
            if inputs and all(isinstance(v, torch.Tensor) for v in inputs.values()):
                return inputs, item[key]
    what = type(item).__name__ + (f" of {len(item)}" if isinstance(item, (tuple, list)) else "")
    raise DataError(
        f"{where}: a batch is a {what}; expected (inputs, targets) tensors, or a dict of tensors with 'labels'",
        hint="inputs may be a tensor or a dict of tensors (input_ids, attention_mask, …); targets one tensor",
    )


def _is_dataset(obj: Any) -> bool:
    """A dataset of examples (to be batched here), as opposed to an iterable that already yields batches."""
    from torch.utils.data import DataLoader, Dataset

    if isinstance(obj, (DataLoader, list, tuple)):
        return False
    if isinstance(obj, Dataset):
        return True
    # e.g. a Hugging Face datasets.Dataset: indexable examples with a length
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, (Mapping, str, bytes))


_END = object()  # a loader's last batch was read


class Stream:
    """A split read batch by batch, in the order its source gives them.

    ``source`` is a DataLoader or any iterable of batches (``(inputs, targets)`` or dicts with ``labels``), or a
    dataset of examples (a torch Dataset, or anything indexable with a length), which is batched here with the
    scan's batch size, in order. A one-shot iterator (a generator) can be read once only.
    """

    def __init__(self, name: str, source: Any) -> None:
        if not isinstance(source, Iterable) and not _is_dataset(source):
            raise UsageError(
                f"data[{name!r}] is a {type(source).__name__}, which yields no batches",
                hint="pass (inputs, targets) tensors, a Dataset, a DataLoader or an iterable of batches",
            )
        self.name = name
        self.source = source
        self.one_shot = isinstance(source, Iterator)  # a generator; not a DataLoader (iter() would start workers)
        self._read = False

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, {type(self.source).__name__})"

    def _loader(self, batch_size: int, select: range | None) -> Iterable[Any]:
        """The batches ``select`` names: a dataset's are read alone (a DataLoader over those examples); a loader's
        or an iterable's are read in order, the others skipped."""
        if not _is_dataset(self.source):
            if select is None:
                return self.source  # type: ignore[no-any-return]
            return itertools.islice(self.source, select.start, select.stop)
        from torch.utils.data import DataLoader, Subset

        dataset = self.source
        if select is not None:
            dataset = Subset(dataset, range(select.start * batch_size, min(select.stop * batch_size, len(dataset))))
        return DataLoader(dataset, batch_size=batch_size, shuffle=False)

    def batches(self, batch_size: int, device: torch.device, select: range | None = None) -> Iterator[Batch]:
        if self.one_shot and self._read:
            raise UsageError(
                f"data[{self.name!r}] is a one-shot iterator and was read already (the scan reads each split once, "
                "and the train split once more for batch-norm calibration)",
                hint="pass a DataLoader, a Dataset or a list of batches, which can be read again",
            )
        self._read = True
        first = select.start if select is not None else 0
        with users_data(f"data[{self.name!r}]"):
            loader = iter(self._loader(batch_size, select))
        for i in itertools.count(first):
            where = f"data[{self.name!r}] batch {i}"
            with users_data(where):
                item = next(loader, _END)
            if item is _END:
                return
            inputs, targets = as_batch(item, where)
            on_meta(inputs, targets, where)
            yield to_device(inputs, device), targets.to(device, non_blocking=True)

    def num_batches(self, batch_size: int) -> int | None:
        with users_data(f"data[{self.name!r}]"):
            if _is_dataset(self.source):
                return math.ceil(len(self.source) / batch_size)
            try:
                return len(self.source)
            except TypeError:
                return None


class Take:
    """The first ``limit`` examples of a split (the last batch cut short): calibration data from a stream."""

    def __init__(self, split: Batches, limit: int) -> None:
        self.split, self.limit, self.name = split, limit, split.name

    def batches(self, batch_size: int, device: torch.device, select: range | None = None) -> Iterator[Batch]:
        left = self.limit
        for b, (inputs, targets) in enumerate(self.split.batches(batch_size, device)):
            if left <= 0 or (select is not None and b >= select.stop):
                return
            n = batch_len(targets)
            if n > left:
                inputs, targets = slice_inputs(inputs, slice(0, left)), targets[:left]
                n = left
            left -= n
            if select is None or b in select:
                yield inputs, targets

    def num_batches(self, batch_size: int) -> int | None:
        return None


def _is_pair(value: Any) -> bool:
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and isinstance(value[1], torch.Tensor)
        and isinstance(value[0], (torch.Tensor, Mapping))
    )


def as_split(name: str, value: Any) -> Batches:
    """One split from what a library user passes: (inputs, targets) tensors (resident), a Split or a Stream as
    it is, or anything a Stream reads.

    Raises:
        DataError: inputs and targets of different lengths.
        UsageError: something that yields no batches.
    """
    if isinstance(value, (Split, Stream)):
        return value
    if _is_pair(value):
        inputs, targets = value
        if inputs_len(inputs) != batch_len(targets):
            raise DataError(f"data[{name!r}]: {inputs_len(inputs)} inputs but {batch_len(targets)} targets")
        on_meta(inputs, targets, f"data[{name!r}]")
        return Split(name, inputs, targets, None)
    return Stream(name, value)


def as_splits(data: Any) -> dict[str, Batches]:
    """Named splits from a library user's ``data``: one split (called ``test``) given as (inputs, targets)
    tensors, a Dataset, a DataLoader or an iterable of batches; or a mapping of split name to any of those.

    Raises:
        UsageError: a mapping of tensors (inputs without targets), an empty mapping, or data that yields no batches.
    """
    if isinstance(data, Mapping):
        if not data:
            raise UsageError("data is an empty mapping", hint="pass {'test': (inputs, targets)} or a DataLoader")
        if all(isinstance(v, torch.Tensor) for v in data.values()):
            raise UsageError(
                f"data is a mapping of tensors ({', '.join(map(str, data))}) without targets",
                hint="pass (inputs, targets), or {'test': ((inputs_dict), targets)} for inputs of several tensors",
            )
        return {str(k): as_split(str(k), v) for k, v in data.items()}
    if isinstance(data, (Split, Stream)):
        return {data.name: data}
    return {"test": as_split("test", data)}


def default_splits(available: Sequence[str]) -> tuple[str, ...]:
    """The splits a scan evaluates when none are named: ``test`` when there is one, else every split."""
    return ("test",) if "test" in available else tuple(available)

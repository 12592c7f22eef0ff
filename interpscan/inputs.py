"""A scan's inputs resolved, the same way for ``run``, ``layers`` and the library: the model and the two endpoint
states (from files, state dicts or modules), and the data (a dataset name or file, or tensors, Datasets and
DataLoaders in memory), each with where it came from for run.json.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from .adapters import is_adapter_dir
from .checkpoints import META_KEY, Checkpoint, CheckpointInfo, align_to_model, load_checkpoint
from .data import (
    NAMED_DATASETS,
    Batches,
    DataSource,
    Split,
    as_splits,
    load_split,
    mapped,
    open_data,
    parse_normalize,
    subset,
)
from .data.batches import Take, as_split, default_splits
from .data.images import ImageStream, Transform, stream_split
from .download import DownloadProgress
from .errors import DataError, ModelError, UsageError, opt
from .models import OWN_FORWARD, ModelSpec, ResolvedModel, StateMatch, build_model, match_states, resolve_model
from .options import ReadOptions
from .statedict import dtype_counts
from .values import data_entry

# What a library user may pass as an endpoint: a state dict, a module (its state dict), a checkpoint's path, or
# a Checkpoint already loaded.
# What the library takes for a checkpoint: a state dict, a module, a file (or folder) name, or a loaded Checkpoint
StateLike = Union[Mapping[str, torch.Tensor], nn.Module, str, os.PathLike[str], Checkpoint]  # noqa: UP007
# ... for the model: a module, a model spec as --model takes it, or None (what the checkpoints bring or record)
ModelLike = Union[nn.Module, str, None]  # noqa: UP007
# ... for the data: a dataset name, file or folder; (inputs, targets) tensors (inputs a tensor or a dict of
# them); a Dataset, a DataLoader or any iterable of batches; a mapping of split name to any of those
DataLike = Union[  # noqa: UP007
    str,
    os.PathLike[str],
    DataSource,
    tuple[Any, torch.Tensor],
    torch.utils.data.Dataset[Any],
    Iterable[Any],
    Mapping[str, Any],
]
Log = Callable[[str], None]


def in_memory(tensors: Mapping[str, torch.Tensor], label: str) -> Checkpoint:
    """A Checkpoint of tensors held in memory (a state dict, or a module's), provenance saying so."""
    state = {str(k): v.detach() for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise UsageError(f"{label}: no tensors in it", hint="pass a state dict, a module, or a checkpoint's path")
    info = CheckpointInfo(
        path=f"<{label}: in memory>",
        size=sum(t.numel() * t.element_size() for t in state.values()),
        sha256="",  # computed only when a fingerprint needs it (content_digest)
        format="in-memory",
        container_key=None,
        tensor_count=len(state),
        dtypes=dtype_counts(state),
    )
    return Checkpoint(tensors=state, info=info)


def as_checkpoint(
    value: StateLike, label: str, *, key: str | None = None, unsafe_pickle: bool = False, base: Checkpoint | None = None
) -> Checkpoint:
    """An endpoint as a Checkpoint: loaded from a path (see checkpoints.load_checkpoint; ``base`` for an adapter
    folder), or wrapped.

    Raises:
        CheckpointError: an unreadable file. UsageError: something that holds no tensors.
    """
    if isinstance(value, Checkpoint):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load_checkpoint(Path(value), key=key, unsafe_pickle=unsafe_pickle, base=base)
    if isinstance(value, nn.Module):
        return in_memory(value.state_dict(), label)
    if isinstance(value, Mapping):
        return in_memory(value, label)
    raise UsageError(
        f"{label} is a {type(value).__name__}",
        hint="pass a state dict, a module, or a checkpoint's path",
    )


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """A sha256 of named tensors: their names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name} {t.dtype} {list(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def content_digest(ckpt: Checkpoint) -> str:
    """The file's sha256, or for tensors in memory tensors_digest of them."""
    return ckpt.info.sha256 or tensors_digest(ckpt.tensors)


@dataclass(frozen=True)
class Weights:
    """The model a scan evaluates and the checkpoints of its path, renamed and completed to the model's names:
    ``init`` and ``final`` are the first two, ``path`` all of them (more than two for a path through several
    checkpoints), ``labels`` what messages and run.json call each."""

    model: ResolvedModel
    init: Checkpoint
    final: Checkpoint
    matched: StateMatch
    path: tuple[Checkpoint, ...] = ()
    labels: tuple[str, ...] = ("init", "final")

    def __post_init__(self) -> None:
        if not self.path:
            object.__setattr__(self, "path", (self.init, self.final))


def _check_materialized(resolved: ResolvedModel) -> None:
    """A model whose tensors live on the meta device has shapes but no memory: torch's NotImplementedError
    ("Cannot copy out of meta tensor") deep in the engine otherwise. Not made to work with ``to_empty``: a buffer
    the checkpoints do not hold (a non-persistent one) would then be uninitialized memory, silently.

    Raises:
        ModelError: the model has tensors on the meta device.
    """
    net = resolved.model
    meta = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if meta:
        shown = ", ".join(meta[:3]) + (", …" if len(meta) > 3 else "")
        raise ModelError(
            f"the model ({resolved.origin}) has {len(meta)} tensor{'s' if len(meta) != 1 else ''} on the meta "
            f"device, shapes without data ({shown})",
            hint="build the model on the CPU (interpscan loads the checkpoints' weights into it), not under "
            "torch.device('meta')",
        )


def given_model(model: nn.Module) -> ResolvedModel:
    """A model object the library user passed in."""
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    return ResolvedModel(model, ModelSpec("in-memory", kind, None, {}), "the model passed in", "given")


def path_labels(count: int) -> tuple[str, ...]:
    """What the checkpoints of a path are called: init and final, then c2, c3, … for those beyond final."""
    return ("init", "final", *(f"c{i}" for i in range(2, count)))


def random_init(resolved: ResolvedModel, seed: int) -> Checkpoint:
    """A fresh initialization of the scan's model: its factory called again after ``torch.manual_seed(seed)``
    (the global generator's state is restored afterwards), as a Checkpoint in memory.

    Raises:
        UsageError: a model interpscan did not build (passed in, or brought by a checkpoint), so has no factory.
        ModelError: the factory fails.
    """
    if resolved.spec.kind in ("in-memory", *OWN_FORWARD):
        raise UsageError(
            f"{opt('random_init')} builds a fresh model from its factory, and {resolved.origin} has none",
            hint=f"name the model with {opt('model')} (a zoo name or path/to/file.py:factory), or pass the random "
            "initialization as one more checkpoint",
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = build_model(resolved.spec)
    ckpt = in_memory(fresh.state_dict(), f"random init, seed {seed}")
    return replace(ckpt, info=replace(ckpt.info, path=f"<random init: {resolved.spec.text}, seed {seed}>"))


def _endpoints(values: Sequence[StateLike], labels: Sequence[str], read: ReadOptions) -> list[Checkpoint]:
    """The checkpoints of a path, PEFT adapter folders last: an adapter whose recorded base is not a folder here
    is merged into the first other checkpoint (``interpscan run base/ adapter/``)."""
    adapter = [isinstance(v, (str, os.PathLike)) and is_adapter_dir(Path(v)) for v in values]
    loaded: dict[int, Checkpoint] = {}
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        if not adapter[i]:
            loaded[i] = as_checkpoint(value, label, key=read.key, unsafe_pickle=read.unsafe_pickle)
    other = loaded[min(loaded)] if loaded else None
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        if adapter[i]:
            loaded[i] = as_checkpoint(value, label, key=read.key, unsafe_pickle=read.unsafe_pickle, base=other)
    return [loaded[i] for i in range(len(values))]


def resolve_weights(
    model: nn.Module | str | None,
    init: StateLike,
    final: StateLike,
    read: ReadOptions | None = None,
    *,
    onward: Sequence[StateLike] = (),
    random_seed: int | None = None,
) -> Weights:
    """The model and the checkpoints of the path (init, final, then ``onward``, then with ``random_seed`` a
    fresh initialization of the model), checked against each other (every problem at once).

    ``model`` is a module, a ``--model`` spec, or None: then the final endpoint's module when it is one, else the
    forward a file brings, the spec a checkpoint records (code only with ``read.trust_recorded_code``), or the one
    matching zoo model (models.resolve_model). ``read`` says how named files are read (defaults when None).

    Raises:
        CheckpointError, ModelError, UsageError: unreadable checkpoints, no model, a model that does not match,
            or ``random_seed`` for a model interpscan cannot build.
    """
    read = read or ReadOptions()
    labels = path_labels(2 + len(onward))
    given = _endpoints((init, final, *onward), labels, read)
    init_ck, final_ck = given[0], given[-1]  # the model is found as for a path from the first to the last given
    if model is None and isinstance(final, nn.Module):
        model = final
    if isinstance(model, nn.Module):
        if read.model_args:
            raise UsageError("model_args configure a model interpscan builds, not one passed in")
        resolved = given_model(model)
    else:
        # a recorded spec that names code is refused in models.model_spec_for unless trusted, before any data
        trust = read.trust_recorded_code
        resolved = resolve_model(model, read.model_args, final_ck, init_ck, trust_recorded_code=trust)
    _check_materialized(resolved)
    if random_seed is not None:
        given.append(random_init(resolved, random_seed))
        labels = (*labels, "random-init")
    names = list(resolved.model.state_dict())
    aligned = [align_to_model(c, names) for c in given]
    matched = match_states(
        resolved.model, {label: c.tensors for label, c in zip(labels, aligned, strict=True)}, strict=read.strict
    )
    path = tuple(replace(c, tensors=matched.states[label]) for label, c in zip(labels, aligned, strict=True))
    return Weights(resolved, path[0], path[1], matched, path, labels)


def recorded_data(weights: Weights) -> str:
    """The dataset the checkpoints record (interpscan's training code writes it: the demo, examples/), for a scan
    given no data. Only a named dataset is taken: a file or code a checkpoint names is never read or run on its
    word, and a scan never falls back to some default data (that would score the network on the wrong task).

    Raises:
        UsageError: the checkpoints record no dataset, two different ones, or one that is not a named dataset.
    """
    recorded: list[str] = []
    for ckpt in weights.path:
        meta = ckpt.info.metadata.get(META_KEY)
        if isinstance(meta, Mapping) and isinstance(meta.get("data"), str):
            recorded.append(meta["data"])
    hint = (
        f"name the data the network was trained on: {opt('data', 'cifar10')}, a tensor file, an image folder or a "
        "factory"
    )
    if not recorded:
        raise UsageError(f"no {opt('data')} given, and the checkpoints do not record their dataset", hint=hint)
    if len(set(recorded)) > 1:
        raise UsageError(f"the checkpoints record different datasets ({', '.join(sorted(set(recorded)))})", hint=hint)
    if recorded[0] not in NAMED_DATASETS:
        raise UsageError(
            f"the checkpoints record the dataset {recorded[0]!r}, which is not a named dataset, and no {opt('data')} "
            "was given",
            hint=hint,
        )
    return recorded[0]


# ------------------------------------------------------------------------------------------------ the data


@dataclass(frozen=True)
class SourceRecord:
    """One of several data sources, as run.json records it: what was given, what it is, and which of its splits
    the scan reads under which name."""

    given: str  # the data entry as given: NAME=SOURCE, SOURCE, or the library's {name: source} as NAME=…
    name: str
    kind: str
    location: str | None
    normalization: Any
    splits: Mapping[str, str]  # the scan's split -> the source's


@dataclass
class Data:
    """The data a scan evaluates: its splits as streams of batches, the training data batch-norm re-estimation
    draws from, and a description for run.json."""

    name: str
    kind: str  # named, bundled, tensor file, factory, image folder; tensors, stream (in memory)
    location: str | None
    normalization: Any  # what was applied to dataset inputs, or None
    available: tuple[str, ...]  # every split the data has
    splits: list[Batches]  # the evaluated ones, in order
    _calibration: Callable[[int, int], Batches] | None = field(repr=False, default=None)
    sources: tuple[SourceRecord, ...] = ()  # several sources (or one NAME=SOURCE): each, for run.json; else none

    @property
    def has_train(self) -> bool:
        return self._calibration is not None

    def calibration(self, samples: int, seed: int) -> Batches:
        """The batches ``recompute`` re-estimates statistics from: a seeded subset of ``samples`` training
        examples (seed + 1, independent of an evaluated subset), or the first ``samples`` of a stream.

        Raises:
            UsageError: no training data.
        """
        if self._calibration is None:
            raise UsageError(
                f"{self.name} has no train split", hint=f"use {opt('bn', 'interpolate')} or {opt('bn', 'batch')}"
            )
        return self._calibration(samples, seed)


def _pick(available: Sequence[str], wanted: Sequence[str] | None, name: str) -> tuple[str, ...]:
    """The splits ``wanted`` (None: the default ones; empty: none, a source read for its train split alone)."""
    chosen = tuple(wanted) if wanted is not None else default_splits(available)
    missing = [s for s in chosen if s not in available]
    if missing:
        raise DataError(
            f"dataset {name} has no {missing[0]!r} split (it has: {', '.join(available)})",
            hint=f"use {opt('splits', available[0])}" if available else None,
        )
    return chosen


def data_from_source(
    source: DataSource,
    splits: Sequence[str] | None,
    *,
    samples: int | None = None,
    seed: int = 0,
    normalize: str = "auto",
    class_targets: bool = True,
    transform: Transform | None = None,
    workers: int | None = None,
    log: Log | None = None,
) -> Data:
    """Splits of a dataset read into memory (load_split), optionally seeded subsets, normalized; an image
    folder's split streams instead when it is large or ``transform`` is given (data/images.py), decoded by
    ``workers`` DataLoader processes, and a large tensor file's split streams from a memory map
    (data/mapped.py)."""
    chosen = _pick(source.splits, splits, source.name)
    left = [s for s in source.splits if s not in chosen]
    if left and log is not None and source.kind in USER_KINDS:
        log(left_out(source.name, left))
    normalization = parse_normalize(normalize, source)

    def read(split: str, samples: int | None, seed: int) -> Split | ImageStream | mapped.TensorStream:
        streamed = stream_split(
            source,
            split,
            samples=samples,
            seed=seed,
            normalization=normalization,
            transform=transform or Transform(),
            workers=workers,
        )
        if streamed is not None:
            if log is not None:
                log(f"the {split} split of {source.name} streams ({streamed[1]}), {streamed[0].workers} workers")
            return streamed[0]
        from_map = mapped.stream_split(
            source, split, samples=samples, seed=seed, normalization=normalization, class_targets=class_targets
        )
        if from_map is not None:
            if log is not None:
                log(f"the {split} split of {source.name} streams from a memory map ({from_map[1]})")
            return from_map[0]
        return load_split(
            source, split, samples=samples, seed=seed, normalization=normalization, class_targets=class_targets
        )

    loaded: list[Batches] = [read(s, samples, seed) for s in chosen]

    def calibration(n: int, seed: int) -> Batches:
        # seed + 1: the calibration subset is drawn independently of an evaluated --samples subset
        train = read("train", n, seed + 1)
        if isinstance(train, (ImageStream, mapped.TensorStream)):
            train.indices = train.indices if train.indices is not None else tuple(range(len(train)))
            return train
        return train if train.indices is not None else replace(train, indices=tuple(range(len(train))))

    return Data(
        source.name,
        source.kind,
        source.location,
        normalization,
        source.splits,
        loaded,
        calibration if "train" in source.splits else None,
    )


# The user's own data, whose splits the scan names when it leaves some out: a standard dataset's are known.
USER_KINDS = ("tensor file", "factory", "image folder")


def left_out(name: str, splits: Sequence[str]) -> str:
    """The line that names the splits of the user's data a scan does not evaluate."""
    return (
        f"{name} also holds the split{'s' if len(splits) > 1 else ''} {', '.join(splits)}, not evaluated (name the "
        f"splits to evaluate with {opt('splits')})"
    )


def data_in_memory(
    data: Any,
    splits: Sequence[str] | None,
    *,
    samples: int | None = None,
    seed: int = 0,
    calibration: Any = None,
    log: Log | None = None,
) -> Data:
    """Splits a library user passes (see data.batches.as_splits); a ``train`` split, or ``calibration``, is
    what ``recompute`` re-estimates from. The splits left out are named to ``log``.

    Raises:
        UsageError: ``samples`` for data that streams (its DataLoader decides the examples).
    """
    named = as_splits(data)
    chosen = _pick(list(named), splits, "the data")
    left = [s for s in named if s not in chosen]
    if left and log is not None:
        log(left_out("the data", left))
    if samples is not None and any(not isinstance(named[s], Split) for s in chosen):
        raise UsageError(
            "samples draws a subset of tensors in memory; this data streams from a DataLoader or an iterable",
            hint="subset the dataset itself (torch.utils.data.Subset), or pass (inputs, targets) tensors",
        )
    evaluated: list[Batches] = [
        subset(split, samples, seed) if isinstance(split, Split) else split for split in (named[s] for s in chosen)
    ]
    kind = "tensors" if all(isinstance(named[s], Split) for s in chosen) else "stream"
    train: Batches | None = as_split("calibration", calibration) if calibration is not None else named.get("train")

    def calibrate(n: int, seed: int) -> Batches:
        assert train is not None
        if calibration is not None:
            return train  # given for the purpose: used whole
        if isinstance(train, Split):
            picked = subset(train, n, seed + 1)
            return picked if picked.indices is not None else replace(picked, indices=tuple(range(len(picked))))
        return Take(train, n)

    return Data("in-memory data", kind, None, None, tuple(named), evaluated, calibrate if train is not None else None)


def resolve_data(
    data: Any,
    splits: Sequence[str] | None,
    *,
    samples: int | None = None,
    seed: int = 0,
    class_targets: bool = True,
    root: Path | None = None,
    download: bool = True,
    keys: tuple[str, str] | None = None,
    normalize: str = "auto",
    calibration: Any = None,
    progress: DownloadProgress | None = None,
    log: Log | None = None,
    transform: Transform | None = None,
    workers: int | None = None,
) -> Data:
    """``data`` as a scan reads it: a dataset name, file, folder or factory (``--data``; found, downloaded and
    read into memory), a DataSource, or data in memory (tensors, Datasets, DataLoaders, iterables of batches, or
    a mapping of split name to those).

    Raises:
        DataError, UsageError: see open_data, load_split, data_in_memory.
    """

    def read(source: DataSource, chosen: Sequence[str] | None) -> Data:
        return data_from_source(
            source,
            chosen,
            samples=samples,
            seed=seed,
            normalize=normalize,
            class_targets=class_targets,
            transform=transform,
            workers=workers,
            log=log,
        )

    entries = data_entries(data)
    if entries is not None:
        return several_sources(
            entries,
            splits,
            samples=samples,
            seed=seed,
            calibration=calibration,
            open_source=lambda spec: open_data(spec, root, download=download, keys=keys, progress=progress, log=log),
            read=read,
            log=log,
        )
    if isinstance(data, (str, os.PathLike)):
        data = open_data(str(data), root, download=download, keys=keys, progress=progress, log=log)
    elif not isinstance(data, DataSource) and (transform or workers is not None):
        raise UsageError(
            "workers, resize and crop say how an image folder streams; this data is in memory",
            hint="name the folder (data='path/to/images'), or transform the data before passing it",
        )
    if isinstance(data, DataSource):
        return read(data, splits)
    return data_in_memory(data, splits, samples=samples, seed=seed, calibration=calibration, log=log)


# ------------------------------------------------------------------------------------------ several sources


@dataclass(frozen=True)
class DataEntry:
    """One of several data sources: ``split`` None gives every split of ``source`` under its own name; a name
    gives one of its splits under that name (see ``picked``)."""

    split: str | None
    source: Any  # a dataset name, file, folder or factory (text or a path), a DataSource, or data in memory
    given: str  # as the user gave it, for messages and run.json


def data_entries(data: Any) -> list[DataEntry] | None:
    """``data`` as several sources, or None for one source named as before (or data in memory): a text
    ``NAME=SOURCE`` (values.data_entry), texts each ``SOURCE`` or ``NAME=SOURCE`` (the command line's repeated
    ``--data``), or a mapping of split name to data that holds at least one source (a name, path or DataSource;
    its other values may be data in memory). A path object is always a path, never ``NAME=SOURCE``."""
    if isinstance(data, str):
        entry = _text_entry(data)
        return None if entry.split is None else [entry]
    if isinstance(data, (tuple, list)) and data and all(isinstance(d, str) for d in data):
        return [_text_entry(d) for d in data]
    if isinstance(data, Mapping) and any(isinstance(v, (str, os.PathLike, DataSource)) for v in data.values()):
        return [
            DataEntry(str(k), v, f"{k}={v if isinstance(v, (str, os.PathLike)) else type(v).__name__}")
            for k, v in data.items()
        ]
    return None


def _text_entry(text: str) -> DataEntry:
    """``SOURCE`` or ``NAME=SOURCE`` (values.data_entry).

    Raises:
        UsageError: NAME=SOURCE that is also the name of a file or folder here (which of the two is meant).
    """
    name, source = data_entry(text)
    if name is not None and (Path(text).exists() or Path(text).is_symlink()):
        raise UsageError(
            f"{opt('data', text)} reads as the split {name} of {source}, and {text} is also a file here",
            hint=f"for the file, give it with its folder: {opt('data', './' + text)}",
        )
    return DataEntry(name, source, text)


def picked(entry: DataEntry, source: DataSource) -> str:
    """The split of ``source`` a named entry reads: the one of the entry's name, else its only split, else its
    test split.

    Raises:
        DataError: a source of several splits, none of them named so or test.
    """
    assert entry.split is not None
    if entry.split in source.splits:
        return entry.split
    if len(source.splits) == 1:
        return source.splits[0]
    if "test" in source.splits:
        return "test"
    raise DataError(
        f"{opt('data', entry.given)}: {source.name} holds the splits {', '.join(source.splits)}, and "
        f"{entry.split}= reads one of them",
        hint=f"name the entry after the split to read (e.g. {source.splits[0]}={entry.source}), or give the source "
        f"without a name and choose with {opt('splits')}",
    )


def renamed(source: DataSource, names: Mapping[str, str]) -> DataSource:
    """``source`` with the splits ``names`` maps (the scan's name -> the source's), under the scan's names."""
    if list(names.items()) == [(s, s) for s in source.splits]:
        return source
    files, mapped_splits = source.files, source.mapped
    return replace(
        source,
        splits=tuple(names),
        reader=lambda split: source.reader(names[split]),
        files=None if files is None else (lambda split: files(names[split])),
        mapped=None
        if mapped_splits is None
        else {new: mapped_splits[old] for new, old in names.items() if old in mapped_splits},
    )


def _duplicate(split: str, first: DataEntry, second: DataEntry) -> UsageError:
    return UsageError(
        f"{opt('data')}: the split {split!r} comes from both {first.given} and {second.given}",
        hint=f"give every split one source: name one of them, e.g. {opt('data', 'ood=' + str(second.source))}",
    )


def several_sources(
    entries: Sequence[DataEntry],
    splits: Sequence[str] | None,
    *,
    samples: int | None,
    seed: int,
    calibration: Any,
    open_source: Callable[[str], DataSource],
    read: Callable[[DataSource, Sequence[str]], Data],
    log: Log | None,
) -> Data:
    """The data of several sources, each giving its splits (``DataEntry``), as one Data: the splits asked for
    (by default each source's default splits: a named entry's one, test where a source has it, else all), in the
    order asked; ``train``, wherever it comes from, is what ``recompute`` re-estimates from (or ``calibration``).

    Raises:
        UsageError: a split that two sources give. DataError: a split asked for that none gives (the message
            lists those there are), and whatever reading a source raises.
    """
    opened: list[tuple[DataEntry, DataSource | None, dict[str, str]]] = []  # entry, source, scan name -> its
    owner: dict[str, DataEntry] = {}
    for entry in entries:
        value = entry.source
        source = value if isinstance(value, DataSource) else None
        if isinstance(value, (str, os.PathLike)):
            source = open_source(str(value))
        if source is None:
            names = {str(entry.split): str(entry.split)}
        elif entry.split is None:
            names = {s: s for s in source.splits}
        else:
            names = {entry.split: picked(entry, source)}
            others = [s for s in source.splits if s != names[entry.split]]
            if others and log is not None:
                log(
                    f"{entry.split}={source.name}: its {names[entry.split]} split is read as {entry.split} (it also "
                    f"holds {', '.join(others)})"
                )
        for name in names:
            if name in owner:
                raise _duplicate(name, owner[name], entry)
            owner[name] = entry
        opened.append((entry, source, names))
    present = tuple(owner)
    if splits:
        chosen = _pick(present, splits, "the data")
    else:
        chosen = tuple(
            n for _, source, names in opened for n in (names if source is None else default_splits(tuple(names)))
        )
    evaluated: dict[str, Batches] = {}
    records: list[SourceRecord] = []
    parts: list[Data] = []
    labels: list[str] = []  # each source as the data's name shows it
    for entry, source, names in opened:
        mine = [n for n in chosen if n in names]
        record = SourceRecord(entry.given, entry.given, "in memory", None, None, dict(names))
        part: Data | None = None
        if source is None:
            if mine or "train" in names:
                part = data_in_memory(dict.fromkeys(names, entry.source), mine, samples=samples, seed=seed)
                record = replace(record, name=part.name, kind=part.kind)
        else:
            if mine or "train" in names:  # a train split is read for recompute even when not evaluated
                part = read(renamed(source, names), mine)
            record = replace(
                record,
                name=source.name,
                kind=source.kind,
                location=source.location,
                normalization=None if part is None else part.normalization,
            )
        records.append(record)
        labels.append(record.name if entry.split is None else f"{entry.split}={record.name}")
        if part is not None:
            parts.append(part)
            evaluated.update({b.name: b for b in part.splits})
    trained = next((p for p in parts if p.has_train and "train" in p.available), None)
    given = as_split("calibration", calibration) if calibration is not None else None

    def calibrate(n: int, seed: int) -> Batches:
        if given is not None:
            return given  # given for the purpose: used whole
        assert trained is not None
        return trained.calibration(n, seed)

    kinds = {r.kind for r in records}
    normalizations = {repr(p.normalization) for p in parts}
    return Data(
        " + ".join(labels),
        kinds.pop() if len(kinds) == 1 else "several",
        records[0].location if len(records) == 1 else None,
        parts[0].normalization if len(normalizations) == 1 and parts else None,
        present,
        [evaluated[n] for n in chosen],
        calibrate if given is not None or trained is not None else None,
        tuple(records),
    )

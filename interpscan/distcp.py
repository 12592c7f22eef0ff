"""torch.distributed.checkpoint folders (what ``dcp.save``, FSDP2 and torchtitan write: ``.metadata`` beside one
``__RANK_N.distcp`` file per rank) read in place, in one process, by torch's own FileSystemReader: no conversion
file is written.

Only tensors are read. DCP stores everything else (a step counter, a dataloader's state) as a pickle that torch
unpickles with ``weights_only=False``: those entries are listed and never read. The ``.metadata`` file is itself
a pickle (torch's Metadata dataclasses); torch's reader unpickles it with no restriction, so interpscan unpickles
it itself, allowing only those classes (``--unsafe-pickle`` lifts this, as for any pickle). Before anything is
read, every entry must lie inside a regular file of the folder (no links out of it), every tensor's chunks must
tile it exactly, and each chunk's stored bytes must hold at least its values, so a crafted folder cannot make
interpscan allocate more than the folder holds.
"""

from __future__ import annotations

import io
import math
import pickle
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from .errors import CheckpointError, opt
from .files import check_regular
from .tensorfile import check_zip_sizes

FORMAT = "torch-dcp"
METADATA = ".metadata"
_METADATA_LIMIT = 1 << 30  # bytes; a 70B-parameter model's is a few MB
# What a .metadata pickle names: torch's checkpoint dataclasses and the values inside them.
_ALLOWED = {
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("collections", "OrderedDict"),
    *(
        ("torch.distributed.checkpoint.metadata", name)
        for name in (
            "Metadata",
            "MetadataIndex",
            "StorageMeta",
            "TensorProperties",
            "TensorStorageMetadata",
            "ChunkStorageMetadata",
            "BytesStorageMetadata",
            "_MEM_FORMAT_ENCODING",
        )
    ),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
}


def is_dcp_dir(path: Path) -> bool:
    """A folder DCP wrote: it holds ``.metadata`` (any kind of entry, refused by name when read)."""
    metadata = path / METADATA
    return path.is_dir() and (metadata.exists() or metadata.is_symlink())


class _MetadataUnpickler(pickle.Unpickler):
    """Builds torch's checkpoint metadata and nothing else; anything with ``unsafe`` (--unsafe-pickle)."""

    def __init__(self, fh: IO[bytes], *, unsafe: bool) -> None:
        super().__init__(fh)
        self.unsafe = unsafe

    def find_class(self, module: str, name: str) -> Any:
        allowed = (module, name) in _ALLOWED or (
            module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        )
        if allowed or self.unsafe:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"names {module}.{name}")


def read_metadata(directory: Path, *, unsafe_pickle: bool = False) -> Any:
    """The folder's Metadata, unpickled allowing torch's checkpoint classes only (any, with ``unsafe_pickle``).

    Raises:
        CheckpointError: not a regular file, absurdly large, unreadable, naming other Python objects, or not a
            DCP Metadata.
    """
    try:
        from torch.distributed.checkpoint.metadata import Metadata
    except ImportError as exc:  # a torch built without distributed support
        raise CheckpointError(
            f"{directory} is a torch.distributed.checkpoint folder, and this torch ({torch.__version__}) has no "
            "torch.distributed to read it",
            hint="read it with a torch build that has torch.distributed (the PyPI wheels for Linux, macOS and Windows "
            "do)",
        ) from exc
    path = directory / METADATA
    size = check_regular(path, CheckpointError, what="checkpoint metadata")
    if size > _METADATA_LIMIT:
        raise CheckpointError(f"{path}: {size:,} bytes, far more than a checkpoint's metadata holds")
    try:
        with path.open("rb") as fh:
            metadata = _MetadataUnpickler(fh, unsafe=unsafe_pickle).load()
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("names "):
            raise CheckpointError(
                f"{path}: the metadata pickle {exc}, which torch's checkpoint metadata never holds; refused",
                hint=f"only if you trust the folder, pass {opt('unsafe_pickle', True)} (unpickling runs code it names)",
            ) from exc
        raise CheckpointError(f"{path}: unreadable checkpoint metadata ({exc})") from exc
    except Exception as exc:  # a truncated or crafted pickle raises EOFError, TypeError, ValueError, ...
        raise CheckpointError(f"{path}: unreadable checkpoint metadata ({type(exc).__name__}: {exc})") from exc
    if not isinstance(metadata, Metadata):
        raise CheckpointError(f"{path}: holds a {type(metadata).__name__}, not torch's checkpoint Metadata")
    return metadata


@dataclass(frozen=True)
class Entry:
    """A tensor the folder holds: its name (the dotted path DCP flattened it to), shape and dtype."""

    fqn: str
    path: tuple[str, ...]  # its place in the nested dict that was saved
    shape: tuple[int, ...]
    dtype: torch.dtype


def _check(directory: Path, metadata: Any) -> tuple[list[Entry], list[str], list[Path]]:
    """The tensors the folder holds, the other entries (never read), and its data files, all checked.

    Raises:
        CheckpointError: entries in files outside the folder, beyond a file's end, compressed (a transform), chunks
            that do not tile their tensor or hold fewer bytes than their values, dtypes torch cannot compute with.
    """
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    storage = metadata.storage_data
    if not isinstance(storage, Mapping) or not isinstance(metadata.state_dict_metadata, Mapping):
        raise CheckpointError(f"{directory / METADATA}: no storage table; not written by dcp.save")
    sizes: dict[str, int] = {}
    files: list[Path] = []
    stored: dict[tuple[str, tuple[int, ...]], int] = {}  # (fqn, chunk offsets) -> bytes
    for index, info in storage.items():
        name = str(getattr(info, "relative_path", ""))
        if Path(name).name != name or name in ("", ".", "..", METADATA):
            raise CheckpointError(
                f"{directory / METADATA}: names a data file outside its folder: {name!r}",
                hint="a DCP folder's metadata names plain file names beside it",
            )
        if name not in sizes:
            file = directory / name
            if file.is_symlink() and file.resolve().parent != directory.resolve():
                raise CheckpointError(
                    f"{file}: a link out of the checkpoint's folder, to {file.resolve()}",
                    hint="copy the files into the folder",
                )
            sizes[name] = check_regular(file, CheckpointError, what="checkpoint data file")
            files.append(file)
        offset, length = getattr(info, "offset", -1), getattr(info, "length", -1)
        if not (isinstance(offset, int) and isinstance(length, int) and offset >= 0 and length >= 0):
            raise CheckpointError(f"{directory / METADATA}: entry {index.fqn!r} has no valid offset and length")
        if offset + length > sizes[name]:
            raise CheckpointError(
                f"{directory / name}: entry {index.fqn!r} lies at bytes {offset:,}-{offset + length:,}, past the "
                f"file's end ({sizes[name]:,} bytes)",
                hint="the folder is truncated or its files do not belong to its .metadata; copy it again",
            )
        if getattr(info, "transform_descriptors", None):
            raise CheckpointError(
                f"{directory / name}: entry {index.fqn!r} is stored transformed "
                f"({', '.join(map(str, info.transform_descriptors))})",
                hint="save without a storage transform (compression), or convert with "
                "torch.distributed.checkpoint.format_utils.dcp_to_torch_save",
            )
        stored[(str(index.fqn), tuple(index.offset or ()))] = length
    planner = metadata.planner_data if isinstance(metadata.planner_data, Mapping) else {}
    entries: list[Entry] = []
    others: list[str] = []
    for fqn, item in metadata.state_dict_metadata.items():
        path = planner.get(fqn)
        place = tuple(str(p) for p in path) if isinstance(path, (tuple, list)) and path else (str(fqn),)
        if isinstance(item, BytesStorageMetadata):
            others.append(".".join(place))
            continue
        if not isinstance(item, TensorStorageMetadata):
            raise CheckpointError(f"{directory / METADATA}: entry {fqn!r} is a {type(item).__name__}")
        entries.append(_tensor_entry(directory, str(fqn), place, item, stored))
    return entries, others, files


def _tensor_entry(
    directory: Path, fqn: str, place: tuple[str, ...], item: Any, stored: Mapping[tuple[str, tuple[int, ...]], int]
) -> Entry:
    """One tensor's metadata, checked: a dtype, a shape, chunks that tile it and bytes that hold them."""
    dtype = item.properties.dtype
    shape = tuple(int(n) for n in item.size)
    if not isinstance(dtype, torch.dtype) or any(n < 0 for n in shape):
        raise CheckpointError(f"{directory / METADATA}: tensor {fqn!r} has no valid dtype and shape")
    width = torch.empty((), dtype=dtype).element_size()
    covered = 0
    boxes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for chunk in item.chunks:
        offsets, sizes = tuple(int(n) for n in chunk.offsets), tuple(int(n) for n in chunk.sizes)
        inside = len(offsets) == len(sizes) == len(shape) and all(
            o >= 0 and s >= 0 and o + s <= n for o, s, n in zip(offsets, sizes, shape, strict=True)
        )
        count = math.prod(sizes)
        if not inside or stored.get((fqn, offsets), -1) < count * width:
            raise CheckpointError(
                f"{directory / METADATA}: tensor {fqn!r} {list(shape)} has a chunk at {list(offsets)} of "
                f"{list(sizes)} that lies outside it or holds fewer bytes than its values",
                hint="the metadata is corrupt or crafted; copy the folder again",
            )
        boxes.append((offsets, sizes))
        covered += count
    overlapping = any(
        all(o1 < o2 + s2 and o2 < o1 + s1 for o1, s1, o2, s2 in zip(*one, *two, strict=True))
        for i, one in enumerate(boxes)
        for two in boxes[:i]
    )
    if overlapping or covered != math.prod(shape):
        raise CheckpointError(
            f"{directory / METADATA}: the chunks of tensor {fqn!r} {list(shape)} "
            + ("overlap" if overlapping else f"hold {covered:,} of its {math.prod(shape):,} values"),
            hint="a rank's data is missing or the metadata is corrupt; copy the whole folder",
        )
    return Entry(fqn, place, shape, dtype)


class _Window(io.RawIOBase):
    """Bytes ``start`` to ``start + length`` of an open file, as a file of their own (for zipfile)."""

    def __init__(self, fh: IO[bytes], start: int, length: int) -> None:
        super().__init__()
        self.fh, self.start, self.length, self.pos = fh, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.length}[whence]
        if base + offset < 0:
            raise ValueError("seek before the start")
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self.length - self.pos))
        self.fh.seek(self.start + self.pos)
        data = self.fh.read(n)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _check_chunks(directory: Path, metadata: Any, wanted: set[str]) -> None:
    """Each chunk to be read is a torch.save zip whose entries declare no more than they hold (check_zip_sizes)."""
    by_file: dict[str, list[Any]] = {}
    for index, info in metadata.storage_data.items():
        if index.fqn in wanted:
            by_file.setdefault(info.relative_path, []).append(info)
    for name, infos in by_file.items():
        with (directory / name).open("rb") as fh:
            for info in infos:
                try:
                    with zipfile.ZipFile(io.BufferedReader(_Window(fh, info.offset, info.length))) as zf:
                        entries = zf.infolist()
                except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                    raise CheckpointError(
                        f"{directory / name}: the chunk at byte {info.offset:,} is not a torch tensor ({exc})",
                        hint="the folder is corrupt or its files do not belong to its .metadata",
                    ) from exc
                check_zip_sizes(directory / name, entries)


def _reader(directory: Path, metadata: Any) -> Any:
    """torch's FileSystemReader, handed the metadata interpscan unpickled instead of unpickling it itself."""
    from torch.distributed.checkpoint.filesystem import FileSystemReader

    class Reader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            return metadata

    return Reader(str(directory))


@dataclass(frozen=True)
class NotRead:
    """An entry DCP stored as a pickle (a step counter, a dataloader's state): listed, never unpickled."""

    name: str

    def __repr__(self) -> str:
        return f"<not read: {self.name}>"


@dataclass(frozen=True)
class Folder:
    """A checked DCP folder: its tensors by place in the saved dict (as meta tensors, nothing read yet), the
    entries that are not tensors, its files, and ``load`` to read some of its tensors."""

    skeleton: dict[str, Any]  # the nested dict that was saved, tensors as meta tensors, other entries NotRead
    others: list[str]
    files: list[Path]
    load: Callable[[Any], Any]


def open_folder(directory: Path, *, unsafe_pickle: bool = False) -> Folder:
    """Read and check a DCP folder's metadata (read_metadata, _check); its tensors are read by ``Folder.load``.

    Raises:
        CheckpointError: see read_metadata and _check.
    """
    metadata = read_metadata(directory, unsafe_pickle=unsafe_pickle)
    entries, others, files = _check(directory, metadata)
    skeleton: dict[str, Any] = {}
    by_tensor: dict[int, Entry] = {}
    for entry in entries:
        node = skeleton
        for step in entry.path[:-1]:
            child = node.setdefault(step, {})
            if not isinstance(child, dict):
                raise CheckpointError(f"{directory / METADATA}: entry {entry.fqn!r} nests under a tensor")
            node = child
        placeholder = torch.empty(entry.shape, dtype=entry.dtype, device="meta")
        node[entry.path[-1]] = placeholder
        by_tensor[id(placeholder)] = entry
    for other in others:
        skeleton.setdefault(other, NotRead(other))

    def load(obj: Any) -> Any:
        """``obj`` (the part of the skeleton the weights are in) with its meta tensors read from the folder."""
        wanted = {e.fqn: e for t in _tensors(obj) if (e := by_tensor.get(id(t))) is not None}
        _check_chunks(directory, metadata, set(wanted))
        state = {fqn: torch.empty(e.shape, dtype=e.dtype) for fqn, e in wanted.items()}
        from torch.distributed.checkpoint.state_dict_loader import load as dcp_load

        try:
            with warnings.catch_warnings():
                # "torch.distributed is disabled, …, assuming the intent is to load in a single process": it is
                warnings.simplefilter("ignore", UserWarning)
                if state:
                    dcp_load(state, storage_reader=_reader(directory, metadata), no_dist=True)
        except Exception as exc:  # torch wraps every rank's failure in a CheckpointException
            text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise CheckpointError(f"{directory}: torch could not read the checkpoint's tensors ({text})") from exc
        by_id = {id(t): state[e.fqn] for t in _tensors(obj) if (e := by_tensor.get(id(t))) is not None}
        return _replace(obj, by_id)

    return Folder(skeleton, sorted(others), files, load)


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _tensors(value)


def _replace(obj: Any, by_id: Mapping[int, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return by_id.get(id(obj), obj)
    if isinstance(obj, Mapping):
        return {k: _replace(v, by_id) for k, v in obj.items()}
    return obj

"""Reading checkpoints: detect the format from the bytes, unwrap containers, align names to a model, provenance.

Pickles are loaded with ``weights_only=True``: a checkpoint never runs Python code unless the user passes
``--unsafe-pickle``. TorchScript archives and torch.export programs bring their own forward (``Checkpoint.module``).
Every step is recorded (format, layout, container key, prefixes stripped) so run.json can say how a file was read.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import adapters, distcp, huggingface
from .errors import CheckpointError, CheckpointNotFoundError, opt
from .files import check_in_tree, tree_of
from .statedict import WRAPPER_PREFIXES, dtype_counts, strip_prefixes
from .tensorfile import (
    UPCAST_DTYPES,
    detect_format,
    read_index,
    read_npz,
    read_safetensors,
    read_torch,
    tensor_kind_problem,
)

# Keys under which training code commonly nests the state dict, in the order they are tried (at any depth).
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
# Averaged weights some trainers keep beside the live ones: used only when picked with --key.
EMA_KEYS = ("model_ema", "ema", "state_dict_ema", "ema_state_dict", "ema_model")
# Where a self-describing checkpoint (written by `interpscan demo` and examples/) keeps its model spec.
META_KEY = "interpscan"
# Lightning's WeightAveraging callbacks (EMAWeightAveraging) save the average under "state_dict" and move the live
# weights to "current_model_state", beside "averaging_state": the live ones are read unless --key state_dict.
LIGHTNING_LIVE, LIGHTNING_AVERAGING = "current_model_state", "averaging_state"
# Entries that mark a PyTorch Lightning checkpoint.
LIGHTNING_KEYS = ("pytorch-lightning_version", "optimizer_states", "lr_schedulers", "loops")
# Formats whose file carries the forward pass too.
PROGRAM_FORMATS = ("torchscript", "torch-export")

# Files a training run saves beside the model (accelerate's save_state: optimizer.bin, scheduler.bin,
# random_states_0.pkl, scaler.pt; the Trainer's rng_state.pth, training_args.bin): never the model's weights.
_TRAINING_STATE = ("optimizer", "scheduler", "random_states", "rng_state", "scaler", "training_args", "sampler")
_INDEX_SUFFIXES = (".safetensors.index.json", ".bin.index.json", ".pt.index.json", ".pth.index.json")
_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".pt2", ".npz")


@dataclass(frozen=True)
class CheckpointInfo:
    """Provenance of one loaded checkpoint, as recorded in run.json."""

    path: str
    size: int  # bytes, all files together for a sharded checkpoint
    sha256: str  # of the file; for several files, of their "sha256  name" lines
    format: str  # torch-zip, torch-legacy, safetensors, safetensors-sharded, torch-sharded, npz, torchscript, ...
    container_key: str | None  # dotted path of the dict the tensors were found in, e.g. "state_dict"
    tensor_count: int
    dtypes: dict[str, int]  # dtype name -> number of tensors
    ignored_keys: tuple[str, ...] = ()  # entries that were skipped (optimizer state, epoch, ...)
    prefixes_stripped: tuple[str, ...] = ()  # filled in by align_to_model
    metadata: dict[str, Any] = field(default_factory=dict)
    layout: str = "state-dict"  # state-dict, nested, lightning, module (a pickled nn.Module), program
    alternatives: tuple[str, ...] = ()  # other tensor dicts in the file (EMA weights, ...), reachable with --key
    aliases: tuple[tuple[str, ...], ...] = ()  # names that share one tensor in the file (tied weights)
    files: tuple[dict[str, Any], ...] = ()  # path, size and sha256 of each file of a sharded checkpoint
    averaged: tuple[str, ...] = ()  # entries (the one read, or alternatives) that hold averaged (EMA) weights

    def to_json(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "format": self.format,
            "layout": self.layout,
            "container_key": self.container_key,
            "tensor_count": self.tensor_count,
            "dtypes": self.dtypes,
            "ignored_keys": list(self.ignored_keys),
            "prefixes_stripped": list(self.prefixes_stripped),
        }
        if self.alternatives:
            out["alternatives"] = list(self.alternatives)
        if self.aliases:
            out["aliases"] = [list(a) for a in self.aliases]
        if self.files:
            out["files"] = [dict(f) for f in self.files]
        if self.averaged:
            out["averaged"] = list(self.averaged)
            out["weights"] = self.weights
        return out

    @property
    def weights(self) -> str:
        """Which weights were read: "averaged" (EMA, picked with --key) or "live" (the trained model's own)."""
        return "averaged" if self.container_key in self.averaged else "live"


@dataclass(frozen=True)
class Checkpoint:
    """Named tensors from one file plus where they came from.

    ``module`` is set when the file brings its own forward pass (a TorchScript archive, a torch.export program,
    or a pickled nn.Module loaded with ``unsafe_pickle``); its ``state_dict()`` has the names of ``tensors``.
    """

    tensors: dict[str, torch.Tensor]
    info: CheckpointInfo
    module: nn.Module | None = None

    @property
    def model_spec(self) -> dict[str, Any] | None:
        """The model spec a self-describing checkpoint carries ({"model": ..., "model_args": {...}})."""
        spec = self.info.metadata.get(META_KEY)
        return spec if isinstance(spec, dict) and isinstance(spec.get("model"), str) else None


# ------------------------------------------------------------------------------------------ detection


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pick_in_directory(directory: Path) -> Path:
    """The checkpoint a directory holds: a sharded checkpoint's index, else its only checkpoint file.

    Anything but a folder counts, so that a FIFO or a broken link named model.pt is refused by name when read,
    not passed over."""
    entries = sorted(p for p in directory.iterdir() if not p.is_dir())
    indexes = [p for p in entries if p.name.endswith(_INDEX_SUFFIXES)]
    if len(indexes) == 1:
        return indexes[0]
    files = [p for p in entries if p.suffix in _FILE_SUFFIXES and not p.name.startswith(_TRAINING_STATE)]
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    if not indexes and len(safetensors) == 1:  # e.g. model.safetensors beside training_args.bin
        return safetensors[0]
    if not indexes and len(files) == 1:
        return files[0]
    found = indexes or files
    listing = ", ".join(p.name for p in found[:6]) + (", …" if len(found) > 6 else "") if found else "nothing"
    raise CheckpointError(
        f"{directory} is a directory with {len(found) or 'no'} candidate checkpoint files ({listing})",
        hint="pass the file itself (for a sharded checkpoint, its *.index.json)",
    )


# -------------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class _Read:
    """What a format's reader hands on: the object the file holds (a state dict, a dict around one, a module),
    every file read (a sharded checkpoint's index, then its shards), the file's metadata, and the module when the
    file brings its own forward pass."""

    obj: Any
    files: list[Path]
    metadata: dict[str, Any] = field(default_factory=dict)
    module: nn.Module | None = None
    # for a format that lists its tensors before reading them (DCP): reads the tensors of the part that was picked
    materialize: Callable[[Any], Any] | None = None


def _string_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """safetensors metadata is str -> str; the interpscan entry holds JSON."""
    out: dict[str, Any] = {k: v for k, v in sorted(meta.items()) if k != META_KEY}
    if META_KEY in meta:
        with contextlib.suppress(json.JSONDecodeError, TypeError, RecursionError):  # RecursionError: "[[[[…"
            out[META_KEY] = json.loads(meta[META_KEY])
    return out


def _load_sharded(index_path: Path, fmt: str) -> _Read:
    weight_map, extra = read_index(index_path)
    shards = [index_path.parent / name for name in sorted(set(weight_map.values()))]
    absent = [s.name for s in shards if not (s.exists() or s.is_symlink())]  # the rest are checked below
    if absent:
        raise CheckpointError(
            f"{index_path}: {len(absent)} of {len(shards)} shards are missing: {', '.join(absent)}",
            hint="the shards must lie beside the index",
        )
    tree = tree_of(index_path.parent)
    for shard in shards:  # all of them before any is read: a FIFO or a link out of the folder is refused at once
        check_in_tree(shard, tree, CheckpointError, what="shard")
    tensors: dict[str, torch.Tensor] = {}
    metadata: dict[str, Any] = {}
    for shard in shards:
        if fmt == "safetensors-sharded":
            part, meta = read_safetensors(shard)
            metadata.update(_string_metadata(meta))
        else:
            obj = read_torch(shard, unsafe_pickle=False)
            part = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, dict) else {}
        twice = sorted(set(part) & set(tensors))
        if twice:
            # which copy the index means is no guess to make: the other shard's values would be scanned silently
            raise CheckpointError(
                f"{index_path}: {huggingface.tensors_are(len(twice))} stored in more than one shard "
                f"({shard.name} too): {', '.join(twice[:5])}",
                hint="the shards do not belong together; re-save the checkpoint",
            )
        tensors.update(part)
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise CheckpointError(
            f"{index_path}: {len(missing)} tensors named in the index are in no shard: {', '.join(missing[:5])}",
            hint="the shards do not belong to this index",
        )
    if extra:
        metadata.update({str(k): v for k, v in extra.items() if isinstance(v, (str, int, float, bool))})
    return _Read({k: tensors[k] for k in weight_map}, [index_path, *shards], metadata)


def _load_torchscript(path: Path) -> _Read:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; files remain
            module: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:  # torch raises RuntimeError with C++ text for bad archives
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: unreadable TorchScript archive ({text})") from exc
    for p in module.parameters():
        # copy.deepcopy of a ScriptModule clones parameters through autograd, so a copy of one that requires
        # grad holds non-leaf tensors whose flag cannot be changed any more (torch 2.13)
        p.requires_grad_(False)
    module = module.eval()
    return _Read(module, [path], {"class": str(getattr(module, "original_name", type(module).__name__))}, module)


class ProgramModule(nn.Module):
    """A torch.export program's graph as an ordinary module: the same state-dict names, ``eval()`` allowed.

    The graph module's parameter, buffer and submodule dicts are shared, not copied, so the engine's in-place
    writes and ``functional_call`` both reach the graph. A program traced with a fixed batch size is run in
    pieces of that size, the last one zero-padded (in eval mode every example is computed on its own).
    """

    def __init__(self, graph: nn.Module, batch: int | None) -> None:
        super().__init__()
        for attr in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"):
            object.__setattr__(self, attr, getattr(graph, attr))
        object.__setattr__(self, "graph", graph)
        self.batch = batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        graph: Any = self.__dict__["graph"]
        if self.batch is None or len(x) == self.batch:
            return graph(x)  # type: ignore[no-any-return]
        outputs = []
        for piece in torch.split(x, self.batch):
            n = len(piece)
            if n < self.batch:
                piece = torch.cat([piece, piece.new_zeros(self.batch - n, *piece.shape[1:])])
            outputs.append(graph(piece)[:n])
        return torch.cat(outputs)

    def train(self, mode: bool = True) -> ProgramModule:
        # The traced graph fixes how each layer runs; exported graph modules refuse train()/eval().
        self.training = mode
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ProgramModule:
        with warnings.catch_warnings():
            # torch 2.13 warns about its own pytree internals (LeafSpec) while copying an exported graph
            warnings.simplefilter("ignore", FutureWarning)
            graph = copy.deepcopy(self.__dict__["graph"], memo)
        new = ProgramModule(graph, self.batch)
        new.training = self.training
        memo[id(self)] = new
        return new


def _load_export(path: Path) -> _Read:
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # bad archives raise RuntimeError, KeyError, ValueError, ...
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: unreadable torch.export program ({text})") from exc
    batch: int | None = None
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    if inputs:
        val = inputs[0].meta.get("val")
        shape = getattr(val, "shape", None)
        if shape is not None and len(shape) > 0 and isinstance(shape[0], int):
            batch = int(shape[0])
    meta: dict[str, Any] = {"static_batch": batch}
    if program.graph_signature.buffers_to_mutate:
        # e.g. batch norm traced in training mode: it normalizes with batch statistics and updates its buffers
        meta["mutates_buffers"] = sorted(program.graph_signature.buffers_to_mutate.values())
    module = ProgramModule(program.module(), batch)
    return _Read(module, [path], meta, module)


def _load_safetensors(path: Path) -> _Read:
    tensors, meta = read_safetensors(path)
    return _Read(tensors, [path], _string_metadata(meta))


def _load_dcp(directory: Path, unsafe_pickle: bool) -> _Read:
    folder = distcp.open_folder(directory, unsafe_pickle=unsafe_pickle)
    return _Read(folder.skeleton, [directory / distcp.METADATA, *folder.files], materialize=folder.load)


# tensorfile.detect_format's formats -> their readers (path, unsafe_pickle); shards are never unpickled unsafely
_READERS: dict[str, Callable[[Path, bool], _Read]] = {
    "torch-zip": lambda path, unsafe: _Read(read_torch(path, unsafe_pickle=unsafe), [path]),
    "torch-legacy": lambda path, unsafe: _Read(read_torch(path, unsafe_pickle=unsafe), [path]),
    "safetensors": lambda path, _: _load_safetensors(path),
    "safetensors-sharded": lambda path, _: _load_sharded(path, "safetensors-sharded"),
    "torch-sharded": lambda path, _: _load_sharded(path, "torch-sharded"),
    "npz": lambda path, _: _Read(read_npz(path), [path]),
    "torchscript": lambda path, _: _load_torchscript(path),
    "torch-export": lambda path, _: _load_export(path),
    distcp.FORMAT: lambda path, unsafe: _load_dcp(path, unsafe),
}


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and any(isinstance(v, torch.Tensor) for v in obj.values())


def _holds_weights(obj: Any) -> bool:
    return _is_tensor_dict(obj) or isinstance(obj, nn.Module)


def _follow_key(path: Path, obj: Any, key: str) -> tuple[Any, list[str]]:
    """The entry at dotted path ``key`` ("ema", "ema.module", a key that itself holds dots), and the keys walked."""
    node, rest = obj, key
    walked: list[str] = []
    while rest:
        if isinstance(node, nn.Module):
            node = node.state_dict()
        if not isinstance(node, Mapping):
            raise CheckpointError(f"{path}: {opt('key', key)}: {'.'.join(walked) or 'the file'} is not a dict")
        # The longest key that is a prefix of what is left, so keys with dots in them work.
        parts = rest.split(".")
        for i in range(len(parts), 0, -1):
            head = ".".join(parts[:i])
            if head in node:
                node, rest = node[head], ".".join(parts[i:])
                walked.append(head)
                break
        else:
            import difflib

            keys = sorted(map(str, node))
            close = difflib.get_close_matches(parts[0], keys, n=3, cutoff=0.5)
            where = f" under {'.'.join(walked)}" if walked else ""
            raise CheckpointError(
                f"{path}: no entry {parts[0]!r}{where} for {opt('key', key)}"
                + (f"; closest: {', '.join(close)}" if close else ""),
                hint=f"keys{where}: {', '.join(keys[:12])}{', …' if len(keys) > 12 else ''}",
            )
    return node, walked


def _find_container(obj: Mapping[str, Any], depth: int = 3) -> tuple[Any, list[str]] | None:
    """The first tensor dict (or module) under CONTAINER_KEYS, searched in order and up to ``depth`` deep."""
    for key in CONTAINER_KEYS:
        value = obj.get(key)
        if _holds_weights(value):
            return value, [key]
        if depth > 1 and isinstance(value, Mapping):
            found = _find_container(value, depth - 1)
            if found is not None:
                return found[0], [key, *found[1]]
    return None


def _scalar_entries(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level numbers and strings (epoch, global_step, versions) for inspect."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, (bool, int, float, str)) and not isinstance(v, torch.Tensor):
            out[str(k)] = v
    return dict(sorted(out.items()))


def _aliases(tensors: Mapping[str, torch.Tensor]) -> tuple[tuple[str, ...], ...]:
    """Groups of names that are one tensor (same storage, offset, shape and strides): tied weights."""
    seen: dict[tuple[Any, ...], list[str]] = {}
    for name, t in tensors.items():
        if t.device.type == "meta" or t.numel() == 0:
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        seen.setdefault(key, []).append(name)
    return tuple(sorted(tuple(sorted(g)) for g in seen.values() if len(g) > 1))


def check_tensor_kinds(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse sparse, nested, meta and quantized tensors and dtypes torch cannot compute with, all at once.

    Raises:
        CheckpointError: naming every such tensor (up to 5) and what it is.
    """
    found = [(name, problem) for name, t in tensors.items() if (problem := tensor_kind_problem(t)) is not None]
    if not found:
        return
    listed = "; ".join(f"{name} is {what}" for name, (what, _) in found[:5]) + ("; …" if len(found) > 5 else "")
    raise CheckpointError(f"{path}: {listed}", hint=found[0][1][1])


def _computable(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32) if t.dtype in UPCAST_DTYPES else t


def load_checkpoint(
    path: str | Path, *, key: str | None = None, unsafe_pickle: bool = False, base: Checkpoint | None = None
) -> Checkpoint:
    """Load the named tensors of a checkpoint: a file, or a directory holding one (e.g. sharded safetensors).

    A plain state dict is used as it is; otherwise the tensors are looked for under ``CONTAINER_KEYS`` (other
    entries such as optimizer state are ignored and listed). ``key`` picks a dotted path instead, e.g. ``ema``
    or ``state_dict_ema`` for averaged weights, which are never picked on their own.

    Args:
        path: the checkpoint file, a sharded checkpoint's ``*.index.json``, or a directory holding either.
        key: dotted path into the file's dict to the tensors (``--key``).
        unsafe_pickle: allow pickles that name Python objects (e.g. ``torch.save(model)``). Unpickling such a
            file runs code the file names; only for trusted files.
        base: for a PEFT adapter folder whose recorded base is not a folder here, the base model's checkpoint
            (the other endpoint; see adapters.py).

    Raises:
        CheckpointNotFoundError: the path does not exist.
        CheckpointError: the path is no regular file (a FIFO, a device, a link loop), the file is unreadable or
            declares more than it holds (tensorfile.check_zip_sizes), holds no tensors or tensors interpscan cannot
            interpolate (check_tensor_kinds), or needs ``unsafe_pickle``.

    Float8 tensors are read as float32 (exactly; see UPCAST_DTYPES); ``info.dtypes`` records the file's dtypes.
    """
    given = Path(path)
    if not given.exists() and not given.is_symlink():  # a broken or looping link is named as such when read
        raise CheckpointNotFoundError(f"checkpoint not found: {given}", hint="check the path")
    if given.is_dir() and huggingface.is_pretrained_dir(given):
        return _load_pretrained(given, key)
    if given.is_dir() and adapters.is_adapter_dir(given):
        return _load_adapter(given, key, base)
    if given.name == distcp.METADATA or (given.is_dir() and distcp.is_dcp_dir(given)):
        p, fmt = (given.parent if given.name == distcp.METADATA else given), distcp.FORMAT
    else:
        p = _pick_in_directory(given) if given.is_dir() else given
        fmt = detect_format(p)
    read = _READERS[fmt](p, unsafe_pickle)
    found = _unwrap(p, fmt, read, key)
    if read.materialize is not None:
        found = replace(found, obj=read.materialize(found.obj))
    obj, module, layout = found.obj, read.module, found.layout
    if isinstance(obj, nn.Module):
        if module is None:
            module = obj.eval()
            layout = "module"
        obj = obj.state_dict()
    if not _is_tensor_dict(obj):
        kind = type(obj).__name__
        keys = f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else ""
        where = f" under {found.container}" if found.container else ""
        raise CheckpointError(
            f"{p}: no tensors found{where} (the file holds a {kind}{keys})",
            hint=f"interpscan reads a state dict, optionally nested under one of {', '.join(CONTAINER_KEYS)}; "
            f"{opt('key')} picks another entry",
        )
    tensors = {str(k): v.detach() for k, v in obj.items() if isinstance(v, torch.Tensor)}
    check_tensor_kinds(p, tensors)
    if module is not None:
        # Copies: nothing later done to the module (a dtype change, an in-place write) may alter what the file held.
        tensors = {k: v.clone() for k, v in tensors.items()}
    size, sha, files = _provenance(read.files)
    info = CheckpointInfo(
        path=str(given),
        size=size,
        sha256=sha,
        format=fmt,
        container_key=found.container,
        tensor_count=len(tensors),
        dtypes=dtype_counts(tensors),
        ignored_keys=tuple(sorted([str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)] + found.outer)),
        metadata=read.metadata,
        layout=layout,
        alternatives=tuple(sorted(found.alternatives)),
        aliases=_aliases({str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}),
        files=files,
        averaged=tuple(sorted(found.averaged)),
    )
    return Checkpoint(tensors={k: _computable(v) for k, v in tensors.items()}, info=info, module=module)


@dataclass(frozen=True)
class _Unwrapped:
    """Where a file keeps its weights, and what lies beside them."""

    obj: Any  # the state dict (or module) the tensors come from
    layout: str  # CheckpointInfo.layout, before a module is found: program, lightning, nested or state-dict
    container: str | None = None  # its dotted key in the file; None for the file's object itself
    outer: list[str] = field(default_factory=list)  # entries beside it (optimizer state, epoch, …), ignored
    alternatives: list[str] = field(default_factory=list)  # entries beside it that hold weights too
    averaged: list[str] = field(default_factory=list)  # its key and those alternatives when they are averaged


def _unwrap(path: Path, fmt: str, read: _Read, key: str | None) -> _Unwrapped:
    """The weights in what the file holds: the entry ``key`` names, Lightning's live weights, the first one under
    CONTAINER_KEYS, or the object itself. The interpscan record and the top-level numbers and strings found on
    the way go into ``read.metadata``.

    Raises:
        CheckpointError: ``key`` for a file that holds no dict, or names no entry; only averaged weights and no
            ``key``.
    """
    obj, metadata = read.obj, read.metadata
    if key is not None and not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path}: {opt('key', key)} picks an entry of a pickled dict, and this {fmt} file holds no dict",
            hint=f"leave out {opt('key')} for this file",
        )
    layout = "program" if fmt in PROGRAM_FORMATS else "state-dict"
    if not isinstance(obj, Mapping):
        return _Unwrapped(obj, layout)
    if isinstance(obj.get(META_KEY), Mapping):
        metadata[META_KEY] = dict(obj[META_KEY])
    if any(k in obj for k in LIGHTNING_KEYS):
        layout = "lightning"
    top = obj
    trail: list[str] = []
    if key is not None:
        obj, trail = _follow_key(path, obj, key)
    elif LIGHTNING_AVERAGING in obj and _holds_weights(obj.get(LIGHTNING_LIVE)):
        obj, trail = obj[LIGHTNING_LIVE], [LIGHTNING_LIVE]
    elif not _is_tensor_dict(obj):
        found = _find_container(obj)
        if found is not None:
            obj, trail = found
    if not trail:
        ema = [] if _is_tensor_dict(obj) else [k for k in EMA_KEYS if _holds_weights(obj.get(k))]
        if ema:
            raise CheckpointError(
                f"{path}: the only weights are averaged (EMA) weights under {ema[0]!r}",
                hint=f"pass {opt('key', ema[0])} to scan them",
            )
        return _Unwrapped(obj, layout)
    metadata.update({k: v for k, v in _scalar_entries(top).items() if k not in metadata})
    outer = [str(k) for k in top if k not in (trail[0], META_KEY)]
    alternatives = [k for k in outer if _holds_weights(top[k])]
    averaged = [k for k in (trail[0], *alternatives) if _is_averaged(top, k)]
    node = top[trail[0]]
    for depth, step in enumerate(trail[1:], start=1):  # siblings along a nested path: "model.step"
        if isinstance(node, Mapping):
            outer += [f"{'.'.join(trail[:depth])}.{k}" for k in node if k != step]
            node = node[step]
    if layout == "state-dict":
        layout = "nested"
    return _Unwrapped(obj, layout, ".".join(trail), outer, alternatives, averaged)


def _provenance(files: Sequence[Path]) -> tuple[int, str, tuple[dict[str, Any], ...]]:
    """The files' total size and SHA-256, and for several (a sharded checkpoint) each one's path, size and hash;
    their SHA-256 is then that of the list of theirs, as ``sha256sum`` prints it."""
    sizes = [f.stat().st_size for f in files]
    digests = [_sha256(f) for f in files]
    if len(files) == 1:
        return sizes[0], digests[0], ()
    listing = "".join(f"{d}  {f.name}\n" for f, d in zip(files, digests, strict=True))
    each = tuple({"path": str(f), "size": n, "sha256": d} for f, n, d in zip(files, sizes, digests, strict=True))
    return sum(sizes), hashlib.sha256(listing.encode()).hexdigest(), each


def _is_averaged(top: Mapping[str, Any], key: str) -> bool:
    """Whether entry ``key`` of a checkpoint holds averaged weights: an EMA key (timm's state_dict_ema, ...), or
    the state_dict of a Lightning checkpoint saved with a WeightAveraging callback."""
    return key in EMA_KEYS or (key == "state_dict" and LIGHTNING_AVERAGING in top and LIGHTNING_LIVE in top)


def _load_pretrained(directory: Path, key: str | None) -> Checkpoint:
    """A transformers directory (huggingface.py): the model transformers builds and loads, with its tensors."""
    if key is not None:
        raise CheckpointError(
            f"{directory}: {opt('key')} picks an entry of a pickled dict, and this is a transformers directory",
            hint=f"leave out {opt('key')}; transformers reads the model's weights from the folder",
        )
    loaded = huggingface.load_pretrained(directory)
    tensors = huggingface.state_of(loaded.model)
    check_tensor_kinds(directory, tensors)
    sha, files = huggingface.files_digest(loaded.files)
    info = CheckpointInfo(
        path=str(directory),
        size=sum(int(f["size"]) for f in files),
        sha256=sha,
        format=huggingface.FORMAT,
        container_key=None,
        tensor_count=len(tensors),
        dtypes=loaded.dtypes,
        ignored_keys=tuple(sorted(n for n in huggingface.TRAINER_FILES if (directory / n).exists())),
        metadata={huggingface.FORMAT: loaded.metadata},
        layout="transformers",
        aliases=_aliases(dict(loaded.model.state_dict())),
        files=files,
    )
    return Checkpoint(tensors={k: _computable(v) for k, v in tensors.items()}, info=info, module=loaded.model)


def _load_adapter(directory: Path, key: str | None, base: Checkpoint | None) -> Checkpoint:
    """A PEFT adapter folder (adapters.py): its base's tensors with the adapter merged; the model is the base's."""
    merged = adapters.load_adapter(directory, key=key, base=base, load=lambda p: load_checkpoint(p))
    metadata = dict(merged.metadata)
    if META_KEY in merged.base.info.metadata:  # the model a self-describing base records is the adapted one's too
        metadata[META_KEY] = merged.base.info.metadata[META_KEY]
    info = CheckpointInfo(
        path=str(directory),
        size=sum(int(f["size"]) for f in merged.files),
        sha256=merged.sha256,
        format=adapters.FORMAT,
        container_key=None,
        tensor_count=len(merged.tensors),
        dtypes=merged.base.info.dtypes,
        metadata=metadata,
        layout="adapter",
        aliases=merged.base.info.aliases,
        files=merged.files,
    )
    return Checkpoint(tensors=merged.tensors, info=info)


# ------------------------------------------------------------------------------------------- alignment


def align_to_model(ckpt: Checkpoint, model_names: Iterable[str]) -> Checkpoint:
    """Rename a checkpoint's tensors to the model's names (see strip_prefixes) and record the prefixes."""
    mapping, used = strip_prefixes(ckpt.tensors, set(model_names))
    tensors = {mapping[k]: v for k, v in ckpt.tensors.items()}
    if len(tensors) != len(ckpt.tensors):
        raise CheckpointError(
            f"{ckpt.info.path}: stripping wrapper prefixes makes two tensors share a name",
            hint="the file holds both wrapped and unwrapped copies of the weights; save one of them",
        )
    return replace(ckpt, tensors=tensors, info=replace(ckpt.info, prefixes_stripped=used))


# ------------------------------------------------------------------------------------------ description


def describe(ckpt: Checkpoint) -> dict[str, Any]:
    """What ``interpscan inspect`` shows: provenance, metadata and one row per tensor, with totals.

    Tied names (one tensor under several names) are counted once in the totals.
    """
    rows = [
        {
            "name": name,
            "shape": list(t.shape),
            "dtype": str(t.dtype).removeprefix("torch."),
            "count": int(t.numel()),
            "bytes": int(t.numel() * t.element_size()),
        }
        for name, t in ckpt.tensors.items()
    ]
    duplicate = {n for group in ckpt.info.aliases for n in group[1:]}
    wrapped = sorted({p for n in ckpt.tensors for p in WRAPPER_PREFIXES if n.startswith(p)})
    return {
        **ckpt.info.to_json(),
        "prefixes": wrapped,
        "own_forward": ckpt.module is not None,
        "metadata": _jsonable(ckpt.info.metadata),
        "tensors": rows,
        "totals": {
            "tensors": len(rows),
            "elements": sum(r["count"] for r in rows if r["name"] not in duplicate),
            "bytes": sum(r["bytes"] for r in rows if r["name"] not in duplicate),
        },
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)

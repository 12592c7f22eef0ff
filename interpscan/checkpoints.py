"""Reading checkpoints: detect the format from the file's bytes, unwrap containers, align names to a model.

Everything is loaded with ``weights_only=True``: a checkpoint never runs code. The result records what was
done (format, container key, prefixes stripped) so run.json can say how each file was read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, CheckpointNotFoundError

# Keys under which training code commonly nests the state dict, in the order they are tried.
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model")
# Wrapper prefixes added by DDP / DataParallel, Lightning-style wrappers and torch.compile.
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
# Where a self-describing checkpoint (written by `interpscan demo` and examples/) keeps its model spec.
META_KEY = "interpscan"

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


@dataclass(frozen=True)
class CheckpointInfo:
    """Provenance of one loaded checkpoint, as recorded in run.json."""

    path: str
    size: int
    sha256: str
    format: str  # "torch-zip", "torch-legacy", "safetensors"
    container_key: str | None  # e.g. "state_dict" when the tensors were nested under it
    tensor_count: int
    dtypes: dict[str, int]  # dtype name -> number of tensors
    ignored_keys: tuple[str, ...] = ()  # non-tensor entries that were skipped
    prefixes_stripped: tuple[str, ...] = ()  # filled in by align_to_model
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "format": self.format,
            "container_key": self.container_key,
            "tensor_count": self.tensor_count,
            "dtypes": self.dtypes,
            "ignored_keys": list(self.ignored_keys),
            "prefixes_stripped": list(self.prefixes_stripped),
        }


@dataclass(frozen=True)
class Checkpoint:
    """Named tensors from one file plus where they came from."""

    tensors: dict[str, torch.Tensor]
    info: CheckpointInfo

    @property
    def model_spec(self) -> dict[str, Any] | None:
        """The model spec a self-describing checkpoint carries ({"model": ..., "model_args": {...}})."""
        spec = self.info.metadata.get(META_KEY)
        return spec if isinstance(spec, dict) and isinstance(spec.get("model"), str) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def detect_format(path: Path) -> str:
    """Name the checkpoint format from the file's first bytes (never from its extension).

    Raises:
        CheckpointError: the bytes match no supported format.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(9)
    if head.startswith(_ZIP_MAGIC):
        return "torch-zip"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len <= size - 8:
            return "safetensors"
    if head[:1] and head[0] == _PICKLE_PROTO:
        return "torch-legacy"
    what = "an empty file" if size == 0 else f"a file starting with bytes {head[:8].hex(' ')}"
    raise CheckpointError(
        f"{path}: not a checkpoint interpscan can read ({what})",
        hint="expected a PyTorch file (torch.save) or a .safetensors file",
    )


def _load_raw(path: Path, fmt: str) -> tuple[Any, dict[str, Any]]:
    """Return (object, metadata) for a file of a known format."""
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path), device="cpu")
            with path.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc
        meta = header.get("__metadata__") or {}
        metadata: dict[str, Any] = {}
        if META_KEY in meta:
            with contextlib.suppress(json.JSONDecodeError):
                metadata[META_KEY] = json.loads(meta[META_KEY])
        return tensors, metadata
    try:
        # A file object, not the path: torch.load treats any path ending in .safetensors as one.
        with path.open("rb") as fh:
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path}: refused to unpickle objects other than tensors and plain containers",
                hint="the file holds pickled Python objects (e.g. a whole model); save model.state_dict() "
                "instead, or convert it once in a trusted environment",
            ) from exc
        raise CheckpointError(f"{path}: unreadable PyTorch file ({text})") from exc
    return obj, {}


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and any(isinstance(v, torch.Tensor) for v in obj.values())


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load the named tensors of a checkpoint file.

    Accepts a plain state dict, or a dict that nests one under ``state_dict``, ``model_state_dict`` or
    ``model`` (other entries such as optimizer state or epoch counters are ignored and listed).

    Raises:
        CheckpointNotFoundError: the path does not exist.
        CheckpointError: the file is unreadable or holds no tensors.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {p}", hint="check the path")
    if p.is_dir():
        raise CheckpointError(f"{p} is a directory, not a checkpoint file", hint="pass the file itself")
    fmt = detect_format(p)
    obj, metadata = _load_raw(p, fmt)

    container: str | None = None
    outer: list[str] = []  # entries beside the container (optimizer state, epoch, ...), ignored
    if isinstance(obj, Mapping) and META_KEY in obj and isinstance(obj[META_KEY], Mapping):
        metadata[META_KEY] = dict(obj[META_KEY])
    if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        for key in CONTAINER_KEYS:
            if _is_tensor_dict(obj.get(key)):
                container = key
                outer = [str(k) for k in obj if k not in (key, META_KEY)]
                obj = obj[key]
                break
    if not _is_tensor_dict(obj):
        kind = type(obj).__name__
        keys = f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else ""
        raise CheckpointError(
            f"{p}: no tensors found (the file holds a {kind}{keys})",
            hint=f"interpscan reads a state dict, optionally nested under one of {', '.join(CONTAINER_KEYS)}",
        )
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    ignored = tuple(sorted([str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)] + outer))
    dtypes: dict[str, int] = {}
    for t in tensors.values():
        name = str(t.dtype).removeprefix("torch.")
        dtypes[name] = dtypes.get(name, 0) + 1
    info = CheckpointInfo(
        path=str(p),
        size=p.stat().st_size,
        sha256=_sha256(p),
        format=fmt,
        container_key=container,
        tensor_count=len(tensors),
        dtypes=dict(sorted(dtypes.items())),
        ignored_keys=ignored,
        metadata=metadata,
    )
    return Checkpoint(tensors=tensors, info=info)


def strip_prefixes(names: Iterable[str], model_names: set[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Map each checkpoint name to the model's name by stripping wrapper prefixes at any nesting.

    A prefix is stripped only while the name is not already one of the model's names, so a model whose own
    attribute is called ``model`` keeps its keys. Returns (old name -> new name, prefixes stripped).
    """
    mapping: dict[str, str] = {}
    stripped: set[str] = set()
    for name in names:
        new, removed = name, []
        while new not in model_names:
            prefix = next((p for p in WRAPPER_PREFIXES if new.startswith(p)), None)
            if prefix is None:
                break
            new = new[len(prefix) :]
            removed.append(prefix)
        if new in model_names:
            mapping[name] = new
            stripped.update(removed)
        else:
            mapping[name] = name
    used = tuple(sorted(stripped))
    return mapping, used


def align_to_model(ckpt: Checkpoint, model_names: Iterable[str]) -> Checkpoint:
    """Rename a checkpoint's tensors to the model's names (see strip_prefixes) and record the prefixes."""
    mapping, used = strip_prefixes(ckpt.tensors, set(model_names))
    tensors = {mapping[k]: v for k, v in ckpt.tensors.items()}
    if len(tensors) != len(ckpt.tensors):
        raise CheckpointError(
            f"{ckpt.info.path}: stripping wrapper prefixes makes two tensors share a name",
            hint="the file holds both wrapped and unwrapped copies of the weights; save one of them",
        )
    info = CheckpointInfo(**{**ckpt.info.__dict__, "prefixes_stripped": used})
    return Checkpoint(tensors=tensors, info=info)

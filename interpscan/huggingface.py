"""Hugging Face transformers directories: a ``save_pretrained`` folder (sharded or not) or a Trainer
``checkpoint-N/`` is self-describing. The model is built from its ``config.json`` (a class transformers itself
defines, never code the folder names) and the weights are read through transformers' own loading, so tensors
stored under older names, tied tensors stored once and sharded files all come out as the model holds them.

transformers is optional (the extra ``interpscan[hf]``): without it such a folder is one line saying how to install
it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, opt
from .files import MAX_CONFIG_BYTES, check_in_tree, check_json_size, read_json, tree_of, utf8_name
from .optional import import_optional
from .statedict import dtype_counts
from .tensorfile import UPCAST_DTYPES, read_index, read_torch, safetensors_header

FORMAT = "transformers"
CONFIG = "config.json"
# The weight files save_pretrained and the Trainer write, in the order transformers prefers them.
WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
# JSON files beside the weights that transformers parses while it loads a model (the adapter's only to find one).
PARSED_FILES = (CONFIG, "generation_config.json", "adapter_config.json")
# Files a Trainer checkpoint-N/ holds beside the model; recorded, never read as weights.
TRAINER_FILES = ("trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth")


class Task:
    """What a transformers model's head predicts, which decides what a scan measures on it."""

    IMAGE_CLASSIFICATION = "image-classification"
    SEQUENCE_CLASSIFICATION = "sequence-classification"
    CAUSAL_LM = "causal-lm"
    OTHER = "other"


def task_of(architecture: str) -> str:
    """The task of a transformers class by its name (``GPT2LMHeadModel`` → causal-lm)."""
    if architecture.endswith("ForImageClassification"):
        return Task.IMAGE_CLASSIFICATION
    if architecture.endswith("ForSequenceClassification"):
        return Task.SEQUENCE_CLASSIFICATION
    if architecture.endswith(("ForCausalLM", "LMHeadModel")):
        return Task.CAUSAL_LM
    return Task.OTHER


def model_task(model: nn.Module) -> str | None:
    """The task of a transformers model object (None for any other module)."""
    cls = type(model)
    return task_of(cls.__name__) if cls.__module__.startswith("transformers.") else None


def _read_config(directory: Path) -> dict[str, Any] | None:
    """config.json when it names a ``model_type`` (a folder transformers wrote); None without one, or for another
    tool's config.json (timm writes one with no model_type).

    Raises:
        CheckpointError: a config.json that cannot be read (see files.read_json): the folder must not be read as
            a bare weights file with the model built from elsewhere.
    """
    path = directory / CONFIG
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        config = read_json(path, CheckpointError, what=CONFIG, limit=MAX_CONFIG_BYTES)
    except CheckpointError as exc:
        # not passed over: the folder would be read as a bare weights file, its model built from elsewhere
        raise CheckpointError(
            str(exc), hint=f"{exc.hint}; to read the weights without it, pass the weights file with {opt('model')}"
        ) from None
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path}: holds a JSON {type(config).__name__}, not the object transformers writes",
            hint=f"re-save the model with save_pretrained, or pass the weights file itself (with {opt('model')})",
        )
    model_type = config.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise CheckpointError(
            f"{path}: model_type is {json.dumps(model_type)[:40]}, not the name of a model type",
            hint="re-save the model with save_pretrained",
        )
    return config if model_type is not None else None


def weight_files(directory: Path) -> list[Path]:
    """The model's weight files in a transformers directory: a sharded index and its shards, or one file.

    Raises:
        CheckpointError: an index that cannot be read or names shards outside the folder (tensorfile.read_index).
    """
    for name in WEIGHT_FILES:
        path = directory / name
        if not (path.exists() or path.is_symlink()):
            continue  # anything there (a FIFO, a link) is checked by check_folder, not passed over
        if not name.endswith(".index.json"):
            return [path]
        return [path, *(directory / s for s in sorted(set(read_index(path)[0].values())))]
    return []


def is_pretrained_dir(path: Path) -> bool:
    """A folder transformers wrote: a ``config.json`` naming a ``model_type``, beside the model's weights.

    Raises:
        CheckpointError: a config.json or an index that cannot be read (_read_config, tensorfile.read_index).
    """
    return path.is_dir() and _read_config(path) is not None and bool(weight_files(path))


# safetensors' dtype names; float8 weights are computed in float32 (tensorfile.UPCAST_DTYPES)
_SAFETENSORS_FLOATS = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_FLOAT8 = ("F8_E4M3", "F8_E5M2", "F8_E8M0")


def tensors_are(n: int) -> str:
    """``1 tensor is``, ``3 tensors are``: a count in a message."""
    return "1 tensor is" if n == 1 else f"{n} tensors are"


@dataclass(frozen=True)
class Stored:
    """What a transformers folder's files hold, found before transformers reads them: the weight files, the dtype
    of each tensor in them, and the dtype to build the model in."""

    weight_files: list[Path]
    dtypes: dict[str, int]  # dtype name -> number of tensors in the files, named as statedict.dtype_counts names
    load_dtype: torch.dtype | None  # every stored float dtype widens to it exactly; None: the files hold no floats


def check_folder(directory: Path) -> Stored:
    """Hold a transformers folder to the rules for files interpscan hands on, before transformers opens any:
    every file in it is a regular file inside the folder's tree (files.check_in_tree: transformers opens files
    there by name, and a FIFO would block it beyond Ctrl-C), every safetensors header is bounded by its data
    (tensorfile.safetensors_header), and the dtypes the weights are stored in are read from the files.

    Raises:
        CheckpointError: a file that is no regular file or links out of the tree, an unreadable index or header.
    """
    tree = tree_of(directory)
    for entry in sorted(directory.iterdir()):
        if not entry.is_dir():
            size = check_in_tree(entry, tree, CheckpointError, what="file transformers reads")
            if entry.name in PARSED_FILES:
                check_json_size(entry, size, CheckpointError, what=entry.name, limit=MAX_CONFIG_BYTES)
    files = weight_files(directory)
    counts: dict[str, int] = {}
    floats: set[torch.dtype] = set()
    where: dict[str, str] = {}  # tensor name -> the shard holding it
    for f in files:
        check_in_tree(f, tree, CheckpointError, what="weight file")
    for f in files:
        if f.name.endswith(".json"):
            continue
        if f.suffix == ".safetensors":
            header = safetensors_header(f)
            twice = sorted(k for k in header if k in where)
            if twice:
                # transformers would load both copies, the later over the earlier: which one is scanned is no
                # guess to make
                raise CheckpointError(
                    f"{f}: {tensors_are(len(twice))} stored in more than one shard ({where[twice[0]]} too): "
                    f"{', '.join(twice[:5])}",
                    hint="the shards do not belong together; re-save the model with save_pretrained",
                )
            where.update(dict.fromkeys((k for k in header if k != "__metadata__"), f.name))
            for key, entry in header.items():
                name = str(entry.get("dtype")) if key != "__metadata__" and isinstance(entry, dict) else None
                if name is None:
                    continue
                if name in _SAFETENSORS_FLOATS or name in _FLOAT8:
                    floats.add(_SAFETENSORS_FLOATS.get(name, torch.float32))
                shown = str(_SAFETENSORS_FLOATS[name]).removeprefix("torch.") if name in _SAFETENSORS_FLOATS else name
                counts[shown] = counts.get(shown, 0) + 1
        else:
            with f.open("rb") as fh:
                zipped = fh.read(4) == b"PK\x03\x04"
            # mapped, so that only the dtypes are read (transformers reads the data next); a legacy file is read whole
            obj = read_torch(f, mmap=zipped)
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, dict) else {}
            for shown, n in dtype_counts(tensors).items():
                counts[shown] = counts.get(shown, 0) + n
            floats |= {t.dtype for t in tensors.values() if t.is_floating_point() and t.dtype not in UPCAST_DTYPES}
            floats |= {torch.float32 for t in tensors.values() if t.dtype in UPCAST_DTYPES}
    load = None
    for dtype in sorted(floats, key=str):
        load = dtype if load is None else torch.promote_types(load, dtype)
    return Stored(files, dict(sorted(counts.items())), load)


@dataclass(frozen=True)
class Pretrained:
    """A model transformers built from a directory, with what the directory said about it."""

    model: nn.Module
    architecture: str  # the transformers class, e.g. "ViTForImageClassification"
    task: str  # a Task value
    metadata: dict[str, Any]  # model_type, architecture, task, transformers' version, the Trainer's step
    files: list[Path]  # config.json and the weight files, for provenance
    dtypes: dict[str, int]  # dtype name -> number of tensors, as the weight files store them


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """transformers' own log lines and progress bars off while it loads (interpscan says what it read)."""
    logging = transformers.utils.logging
    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def import_transformers(what: str) -> Any:
    """The transformers package, or one line saying how to get it.

    Raises:
        CheckpointError: not installed, or an installation that fails to import (any exception, one line).
    """
    return import_optional(
        "transformers",
        purpose=f"{what} is a Hugging Face transformers directory, and reading it",
        error=CheckpointError,
    )


def _architecture(directory: Path, config: dict[str, Any], transformers: Any) -> Any:
    """The transformers class config.json names: one of transformers' own, never code the folder points to."""
    names = config.get("architectures")
    name = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None
    if name is None:
        raise CheckpointError(
            f"{directory / CONFIG} names no architecture, so the model's head is unknown",
            hint="save the model with save_pretrained (it writes config.json's 'architectures')",
        )
    cls = getattr(transformers, name, None) if name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        remote = " (it names remote code in auto_map, which interpscan does not run)" if "auto_map" in config else ""
        raise CheckpointError(
            f"{directory / CONFIG} names architecture {name!r}, which transformers "
            f"{transformers.__version__} does not define{remote}",
            hint="upgrade transformers, or load the model yourself and pass it to interpscan.scan(model=...)",
        )
    return cls


# trainer_state.json grows with the Trainer's log (a line per logging step); only its step is read
_MAX_TRAINER_STATE = 64 << 20


def _trainer_step(directory: Path) -> int | None:
    path = directory / "trainer_state.json"
    if not path.exists():
        return None
    with contextlib.suppress(CheckpointError):  # metadata only: an unreadable one is left out of run.json
        state = read_json(path, CheckpointError, what="trainer_state.json", limit=_MAX_TRAINER_STATE)
        step = state.get("global_step") if isinstance(state, dict) else None
        return step if isinstance(step, int) else None
    return None


def load_pretrained(directory: Path) -> Pretrained:
    """Build the model a transformers directory describes and load its weights through transformers.

    Args:
        directory: a ``save_pretrained`` folder or a Trainer ``checkpoint-N/`` (see is_pretrained_dir).

    The model is built in the dtype the weight files store (Stored.load_dtype), never in the one config.json
    names: transformers would otherwise round float32 weights to a config's float16.

    Raises:
        CheckpointError: a file that breaks check_folder's rules, no transformers, an architecture it does not
            define, weights it cannot read, or tensors the files lack or hold in another shape (transformers would
            fill them from a random initialization).
    """
    stored = check_folder(directory)
    transformers = import_transformers(str(directory))
    config = _read_config(directory)
    assert config is not None, "is_pretrained_dir was checked by the caller"
    cls = _architecture(directory, config, transformers)
    dtype = {} if stored.load_dtype is None else {"dtype": stored.load_dtype}
    with utf8_name(directory, CheckpointError) as name:
        try:
            with _quiet(transformers):
                model, info = cls.from_pretrained(
                    name, local_files_only=True, output_loading_info=True, trust_remote_code=False, **dtype
                )
        except Exception as exc:  # transformers raises OSError, ValueError, RuntimeError, ... for bad folders
            text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            text = text.replace(name, str(directory))  # the folder as the user named it, not /proc/self/fd/N
            raise CheckpointError(f"{directory}: transformers could not load it: {type(exc).__name__}: {text}") from exc
    problems = [
        *(f"missing {k}" for k in sorted(info.get("missing_keys") or ())),
        *(f"shape of {k[0] if isinstance(k, tuple) else k} differs" for k in sorted(info.get("mismatched_keys") or ())),
    ]
    if problems:
        shown = "; ".join(problems[:12]) + ("; …" if len(problems) > 12 else "")
        raise CheckpointError(
            f"{directory}: {len(problems)} of the {cls.__name__}'s tensors are not in its files and would come from "
            f"a random initialization: {shown}",
            hint="the weights do not belong to the architecture config.json names; check the folder",
        )
    version = config.get("transformers_version")
    metadata: dict[str, Any] = {
        "architecture": cls.__name__,
        "model_type": config["model_type"],
        "task": task_of(cls.__name__),
        "saved_with_transformers": version if isinstance(version, str) else None,
        "loaded_with_transformers": str(transformers.__version__),
    }
    said = config.get("dtype", config.get("torch_dtype"))
    if stored.load_dtype is not None and isinstance(said, str) and said != str(stored.load_dtype).split(".")[-1]:
        metadata["config_dtype_ignored"] = said  # the files' dtype wins: the weights are what was trained
    if (step := _trainer_step(directory)) is not None:
        metadata["trainer_global_step"] = step
    unexpected = sorted(str(k) for k in info.get("unexpected_keys") or ())
    if unexpected:
        metadata["unexpected_in_files"] = unexpected
    files = [directory / CONFIG, *stored.weight_files]
    return Pretrained(model.eval(), cls.__name__, task_of(cls.__name__), metadata, files, stored.dtypes)


def files_digest(files: list[Path]) -> tuple[str, tuple[dict[str, Any], ...]]:
    """The sha256 of several files ("sha256  name" lines) and each file's path, size and sha256."""
    rows: list[dict[str, Any]] = []
    for f in files:
        digest = hashlib.sha256()
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        rows.append({"path": str(f), "size": f.stat().st_size, "sha256": digest.hexdigest()})
    combined = hashlib.sha256("".join(f"{r['sha256']}  {Path(r['path']).name}\n" for r in rows).encode())
    return combined.hexdigest(), tuple(rows)


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under its own names, copied (the engine writes into the model later)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}

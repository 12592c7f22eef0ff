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

from .errors import CheckpointError
from .optional import import_optional

FORMAT = "transformers"
CONFIG = "config.json"
# The weight files save_pretrained and the Trainer write, in the order transformers prefers them.
WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
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
    path = directory / CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return config if isinstance(config, dict) and isinstance(config.get("model_type"), str) else None


def weight_files(directory: Path) -> list[Path]:
    """The model's weight files in a transformers directory: a sharded index and its shards, or one file."""
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return [path]
        try:
            index = json.loads(path.read_text())
            shards = sorted({str(v) for v in index["weight_map"].values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise CheckpointError(f"{path}: unreadable index ({exc})") from exc
        return [path, *(directory / s for s in shards if Path(s).name == s)]
    return []


def is_pretrained_dir(path: Path) -> bool:
    """A folder transformers wrote: a ``config.json`` naming a ``model_type``, beside the model's weights."""
    return path.is_dir() and _read_config(path) is not None and bool(weight_files(path))


@dataclass(frozen=True)
class Pretrained:
    """A model transformers built from a directory, with what the directory said about it."""

    model: nn.Module
    architecture: str  # the transformers class, e.g. "ViTForImageClassification"
    task: str  # a Task value
    metadata: dict[str, Any]  # model_type, architecture, task, transformers' version, the Trainer's step
    files: list[Path]  # config.json and the weight files, for provenance


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


def _trainer_step(directory: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, RecursionError, AttributeError):
        state = json.loads((directory / "trainer_state.json").read_text())
        step = state.get("global_step")
        return int(step) if isinstance(step, int) else None
    return None


def load_pretrained(directory: Path) -> Pretrained:
    """Build the model a transformers directory describes and load its weights through transformers.

    Args:
        directory: a ``save_pretrained`` folder or a Trainer ``checkpoint-N/`` (see is_pretrained_dir).

    Raises:
        CheckpointError: no transformers, an architecture it does not define, weights it cannot read, or tensors
            the files lack or hold in another shape (transformers would fill them from a random initialization).
    """
    transformers = import_transformers(str(directory))
    config = _read_config(directory)
    assert config is not None, "is_pretrained_dir was checked by the caller"
    cls = _architecture(directory, config, transformers)
    try:
        with _quiet(transformers):
            model, info = cls.from_pretrained(
                str(directory), local_files_only=True, output_loading_info=True, trust_remote_code=False
            )
    except Exception as exc:  # transformers raises OSError, ValueError, RuntimeError, ... for bad folders
        text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
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
    if (step := _trainer_step(directory)) is not None:
        metadata["trainer_global_step"] = step
    unexpected = sorted(str(k) for k in info.get("unexpected_keys") or ())
    if unexpected:
        metadata["unexpected_in_files"] = unexpected
    files = [directory / CONFIG, *weight_files(directory)]
    return Pretrained(model.eval(), cls.__name__, task_of(cls.__name__), metadata, files)


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

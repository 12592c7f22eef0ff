"""PEFT adapter folders (``adapter_config.json`` + ``adapter_model.safetensors``, what ``PeftModel.save_pretrained``
writes) as checkpoints: the fine-tuned model is the base model with the adapter merged in memory, as PEFT's own
``merge_and_unload`` does, so ``interpscan run base/ adapter/`` scans base → fine-tuned.

LoRA is merged as W + s·B·A with s = lora_alpha/r (lora_alpha/√r with rsLoRA), r read off A and lora_alpha from
``alpha_pattern`` where a pattern names the module; transposed for ``fan_in_fan_out`` layers (GPT-2's Conv1D) and
for embeddings, as a convolution for conv layers. Full tensors the adapter saves (``modules_to_save``, biases
trained with ``bias="all"`` or ``"lora_only"``) replace the base's. Other adapter types, and LoRA variants whose
merge is not W + s·B·A (DoRA, aLoRA, layer replication, …), are refused by name. peft itself is not needed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.nn import functional

from . import huggingface
from .errors import CheckpointError, opt
from .files import check_regular
from .tensorfile import read_safetensors, read_torch

FORMAT = "peft-lora"
CONFIG = "adapter_config.json"
# The adapter's weights as PEFT saves them: safetensors by default, a torch pickle with safe_serialization=False
# (read with weights_only, like every torch file).
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
# PeftModel's state-dict names start so; the rest is the base model's own module path.
PREFIX = "base_model.model."
_CONFIG_LIMIT = 1 << 20  # bytes; PEFT's configs are a few KB
# LoraConfig fields that change what merging means; each refused when set, by the name users know it by.
_VARIANTS = {
    "use_dora": "DoRA (use_dora)",
    "alora_invocation_tokens": "aLoRA (alora_invocation_tokens)",
    "layer_replication": "layer replication (layer_replication)",
    "target_parameters": "LoRA on parameters (target_parameters)",
    "trainable_token_indices": "trainable tokens (trainable_token_indices)",
    "use_qalora": "QALoRA (use_qalora)",
    "use_bdlora": "block-diagonal LoRA (use_bdlora)",
    "arrow_config": "Arrow routing (arrow_config)",
}
_LORA_PARTS = (".lora_A.weight", ".lora_B.weight", ".lora_B.bias", ".lora_embedding_A", ".lora_embedding_B")
_CONV = {3: functional.conv1d, 4: functional.conv2d, 5: functional.conv3d}


class Base(Protocol):
    """What the merge needs of the base model's checkpoint (checkpoints.Checkpoint)."""

    @property
    def tensors(self) -> dict[str, torch.Tensor]: ...

    @property
    def info(self) -> Any: ...  # CheckpointInfo: path, sha256, format, aliases, metadata, dtypes


@dataclass(frozen=True)
class Merged:
    """An adapter folder read: the fine-tuned model's tensors and what checkpoints.py records about them."""

    tensors: dict[str, torch.Tensor]
    base: Base
    sha256: str
    files: tuple[dict[str, Any], ...]
    metadata: dict[str, Any]


def is_adapter_dir(path: Path) -> bool:
    """A folder PEFT wrote: it holds ``adapter_config.json`` (any kind of entry, so a FIFO so named is refused by
    name when read, not passed over)."""
    config = path / CONFIG
    return path.is_dir() and (config.exists() or config.is_symlink())


@dataclass(frozen=True)
class AdapterConfig:
    """What adapter_config.json says about merging."""

    path: Path
    base: str | None  # base_model_name_or_path
    lora_alpha: float
    use_rslora: bool
    fan_in_fan_out: bool
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def scaling(self, module: str, rank: int) -> float:
        """s for ``module`` (its path in the base model) of rank ``rank``, as PEFT's LoraLayer computes it."""
        alpha = next((v for k, v in self.alpha_pattern.items() if re.match(rf"(.*\.)?({k})$", module)), self.lora_alpha)
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank


def read_config(directory: Path) -> AdapterConfig:
    """adapter_config.json, checked: a LoRA adapter whose merge is W + s·B·A.

    Raises:
        CheckpointError: not a regular file, too large, not JSON, another adapter type, or a LoRA variant.
    """
    path = directory / CONFIG
    size = check_regular(path, CheckpointError, what="adapter config")
    if size > _CONFIG_LIMIT:
        raise CheckpointError(f"{path}: {size:,} bytes, far more than an adapter config holds", hint="check the file")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: unreadable adapter config ({exc})", hint="re-save the adapter") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: holds a {type(config).__name__}, not an adapter config")
    kind = config.get("peft_type")
    if kind != "LORA":
        raise CheckpointError(
            f"{directory}: a PEFT {kind if isinstance(kind, str) else 'adapter of unknown type'} adapter; interpscan "
            "merges LoRA adapters only",
            hint="merge it with PEFT (model.merge_and_unload().save_pretrained(folder)) and scan that folder",
        )
    variants = [name for key, name in _VARIANTS.items() if config.get(key)]
    if variants:
        raise CheckpointError(
            f"{directory}: a LoRA adapter with {', '.join(variants)}, whose merge is not W + (lora_alpha/r)·B·A",
            hint="merge it with PEFT (model.merge_and_unload().save_pretrained(folder)) and scan that folder",
        )
    try:
        alpha = float(config.get("lora_alpha", 8))
        patterns = {str(k): float(v) for k, v in (config.get("alpha_pattern") or {}).items()}
        for pattern in patterns:
            re.compile(pattern)
    except (TypeError, ValueError, AttributeError, re.error) as exc:
        raise CheckpointError(f"{path}: unreadable lora_alpha or alpha_pattern ({exc})") from exc
    base = config.get("base_model_name_or_path")
    return AdapterConfig(
        path=path,
        base=base if isinstance(base, str) and base else None,
        lora_alpha=alpha,
        use_rslora=bool(config.get("use_rslora")),
        fan_in_fan_out=bool(config.get("fan_in_fan_out")),
        alpha_pattern=patterns,
        raw=config,
    )


def weights_file(directory: Path) -> Path:
    """The adapter's weight file.

    Raises:
        CheckpointError: the folder holds neither adapter_model.safetensors nor adapter_model.bin.
    """
    for name in WEIGHT_FILES:
        path = directory / name
        if path.exists() or path.is_symlink():
            return path
    raise CheckpointError(
        f"{directory}: an adapter config without the adapter's weights ({' or '.join(WEIGHT_FILES)})",
        hint="copy the whole folder PeftModel.save_pretrained wrote",
    )


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The adapter's tensors, read as any checkpoint is (a torch file with weights_only)."""
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    obj = read_torch(path, unsafe_pickle=False)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: holds no adapter state dict (a {type(obj).__name__})")
    return {str(k): v for k, v in obj.items()}


def recorded_base(config: AdapterConfig) -> Path | None:
    """base_model_name_or_path when it is a folder here (PEFT resolves it from the working directory), else None
    (a Hub name, or a folder on the machine that trained it)."""
    if config.base is None:
        return None
    path = Path(os.path.expanduser(config.base))
    return path if path.is_dir() else None


@dataclass
class _Lora:
    """One adapted module's factors, as saved."""

    a: torch.Tensor | None = None
    b: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    embedding: bool = False


def _split(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, _Lora], dict[str, torch.Tensor], list[str]]:
    """The adapter's tensors by module (LoRA factors) and by base tensor (full replacements), and the names of
    tensors that are neither (another variant's)."""
    loras: dict[str, _Lora] = {}
    full: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, t in tensors.items():
        name = key.removeprefix(PREFIX)
        part = next((p for p in _LORA_PARTS if name.endswith(p)), None)
        if part is not None:
            lora = loras.setdefault(name.removesuffix(part), _Lora())
            if part in (".lora_A.weight", ".lora_embedding_A"):
                lora.a = t
            elif part == ".lora_B.bias":
                lora.bias = t
            else:
                lora.b = t
            lora.embedding = lora.embedding or "embedding" in part
        elif re.search(r"(^|\.)lora_\w+(\.|$)", name):
            unknown.append(key)
        else:
            # modules_to_save copies and trained biases: saved under the base's name, the wrapper's path removed
            name = re.sub(r"\.modules_to_save\.[^.]+\.", ".", name).replace(".base_layer.", ".")
            full[name] = t
    return loras, full, unknown


def _delta(
    a: torch.Tensor, b: torch.Tensor, embedding: bool, weight: torch.Tensor, scale: float, fan_in_fan_out: bool
) -> torch.Tensor:
    """s·B·A in the weight's layout, as PEFT's get_delta_weight for Linear, Embedding and Conv layers."""
    a, b = a.float(), b.float()
    if embedding:
        return (b @ a).T * scale
    if a.dim() == 2:
        product = b @ a
        return (product.T if fan_in_fan_out else product) * scale
    if a.dim() in _CONV and weight.dim() == a.dim():
        if all(k == 1 for k in weight.shape[2:]):
            return (b.flatten(1) @ a.flatten(1)).reshape(b.shape[0], a.shape[1], *weight.shape[2:]) * scale
        return _CONV[a.dim()](a.transpose(0, 1), b).transpose(0, 1) * scale
    raise ValueError(f"factors of {a.dim()} dimensions")


def merge(
    base: Mapping[str, torch.Tensor],
    adapter: Mapping[str, torch.Tensor],
    config: AdapterConfig,
    ties: tuple[tuple[str, ...], ...] = (),
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """The base's tensors with the adapter merged in (float32), and which base tensors changed: ``merged`` (LoRA
    deltas added) and ``replaced`` (full tensors the adapter saved). A changed tensor changes every name tied to it.

    Raises:
        CheckpointError: every adapter tensor that names no base tensor, has another shape, or is half a pair.
    """
    loras, full, unknown = _split(adapter)
    problems = [f"{k} is another LoRA variant's tensor" for k in sorted(unknown)]
    out = dict(base)
    replaced: list[str] = []
    for name, t in sorted(full.items()):
        if name not in base:
            problems.append(f"{name} is not in the base")
        elif tuple(t.shape) != tuple(base[name].shape):
            problems.append(f"{name} is {list(t.shape)} in the adapter, {list(base[name].shape)} in the base")
        else:
            out[name] = t.float() if t.is_floating_point() else t
            replaced.append(name)
    merged: list[str] = []
    for module, lora in sorted(loras.items()):
        target = f"{module}.weight"
        if lora.a is None or lora.b is None:
            problems.append(
                f"{module} has lora_{'B' if lora.a is None else 'A'} without lora_{'A' if lora.a is None else 'B'}"
            )
            continue
        if target not in base:
            problems.append(f"{module} adapts {target}, which is not in the base")
            continue
        try:
            scale = config.scaling(module, lora.a.shape[0])
            delta = _delta(lora.a, lora.b, lora.embedding, base[target], scale, config.fan_in_fan_out)
        except (RuntimeError, ValueError) as exc:
            problems.append(f"{module}: factors {list(lora.a.shape)} and {list(lora.b.shape)} do not combine ({exc})")
            continue
        if tuple(delta.shape) != tuple(base[target].shape):
            problems.append(f"{module}: B·A is {list(delta.shape)}, {target} is {list(base[target].shape)}")
            continue
        out[target] = out[target].float() + delta
        merged.append(target)
        if lora.bias is not None:
            bias = f"{module}.bias"
            if bias not in base or base[bias].shape != lora.bias.shape:
                problems.append(f"{module} has lora_B.bias, and the base has no {bias} of its shape")
                continue
            out[bias] = out[bias].float() + lora.bias.float() * scale
            merged.append(bias)
    if problems:
        shown = "; ".join(problems[:8]) + ("; …" if len(problems) > 8 else "")
        raise CheckpointError(
            f"{config.path.parent}: {len(problems)} of the adapter's tensors do not fit its base: {shown}",
            hint="the adapter was trained on another base model; name its base as the other checkpoint",
        )
    for group in ties:
        changed = [n for n in group if n in merged or n in replaced]
        for name in group:
            if changed and name not in changed:
                out[name] = out[changed[0]]
    return out, {"merged": merged, "replaced": replaced}


def files_digest(files: list[Path], base_sha256: str) -> tuple[str, tuple[dict[str, Any], ...]]:
    """The sha256 of the adapter's files and its base's ("sha256  name" lines, as sha256sum prints them; the base
    last, as ``base``), and each adapter file's path, size and sha256: the merged weights depend on both."""
    _, rows = huggingface.files_digest(files)
    lines = "".join(f"{r['sha256']}  {Path(r['path']).name}\n" for r in rows) + f"{base_sha256}  base\n"
    return hashlib.sha256(lines.encode()).hexdigest(), rows


def resolve_base(
    directory: Path, config: AdapterConfig, other: Base | None, load: Callable[[Path], Base]
) -> tuple[Base, str]:
    """The base model's checkpoint and where it came from: base_model_name_or_path when that folder is here
    (the other endpoint when it is that folder), else the other endpoint.

    Raises:
        CheckpointError: neither: the recorded base is not a folder here and no other endpoint was given.
    """
    recorded = recorded_base(config)
    if recorded is not None:
        if other is not None and Path(other.info.path).resolve() == recorded.resolve():
            return other, "base_model_name_or_path, the other checkpoint"
        return load(recorded), "base_model_name_or_path"
    if other is not None:
        return other, "the other checkpoint"
    named = f"base {config.base!r}" if config.base else "base model"
    raise CheckpointError(
        f"{directory}: a LoRA adapter whose {named} is not a folder here",
        hint="name the base model's folder as the other checkpoint: interpscan run base/ adapter/",
    )


def load_adapter(directory: Path, *, key: str | None, base: Base | None, load: Callable[[Path], Base]) -> Merged:
    """The fine-tuned model an adapter folder describes: its base (resolve_base; ``load`` reads a recorded base
    folder) with the adapter merged. The model to evaluate comes from the base checkpoint (a transformers folder
    brings its own, a state dict the model it records or ``--model``).

    Raises:
        CheckpointError: ``key`` given, an unsupported adapter (read_config), no base, or an adapter that does not
            fit its base (merge).
    """
    if key is not None:
        raise CheckpointError(
            f"{directory}: {opt('key')} picks an entry of a pickled dict, and this is a PEFT adapter folder",
            hint=f"leave out {opt('key')}",
        )
    config = read_config(directory)
    weights = weights_file(directory)
    adapter = read_weights(weights)
    found, source = resolve_base(directory, config, base, load)
    if found.info.format == FORMAT:
        raise CheckpointError(
            f"{directory}: its base {found.info.path} is an adapter too",
            hint="name the base model's folder as the other checkpoint",
        )
    tensors, changed = merge(found.tensors, adapter, config, found.info.aliases)
    sha, files = files_digest([config.path, weights], found.info.sha256)
    metadata: dict[str, Any] = {
        "peft": {
            "peft_type": "LORA",
            "base": {"path": found.info.path, "sha256": found.info.sha256, "format": found.info.format, "from": source},
            "base_model_name_or_path": config.base,
            "lora_alpha": config.lora_alpha,
            "r": config.raw.get("r"),
            "use_rslora": config.use_rslora,
            "fan_in_fan_out": config.fan_in_fan_out,
            "peft_version": config.raw.get("peft_version"),
            "merged": len(changed["merged"]),
            "replaced": changed["replaced"],
        }
    }
    return Merged(tensors, found, sha, files, metadata)

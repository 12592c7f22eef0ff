"""Bad folders of the formats that are folders: PEFT adapters (merged into a valid ``cnn width=2`` base, the other
endpoint) and torch.distributed.checkpoint saves, each against that valid partner, through `interpscan run`.

Every folder is built here from code: adapters as PEFT names their tensors, DCP folders by dcp.save and then
their metadata edited as a crafted one would be.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .case import Case, good_state, run_args
from .checkpoints import _RunsCode

TITLE = "Adapter and DCP folders"
NAMES = (
    "adapter-on-state-dict",
    "adapter-ia3",
    "adapter-dora",
    "adapter-config-not-json",
    "adapter-config-fifo",
    "adapter-without-weights",
    "adapter-bin-code-pickle",
    "adapter-for-another-model",
    "adapter-factor-shapes",
    "adapter-half-pair",
    "adapters-without-base",
    "dcp-metadata-code",
    "dcp-metadata-not-pickle",
    "dcp-metadata-fifo",
    "dcp-data-outside-folder",
    "dcp-link-out-of-folder",
    "dcp-truncated-rank-file",
    "dcp-missing-rank-file",
    "dcp-chunk-bomb",
    "dcp-chunks-leave-a-gap",
    "dcp-chunks-overlap",
    "dcp-compressed",
    "dcp-no-tensors",
)
_PREFIX = "base_model.model."


def _lora(seed: int = 0) -> dict[str, torch.Tensor]:
    """A LoRA adapter of rank 2 on cnn width=2's conv2 (3×3) and fc, as PEFT names its tensors."""
    gen = torch.Generator().manual_seed(seed)
    return {
        f"{_PREFIX}conv2.lora_A.weight": torch.randn(2, 2, 3, 3, generator=gen),
        f"{_PREFIX}conv2.lora_B.weight": torch.randn(4, 2, 1, 1, generator=gen),
        f"{_PREFIX}fc.lora_A.weight": torch.randn(2, 64, generator=gen),
        f"{_PREFIX}fc.lora_B.weight": torch.randn(10, 2, generator=gen),
    }


def _config(**change: Any) -> dict[str, Any]:
    return {
        "peft_type": "LORA",
        "r": 2,
        "lora_alpha": 4,
        "target_modules": ["conv2", "fc"],
        "base_model_name_or_path": None,
        **change,
    }


def _adapter(folder: Path, config: dict[str, Any] | bytes | None, tensors: dict[str, torch.Tensor] | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(config, bytes):
        (folder / "adapter_config.json").write_bytes(config)
    elif config is not None:
        (folder / "adapter_config.json").write_text(json.dumps(config))
    if tensors is not None:
        save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def _dcp(folder: Path, state: dict[str, Any]) -> Path:
    """dcp.save from this one process."""
    import torch.distributed.checkpoint as dcp

    if not (folder / ".metadata").exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.save(state, checkpoint_id=folder, no_dist=True)
    return folder


def _edit_metadata(folder: Path, edit: Any) -> Path:
    """The folder's .metadata, unpickled by interpscan's reader, changed by ``edit`` and pickled again."""
    from interpscan.distcp import read_metadata

    metadata = read_metadata(folder)
    edit(metadata)
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    return folder


def _copy(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        target = folder / f.name
        if not target.exists():
            target.write_bytes(f.read_bytes())
    return folder


def _storage(metadata: Any, fqn: str) -> Any:
    return next(info for index, info in metadata.storage_data.items() if index.fqn == fqn)


def build(root: Path) -> list[Case]:
    """Write every bad folder (and the valid partner) into ``root``; return the cases."""
    good = good_state(0)
    good_path = root / "good.pt"
    torch.save(good, good_path)
    cases: list[Case] = []

    def bad(name: str, description: str, path: Path, error: str, *, exit_code: int = 2, **extra: Any) -> None:
        cases.append(Case(name, description, run_args(good_path, path), exit_code, error, **extra))

    # -- PEFT adapters, the base being the other endpoint
    cases.append(
        Case(
            "adapter-on-state-dict",
            "a valid LoRA adapter on a plain state dict (the base is the other endpoint)",
            run_args(good_path, _adapter(root / "adapter", _config(), _lora())),
            0,
            "",
        )
    )
    bad(
        "adapter-ia3",
        "an IA3 adapter (not LoRA)",
        _adapter(root / "ia3", _config(peft_type="IA3"), _lora()),
        "a PEFT IA3 adapter; interpscan merges LoRA adapters only",
    )
    bad(
        "adapter-dora",
        "a DoRA adapter (use_dora: its merge rescales columns)",
        _adapter(root / "dora", _config(use_dora=True), _lora()),
        "a LoRA adapter with DoRA (use_dora), whose merge is not",
    )
    bad(
        "adapter-config-not-json",
        "adapter_config.json is not JSON",
        _adapter(root / "not-json", b"peft_type: LORA\n", _lora()),
        "unreadable adapter config",
    )
    fifo_folder = _adapter(root / "config-fifo", None, _lora())
    if not (fifo_folder / "adapter_config.json").exists():
        os.mkfifo(fifo_folder / "adapter_config.json")
    bad(
        "adapter-config-fifo",
        "adapter_config.json is a named pipe",
        fifo_folder,
        "is a named pipe (FIFO), not a regular adapter config",
    )
    bad(
        "adapter-without-weights",
        "an adapter config without adapter_model.safetensors",
        _adapter(root / "no-weights", _config(), None),
        "an adapter config without the adapter's weights",
    )
    marker = root / "PWNED-adapter"
    code = _adapter(root / "code-bin", _config(), None)
    torch.save({"x": _RunsCode(marker)}, code / "adapter_model.bin")
    bad(
        "adapter-bin-code-pickle",
        "adapter_model.bin whose pickle calls exec()",
        code,
        "refused to unpickle",
        must_not_exist=(marker,),
    )
    other = {k.replace("fc.", "classifier."): v for k, v in _lora().items()}
    bad(
        "adapter-for-another-model",
        "an adapter whose modules the base lacks",
        _adapter(root / "other-model", _config(), other),
        "of the adapter's tensors do not fit its base",
    )
    shapes = {**_lora(), f"{_PREFIX}fc.lora_A.weight": torch.randn(2, 65)}
    bad(
        "adapter-factor-shapes",
        "lora_A of fc is 2×65 where fc takes 64 inputs",
        _adapter(root / "shapes", _config(), shapes),
        "fc: B·A is [10, 65], fc.weight is [10, 64]",
    )
    half = {k: v for k, v in _lora().items() if "fc.lora_B" not in k}
    bad(
        "adapter-half-pair",
        "fc's lora_A without its lora_B",
        _adapter(root / "half", _config(), half),
        "fc has lora_A without lora_B",
    )
    hub = _adapter(root / "hub-base", _config(base_model_name_or_path="org/base-model"), _lora())
    cases.append(
        Case(
            "adapters-without-base",
            "two adapters whose base is a Hub name, and no base checkpoint",
            run_args(hub, hub),
            2,
            "a LoRA adapter whose base 'org/base-model' is not a folder here",
        )
    )

    # -- torch.distributed.checkpoint folders
    state = {"model": good, "step": 3}
    source = _dcp(root / "dcp-good", state)
    code_marker = root / "PWNED-dcp"
    evil = _copy(source, root / "dcp-code")
    (evil / ".metadata").write_bytes(pickle.dumps(_RunsCode(code_marker)))
    bad(
        "dcp-metadata-code",
        ".metadata is a pickle that calls exec()",
        evil,
        "the metadata pickle names builtins.exec",
        must_not_exist=(code_marker,),
    )
    garbage = _copy(source, root / "dcp-garbage")
    (garbage / ".metadata").write_bytes(b"not a pickle at all\n")
    bad("dcp-metadata-not-pickle", ".metadata is text", garbage, "unreadable checkpoint metadata")
    pipe = root / "dcp-fifo"
    pipe.mkdir(exist_ok=True)
    (pipe / "__0_0.distcp").write_bytes((source / "__0_0.distcp").read_bytes())
    if not (pipe / ".metadata").exists():
        os.mkfifo(pipe / ".metadata")
    bad("dcp-metadata-fifo", ".metadata is a named pipe", pipe, "is a named pipe (FIFO)")

    def edited(name: str, edit: Any) -> Path:
        folder = _copy(source, root / name)
        return _edit_metadata(folder, edit)

    bad(
        "dcp-data-outside-folder",
        "the metadata names ../good.pt as a rank's file",
        edited("dcp-outside", lambda m: setattr(_storage(m, "model.fc.weight"), "relative_path", "../good.pt")),
        "names a data file outside its folder: '../good.pt'",
    )
    linked = edited("dcp-link", lambda m: setattr(_storage(m, "model.fc.weight"), "relative_path", "other.distcp"))
    if not (linked / "other.distcp").is_symlink():
        (linked / "other.distcp").symlink_to(good_path)
    bad("dcp-link-out-of-folder", "a rank's file is a link to a file outside the folder", linked, "a link out of")
    truncated = _copy(source, root / "dcp-truncated")
    data = (source / "__0_0.distcp").read_bytes()
    (truncated / "__0_0.distcp").write_bytes(data[: len(data) // 2])
    bad("dcp-truncated-rank-file", "the rank's file cut in half", truncated, "past the file's end")
    missing = _copy(source, root / "dcp-missing")
    (missing / "__0_0.distcp").unlink(missing_ok=True)
    bad("dcp-missing-rank-file", "the rank's .distcp file is gone", missing, "checkpoint data file not found")

    def bomb(m: Any) -> None:
        item = m.state_dict_metadata["model.fc.weight"]
        item.size = torch.Size([1 << 20, 1 << 20])
        item.chunks[0].sizes = torch.Size([1 << 20, 1 << 20])

    bad(
        "dcp-chunk-bomb",
        "the metadata declares fc.weight 2^20×2^20 (4 TiB) stored in 2 KB",
        edited("dcp-bomb", bomb),
        "holds fewer bytes than its values",
    )

    def gap(m: Any) -> None:
        item = m.state_dict_metadata["model.fc.weight"]
        item.size = torch.Size([20, 64])

    bad(
        "dcp-chunks-leave-a-gap",
        "fc.weight declared 20×64 with one 10×64 chunk (a rank's part missing)",
        edited("dcp-gap", gap),
        "hold 640 of its 1,280 values",
    )

    def overlap(m: Any) -> None:
        item = m.state_dict_metadata["model.fc.weight"]
        chunk = item.chunks[0]
        item.size = torch.Size([15, 64])
        item.chunks.append(type(chunk)(offsets=torch.Size([5, 0]), sizes=torch.Size([10, 64])))
        index = next(i for i in m.storage_data if i.fqn == "model.fc.weight")
        m.storage_data[type(index)("model.fc.weight", torch.Size([5, 0]), 1)] = m.storage_data[index]

    bad(
        "dcp-chunks-overlap",
        "fc.weight's two chunks overlap and leave rows out",
        edited("dcp-overlap", overlap),
        "overlap",
    )
    bad(
        "dcp-compressed",
        "an entry stored through a transform (compression)",
        edited("dcp-zstd", lambda m: setattr(_storage(m, "model.fc.weight"), "transform_descriptors", ["zstd"])),
        "is stored transformed (zstd)",
    )
    bad(
        "dcp-no-tensors",
        "a DCP save holding only a step counter",
        _dcp(root / "dcp-step-only", {"step": 3, "epoch": 1}),
        "no tensors found",
    )
    return cases

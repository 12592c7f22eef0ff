"""Tests for interpscan.checkpoints: format from bytes, container unwrapping, provenance, refusals, prefixes."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from interpscan.checkpoints import (
    Checkpoint,
    CheckpointInfo,
    align_to_model,
    detect_format,
    load_checkpoint,
    strip_prefixes,
)
from interpscan.errors import CheckpointError, CheckpointNotFoundError, InterpscanError

SPEC = {"model": "cnn", "model_args": {"width": 8, "bn": False}}


@pytest.fixture
def state() -> dict[str, torch.Tensor]:
    """Four tensors, three dtypes: what a small model with batch norm and a half-precision buffer saves."""
    gen = torch.Generator().manual_seed(0)
    return {
        "fc.weight": torch.randn(3, 4, generator=gen),
        "fc.bias": torch.randn(3, generator=gen),
        "bn.num_batches_tracked": torch.tensor(7),
        "scale": torch.randn(2, generator=gen).half(),
    }


def assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype, k
        assert torch.equal(got[k], v), k


def save_torch(obj: Any, path: Path, *, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


# ------------------------------------------------------------------------------------- format detection


@pytest.mark.parametrize(
    ("name", "writer", "fmt"),
    [
        ("weights.pt", "safetensors", "safetensors"),  # a safetensors file with a torch extension
        ("weights.bin", "zip", "torch-zip"),
        ("weights.safetensors", "zip", "torch-zip"),
        ("weights.ckpt", "legacy", "torch-legacy"),
        ("weights", "legacy", "torch-legacy"),  # no extension at all
    ],
)
def test_format_comes_from_content_not_extension(
    tmp_path: Path, state: dict[str, torch.Tensor], name: str, writer: str, fmt: str
) -> None:
    path = tmp_path / name
    if writer == "safetensors":
        save_file(state, str(path))
    else:
        save_torch(state, path, legacy=writer == "legacy")
    assert detect_format(path) == fmt
    ckpt = load_checkpoint(path)
    assert ckpt.info.format == fmt
    assert_same_tensors(ckpt.tensors, state)


def test_zip_magic_is_what_torch_writes(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = save_torch(state, tmp_path / "w.pt")
    assert zipfile.is_zipfile(path)
    assert path.read_bytes()[:4] == b"PK\x03\x04"


# ------------------------------------------------------------------------------------------- layouts


def test_plain_state_dict(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    ckpt = load_checkpoint(save_torch(state, tmp_path / "w.pt"))
    assert ckpt.info.container_key is None
    assert ckpt.info.ignored_keys == ()
    assert ckpt.info.prefixes_stripped == ()
    assert ckpt.model_spec is None
    assert_same_tensors(ckpt.tensors, state)


def test_non_tensor_entries_of_a_plain_state_dict_are_ignored_and_listed(
    tmp_path: Path, state: dict[str, torch.Tensor]
) -> None:
    ckpt = load_checkpoint(save_torch({**state, "step": 100, "note": "best"}, tmp_path / "w.pt"))
    assert ckpt.info.container_key is None
    assert ckpt.info.ignored_keys == ("note", "step")
    assert_same_tensors(ckpt.tensors, state)


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
@pytest.mark.parametrize("legacy", [False, True])
def test_nested_state_dict_is_unwrapped_and_the_rest_listed(
    tmp_path: Path, state: dict[str, torch.Tensor], key: str, legacy: bool
) -> None:
    obj = {
        key: state,
        "epoch": 12,
        "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 0.1}]},
    }
    ckpt = load_checkpoint(save_torch(obj, tmp_path / "w.pt", legacy=legacy))
    assert ckpt.info.container_key == key
    assert ckpt.info.ignored_keys == ("epoch", "optimizer")
    assert ckpt.info.tensor_count == 4
    assert_same_tensors(ckpt.tensors, state)


def test_container_keys_are_tried_in_order(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    other = {"other.weight": torch.zeros(1)}
    ckpt = load_checkpoint(save_torch({"model": other, "state_dict": state}, tmp_path / "w.pt"))
    assert ckpt.info.container_key == "state_dict"
    assert_same_tensors(ckpt.tensors, state)


def test_info_records_provenance(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = save_torch({"state_dict": state, "epoch": 3}, tmp_path / "final.pt")
    info = load_checkpoint(path).info
    assert info.path == str(path)
    assert info.size == path.stat().st_size == len(path.read_bytes())
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.tensor_count == 4
    assert info.dtypes == {"float16": 1, "float32": 2, "int64": 1}
    assert list(info.dtypes) == sorted(info.dtypes)
    assert info.to_json() == {
        "path": str(path),
        "size": info.size,
        "sha256": info.sha256,
        "format": "torch-zip",
        "container_key": "state_dict",
        "tensor_count": 4,
        "dtypes": {"float16": 1, "float32": 2, "int64": 1},
        "ignored_keys": ["epoch"],
        "prefixes_stripped": [],
    }
    json.dumps(info.to_json())  # run.json must be able to hold it


def test_sha256_changes_with_content(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    a = load_checkpoint(save_torch(state, tmp_path / "a.pt")).info
    state["fc.bias"] += 1
    b = load_checkpoint(save_torch(state, tmp_path / "b.pt")).info
    assert a.sha256 != b.sha256


def test_path_may_be_a_string(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = save_torch(state, tmp_path / "w.pt")
    assert load_checkpoint(str(path)).info.path == str(path)


# ----------------------------------------------------------------------------- self-describing metadata


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_file_carries_its_model_spec(tmp_path: Path, state: dict[str, torch.Tensor], legacy: bool) -> None:
    path = save_torch({"state_dict": state, "interpscan": SPEC}, tmp_path / "w.pt", legacy=legacy)
    ckpt = load_checkpoint(path)
    assert ckpt.model_spec == SPEC
    assert ckpt.info.container_key == "state_dict"
    assert "interpscan" not in ckpt.info.ignored_keys  # it was read, not skipped
    assert_same_tensors(ckpt.tensors, state)


def test_safetensors_metadata_carries_the_model_spec_as_json(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "w.safetensors"
    save_file(state, str(path), metadata={"interpscan": json.dumps(SPEC), "format": "pt"})
    ckpt = load_checkpoint(path)
    assert ckpt.info.format == "safetensors"
    assert ckpt.model_spec == SPEC
    assert_same_tensors(ckpt.tensors, state)


@pytest.mark.parametrize(
    "value",
    [
        "not json {",  # unparsable: ignored, the weights still load
        json.dumps(["cnn"]),  # not a dict
        json.dumps({"model_args": {"width": 8}}),  # no model name
        json.dumps({"model": 3}),  # model name not a string
    ],
)
def test_unusable_safetensors_metadata_gives_no_spec(
    tmp_path: Path, state: dict[str, torch.Tensor], value: str
) -> None:
    path = tmp_path / "w.safetensors"
    save_file(state, str(path), metadata={"interpscan": value})
    ckpt = load_checkpoint(path)
    assert ckpt.model_spec is None
    assert ckpt.info.tensor_count == 4


def test_safetensors_without_metadata(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    ckpt = load_checkpoint(path)
    assert ckpt.model_spec is None
    assert ckpt.info.container_key is None
    assert ckpt.info.ignored_keys == ()


# -------------------------------------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointNotFoundError, match="checkpoint not found") as exc:
        load_checkpoint(path)
    assert isinstance(exc.value, FileNotFoundError)
    assert isinstance(exc.value, CheckpointError)
    assert isinstance(exc.value, InterpscanError)
    assert str(path) in str(exc.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file") as exc:
        load_checkpoint(tmp_path)
    assert exc.value.hint == "pass the file itself"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"not a checkpoint interpscan can read \(an empty file\)") as exc:
        load_checkpoint(path)
    assert exc.value.hint is not None
    assert "safetensors" in exc.value.hint


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(range(7, 107)))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert (
        str(exc.value)
        == f"{path}: not a checkpoint interpscan can read (a file starting with bytes 07 08 09 0a 0b 0c 0d 0e)"
    )


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "config.pt"
    path.write_text('{"lr": 0.1}\n')
    with pytest.raises(CheckpointError, match="not a checkpoint interpscan can read"):
        load_checkpoint(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_torch_file(tmp_path: Path, state: dict[str, torch.Tensor], legacy: bool) -> None:
    path = save_torch(state, tmp_path / "w.pt", legacy=legacy)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="unreadable PyTorch file"):
        load_checkpoint(path)


def test_truncated_safetensors(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="unreadable safetensors file"):
        load_checkpoint(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_a_list_holds_no_tensors(tmp_path: Path, legacy: bool) -> None:
    path = save_torch([1, 2, 3], tmp_path / "w.pt", legacy=legacy)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(exc.value) == f"{path}: no tensors found (the file holds a list)"


def test_a_plain_pickle_is_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(CheckpointError, match="unreadable PyTorch file"):
        load_checkpoint(path)


def test_a_dict_without_tensors(tmp_path: Path) -> None:
    path = save_torch({"epoch": 3, "lr": 0.1, "state_dict": {"note": "empty"}}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(exc.value) == f"{path}: no tensors found (the file holds a dict with keys ['epoch', 'lr', 'state_dict'])"
    assert exc.value.hint == (
        "interpscan reads a state dict, optionally nested under one of state_dict, model_state_dict, model"
    )


def test_empty_safetensors_holds_no_tensors(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({}, str(path))
    with pytest.raises(CheckpointError, match="no tensors found"):
        load_checkpoint(path)


class Pickled:
    """A custom class: unpickling it needs an import, which weights_only refuses."""

    def __init__(self) -> None:
        self.weights = torch.zeros(2)


class MakesDirectory:
    """Unpickling this object would call os.mkdir: a stand-in for any code a malicious checkpoint runs."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.target),))


@pytest.mark.parametrize("legacy", [False, True])
def test_custom_class_is_refused(tmp_path: Path, legacy: bool) -> None:
    path = save_torch({"model": Pickled(), "w": torch.zeros(1)}, tmp_path / "w.pt", legacy=legacy)
    with pytest.raises(CheckpointError, match="refused to unpickle") as exc:
        load_checkpoint(path)
    assert exc.value.hint is not None
    assert "state_dict()" in exc.value.hint


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle"])
def test_code_in_a_pickle_never_runs(tmp_path: Path, how: str) -> None:
    # The payload is real: plain unpickling runs it.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(MakesDirectory(control), protocol=2))
    assert control.is_dir()

    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"state_dict": {"w": torch.zeros(1)}, "extra": MakesDirectory(target)}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        save_torch(payload, path, legacy=how == "legacy")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not target.exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_code_in_a_torch_file_is_refused_with_the_reason(tmp_path: Path, legacy: bool) -> None:
    target = tmp_path / "pwned"
    path = save_torch({"w": torch.zeros(1), "x": MakesDirectory(target)}, tmp_path / "evil.pt", legacy=legacy)
    with pytest.raises(CheckpointError, match="refused to unpickle objects other than tensors"):
        load_checkpoint(path)
    assert not target.exists()


# ----------------------------------------------------------------------------------- prefix stripping


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2, 3)


class Wrapper(nn.Module):
    """A model whose own attribute is called ``model``: its names start with ``model.``."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Net()


def wrapped(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


def make_ckpt(tensors: dict[str, torch.Tensor], path: str = "w.pt") -> Checkpoint:
    info = CheckpointInfo(
        path=path,
        size=123,
        sha256="ab" * 32,
        format="torch-zip",
        container_key="state_dict",
        tensor_count=len(tensors),
        dtypes={"float32": len(tensors)},
        ignored_keys=("epoch",),
        metadata={"interpscan": SPEC},
    )
    return Checkpoint(tensors=tensors, info=info)


@pytest.mark.parametrize(
    ("prefix", "stripped"),
    [
        ("", ()),
        ("module.", ("module.",)),
        ("_orig_mod.", ("_orig_mod.",)),
        ("model.", ("model.",)),
        ("module._orig_mod.", ("_orig_mod.", "module.")),
        ("_orig_mod.module.", ("_orig_mod.", "module.")),
        ("module.module.", ("module.",)),
    ],
)
def test_wrapper_prefixes_are_stripped(prefix: str, stripped: tuple[str, ...]) -> None:
    sd = Net().state_dict()
    mapping, used = strip_prefixes(wrapped(sd, prefix), set(sd))
    assert mapping == {prefix + k: k for k in sd}
    assert used == stripped

    aligned = align_to_model(make_ckpt(wrapped(sd, prefix)), sd)
    assert aligned.info.prefixes_stripped == stripped
    assert sorted(aligned.tensors) == sorted(sd)
    for k, v in sd.items():
        assert aligned.tensors[k] is v  # renamed, not copied


def test_a_model_named_model_keeps_its_names() -> None:
    sd = Wrapper().state_dict()
    assert all(k.startswith("model.") for k in sd)
    mapping, used = strip_prefixes(sd, set(sd))
    assert mapping == {k: k for k in sd}
    assert used == ()
    # Wrapped once more (DDP around it), only the outer prefix goes.
    mapping, used = strip_prefixes(wrapped(sd, "module."), set(sd))
    assert mapping == {"module." + k: k for k in sd}
    assert used == ("module.",)


def test_names_the_model_lacks_are_left_alone() -> None:
    sd = Net().state_dict()
    names = ["module.fc.weight", "module.extra.weight", "head.bias"]
    mapping, used = strip_prefixes(names, set(sd))
    # The unknown names keep their prefix, so check_against reports them as the user wrote them.
    assert mapping == {
        "module.fc.weight": "fc.weight",
        "module.extra.weight": "module.extra.weight",
        "head.bias": "head.bias",
    }
    assert used == ("module.",)


def test_prefix_only_inside_a_name_is_kept() -> None:
    mapping, used = strip_prefixes(["encoder.module.weight"], {"encoder.module.weight", "weight"})
    assert mapping == {"encoder.module.weight": "encoder.module.weight"}
    assert used == ()


def test_align_keeps_the_rest_of_the_provenance() -> None:
    sd = Net().state_dict()
    ckpt = make_ckpt(wrapped(sd, "module."))
    aligned = align_to_model(ckpt, list(sd))
    assert aligned.info == CheckpointInfo(**{**ckpt.info.__dict__, "prefixes_stripped": ("module.",)})
    assert aligned.model_spec == SPEC
    # The input is untouched.
    assert ckpt.info.prefixes_stripped == ()
    assert sorted(ckpt.tensors) == sorted("module." + k for k in sd)


def test_stripping_into_a_collision_is_an_error() -> None:
    sd = Net().state_dict()
    ckpt = make_ckpt({**sd, "module.fc.weight": sd["fc.weight"].clone()}, path="both.pt")
    with pytest.raises(CheckpointError, match=r"both\.pt: stripping wrapper prefixes makes two tensors share a name"):
        align_to_model(ckpt, sd)


def test_align_after_load(tmp_path: Path) -> None:
    sd = Net().state_dict()
    path = save_torch({"state_dict": wrapped(sd, "module._orig_mod."), "epoch": 1}, tmp_path / "w.pt")
    aligned = align_to_model(load_checkpoint(path), sd)
    assert aligned.info.prefixes_stripped == ("_orig_mod.", "module.")
    assert aligned.info.to_json()["prefixes_stripped"] == ["_orig_mod.", "module."]
    assert aligned.info.container_key == "state_dict"
    assert_same_tensors(aligned.tensors, sd)
    Net().load_state_dict(aligned.tensors)  # the names really are the model's

"""Tests for interpscan.checkpoints: format from bytes, container unwrapping, provenance, refusals, prefixes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from floats import tol32
from safetensors.torch import save_file
from torch import nn

from interpscan.checkpoints import (
    Checkpoint,
    CheckpointInfo,
    align_to_model,
    describe,
    detect_format,
    load_checkpoint,
)
from interpscan.errors import CheckpointError, CheckpointNotFoundError, InterpscanError
from interpscan.options import flags
from interpscan.statedict import strip_prefixes

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
        "layout": "nested",
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


def test_directory_without_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(tmp_path)
    assert str(exc.value) == f"{tmp_path} is a directory with no candidate checkpoint files (nothing)"
    assert exc.value.hint == "pass the file itself (for a sharded checkpoint, its *.index.json)"


def test_directory_with_several_checkpoints(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    save_torch(state, tmp_path / "a.pt")
    save_torch(state, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"a directory with 2 candidate checkpoint files \(a\.pt, b\.pt\)"):
        load_checkpoint(tmp_path)


def test_directory_with_one_checkpoint(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    save_file(state, str(tmp_path / "model.safetensors"))
    save_torch({"lr": 0.1}, tmp_path / "training_args.bin")  # what Hugging Face's Trainer leaves beside it
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.info.format == "safetensors"
    assert ckpt.info.path == str(tmp_path)
    assert_same_tensors(ckpt.tensors, state)


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


@pytest.mark.parametrize("unsafe_pickle", [False, True])
def test_a_plain_pickle_is_not_a_torch_file(tmp_path: Path, unsafe_pickle: bool) -> None:
    # torch.load would unpickle it whole, running what it names, before finding no magic number
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(CheckpointError, match=r"a Python pickle \(pickle.dump\), not torch.save output") as exc:
        load_checkpoint(path, unsafe_pickle=unsafe_pickle)
    assert exc.value.hint is not None
    assert "torch.save(model.state_dict(), path)" in exc.value.hint


def test_a_dict_without_tensors(tmp_path: Path) -> None:
    path = save_torch({"epoch": 3, "lr": 0.1, "state_dict": {"note": "empty"}}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(exc.value) == f"{path}: no tensors found (the file holds a dict with keys ['epoch', 'lr', 'state_dict'])"
    assert exc.value.hint == (
        "interpscan reads a state dict, optionally nested under one of state_dict, model_state_dict, model, "
        "module, net; key picks another entry"
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


# ------------------------------------------------------------------------------- what users actually save


@pytest.mark.parametrize("key", ["module", "net"])
def test_more_container_keys(tmp_path: Path, state: dict[str, torch.Tensor], key: str) -> None:
    ckpt = load_checkpoint(save_torch({key: state, "epoch": 2}, tmp_path / "w.pt"))
    assert ckpt.info.container_key == key
    assert_same_tensors(ckpt.tensors, state)


def test_containers_nest(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    ckpt = load_checkpoint(save_torch({"model": {"state_dict": state, "step": 4}, "epoch": 2}, tmp_path / "w.pt"))
    assert ckpt.info.container_key == "model.state_dict"
    assert ckpt.info.ignored_keys == ("epoch", "model.step")
    assert_same_tensors(ckpt.tensors, state)


def test_lightning_checkpoint(tmp_path: Path) -> None:
    sd = Net().state_dict()
    obj = {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": wrapped(sd, "net."),  # a LightningModule holding the network as self.net
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
        "lr_schedulers": [],
        "callbacks": {},
        "loops": {},
        "hyper_parameters": {"lr": 0.1},
    }
    ckpt = load_checkpoint(save_torch(obj, tmp_path / "epoch=3.ckpt"))
    assert (ckpt.info.format, ckpt.info.layout, ckpt.info.container_key) == ("torch-zip", "lightning", "state_dict")
    assert ckpt.info.metadata == {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0"}
    assert "optimizer_states" in ckpt.info.ignored_keys
    aligned = align_to_model(ckpt, sd)
    assert aligned.info.prefixes_stripped == ("net.",)
    assert_same_tensors(aligned.tensors, sd)


def test_an_unknown_leading_module_is_stripped_only_when_everything_under_it_matches() -> None:
    names = set(Net().state_dict())
    mapping, used = strip_prefixes(["backbone.conv.weight", "backbone.conv.bias", "fc.weight", "fc.bias"], names)
    assert used == ("backbone.",)
    assert mapping["backbone.conv.weight"] == "conv.weight"
    # a loss module's buffer beside the network is not the network's: left alone, so the check reports it
    mapping, used = strip_prefixes(["net.conv.weight", "net.conv.extra", "conv.bias"], names)
    assert used == ()
    assert mapping == {
        "net.conv.weight": "net.conv.weight",
        "net.conv.extra": "net.conv.extra",
        "conv.bias": "conv.bias",
    }
    # a component the model has is never stripped: fc.fc.weight is not the model's fc.weight
    mapping, used = strip_prefixes(["fc.fc.weight"], names)
    assert mapping == {"fc.fc.weight": "fc.fc.weight"}


def test_ema_weights_are_used_only_when_picked(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    path = save_torch({"state_dict": state, "state_dict_ema": ema, "epoch": 9}, tmp_path / "w.pt")
    live = load_checkpoint(path)
    assert live.info.container_key == "state_dict"
    assert live.info.alternatives == ("state_dict_ema",)
    assert_same_tensors(live.tensors, state)
    picked = load_checkpoint(path, key="state_dict_ema")
    assert picked.info.container_key == "state_dict_ema"
    assert picked.info.ignored_keys == ("epoch", "state_dict")
    assert_same_tensors(picked.tensors, ema)


def test_a_file_with_only_ema_weights_says_how_to_pick_them(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = save_torch({"model_ema": state, "epoch": 9}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(exc.value) == f"{path}: the only weights are averaged (EMA) weights under 'model_ema'"
    assert exc.value.hint == "pass key='model_ema' to scan them"
    assert exc.value.rendered(flags())[1] == "pass --key model_ema to scan them"
    assert_same_tensors(load_checkpoint(path, key="model_ema").tensors, state)


def test_key_is_a_dotted_path(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    obj = {"ema": {"module": state, "decay": 0.999}, "ema.v2": {"module": state}, "model": {"x": torch.zeros(1)}}
    path = save_torch(obj, tmp_path / "w.pt")
    ckpt = load_checkpoint(path, key="ema.module")
    assert ckpt.info.container_key == "ema.module"
    assert_same_tensors(ckpt.tensors, state)
    assert load_checkpoint(path, key="ema.v2.module").info.container_key == "ema.v2.module"  # a key with a dot


def test_a_key_that_is_not_there(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = save_torch({"state_dict": state, "model_ema": state}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, key="model_emma")
    assert str(exc.value) == f"{path}: no entry 'model_emma' for key='model_emma'; closest: model_ema"
    assert exc.value.hint == "keys: model_ema, state_dict"
    with pytest.raises(CheckpointError, match=r"no entry 'x' under state_dict for key='state_dict\.x'"):
        load_checkpoint(path, key="state_dict.x")


def test_npz_archive(tmp_path: Path) -> None:
    import numpy as np

    arrays = {"fc.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "fc.bias": np.ones(3, dtype=np.float64)}
    path = tmp_path / "weights.data"
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    assert detect_format(path) == "npz"
    ckpt = load_checkpoint(path)
    assert ckpt.info.dtypes == {"float32": 1, "float64": 1}
    assert torch.equal(ckpt.tensors["fc.weight"], torch.arange(12.0).reshape(3, 4))


def test_npz_with_objects_is_refused(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "w.npz"
    np.savez(path, w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match=r"entry 'w' is an array of Python objects"):
        load_checkpoint(path)


def shard(state: dict[str, torch.Tensor], directory: Path, parts: int = 2) -> Path:
    """Write ``state`` the way Hugging Face writes a sharded checkpoint: shards plus an index."""
    directory.mkdir(exist_ok=True)
    names = list(state)
    weight_map = {}
    for i in range(parts):
        shard_name = f"model-{i + 1:05d}-of-{parts:05d}.safetensors"
        part = {n: state[n] for n in names[i::parts]}
        save_file(part, str(directory / shard_name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard_name))
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 123}, "weight_map": weight_map}))
    return index


def test_sharded_safetensors_by_index_or_directory(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    index = shard(state, tmp_path / "ckpt")
    assert detect_format(index) == "safetensors-sharded"
    by_index, by_dir = load_checkpoint(index), load_checkpoint(tmp_path / "ckpt")
    for ckpt in (by_index, by_dir):
        assert ckpt.info.format == "safetensors-sharded"
        assert_same_tensors(ckpt.tensors, state)
        assert [Path(f["path"]).name for f in ckpt.info.files] == [
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ]
        assert ckpt.info.size == sum(f.stat().st_size for f in (tmp_path / "ckpt").iterdir())
        assert ckpt.info.metadata == {"format": "pt", "total_size": 123}
    assert by_index.info.sha256 == by_dir.info.sha256


def test_sharded_torch_bins(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    (tmp_path / "a.bin").write_bytes(b"")
    save_torch({k: state[k] for k in ["fc.weight", "fc.bias"]}, tmp_path / "pytorch_model-00001-of-00002.bin")
    save_torch(
        {k: state[k] for k in ["bn.num_batches_tracked", "scale"]}, tmp_path / "pytorch_model-00002-of-00002.bin"
    )
    weight_map = {k: f"pytorch_model-0000{1 if k.startswith('fc') else 2}-of-00002.bin" for k in state}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.info.format == "torch-sharded"
    assert_same_tensors(ckpt.tensors, state)


def test_a_missing_shard(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    index = shard(state, tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(index)
    assert str(exc.value) == f"{index}: 1 of 2 shards are missing: model-00002-of-00002.safetensors"


def test_an_index_naming_tensors_no_shard_holds(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    index = shard(state, tmp_path)
    data = json.loads(index.read_text())
    data["weight_map"]["extra.weight"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"1 tensors named in the index are in no shard: extra\.weight"):
        load_checkpoint(index)


def test_tied_names_in_a_torch_file_are_recorded(tmp_path: Path) -> None:
    shared = torch.randn(4, 3)
    path = save_torch({"embed.weight": shared, "decoder.weight": shared, "bias": torch.zeros(4)}, tmp_path / "w.pt")
    ckpt = load_checkpoint(path)
    assert ckpt.info.aliases == (("decoder.weight", "embed.weight"),)
    assert ckpt.info.to_json()["aliases"] == [["decoder.weight", "embed.weight"]]
    report = describe(ckpt)
    assert report["totals"] == {"tensors": 3, "elements": 16, "bytes": 64}  # the shared tensor counted once


def test_describe_lists_every_tensor(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = save_torch({"state_dict": wrapped(state, "module."), "epoch": 5, "interpscan": SPEC}, tmp_path / "w.pt")
    report = describe(load_checkpoint(path))
    assert report["format"] == "torch-zip"
    assert report["layout"] == "nested"
    assert report["container_key"] == "state_dict"
    assert report["prefixes"] == ["module."]
    assert report["metadata"] == {"epoch": 5, "interpscan": SPEC}
    assert report["own_forward"] is False
    assert report["tensors"][0] == {
        "name": "module.fc.weight",
        "shape": [3, 4],
        "dtype": "float32",
        "count": 12,
        "bytes": 48,
    }
    assert report["tensors"][2] == {
        "name": "module.bn.num_batches_tracked",
        "shape": [],
        "dtype": "int64",
        "count": 1,
        "bytes": 8,
    }
    assert report["totals"] == {"tensors": 4, "elements": 18, "bytes": 12 * 4 + 3 * 4 + 8 + 2 * 2}
    json.dumps(report)


# ------------------------------------------------------------------------- files that bring their own forward


def save_script(model: nn.Module, path: Path) -> Path:
    """torch.jit.script + torch.jit.save, which torch 2.13 deprecates (and tests turn warnings into errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(path))
    return path


class Small(nn.Module):
    """conv + BN + linear: enough structure for TorchScript and torch.export to keep names and buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))  # type: ignore[no-any-return]


def test_torchscript_archive(tmp_path: Path) -> None:
    model = Small().eval()
    path = tmp_path / "scripted.pt"
    save_script(model, path)
    assert detect_format(path) == "torchscript"
    ckpt = load_checkpoint(path)
    assert (ckpt.info.format, ckpt.info.layout, ckpt.info.metadata) == ("torchscript", "program", {"class": "Small"})
    assert_same_tensors(ckpt.tensors, model.state_dict())
    assert ckpt.module is not None
    x = torch.randn(2, 1, 5, 5)
    with torch.no_grad():
        assert torch.allclose(ckpt.module(x), model(x), **tol32())
    # the recorded tensors are the file's, not the module's working copies
    working = ckpt.module.state_dict()
    assert all(t.data_ptr() != working[k].data_ptr() for k, t in ckpt.tensors.items())


def test_export_program_with_a_fixed_batch_runs_any_batch(tmp_path: Path) -> None:
    model = Small().eval()
    path = tmp_path / "program.bin"
    torch.export.save(torch.export.export(model, (torch.randn(4, 1, 5, 5),)), str(path))
    assert detect_format(path) == "torch-export"
    ckpt = load_checkpoint(path)
    assert (ckpt.info.layout, ckpt.info.metadata) == ("program", {"static_batch": 4})
    assert_same_tensors(ckpt.tensors, model.state_dict())
    assert ckpt.module is not None
    ckpt.module.eval()  # exported graph modules refuse eval(); ours allows it
    x = torch.randn(7, 1, 5, 5)  # neither 4 nor a multiple of it
    with torch.no_grad():
        assert torch.allclose(ckpt.module(x), model(x), atol=1e-6)


def test_a_pickled_module_needs_unsafe_pickle(tmp_path: Path) -> None:
    model = Net()
    path = save_torch(model, tmp_path / "whole.pt")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(exc.value) == (
        f"{path}: refused to unpickle objects other than tensors and plain containers (it needs test_checkpoints.Net)"
    )
    assert exc.value.hint is not None
    assert "pass unsafe_pickle=True" in exc.value.hint
    assert "run code" in exc.value.hint
    ckpt = load_checkpoint(path, unsafe_pickle=True)
    assert ckpt.info.layout == "module"
    assert isinstance(ckpt.module, Net)
    assert_same_tensors(ckpt.tensors, model.state_dict())


def test_a_module_inside_a_dict(tmp_path: Path) -> None:
    model = Net()
    path = save_torch({"model": model, "epoch": 4}, tmp_path / "whole.pt")
    ckpt = load_checkpoint(path, unsafe_pickle=True)
    assert (ckpt.info.layout, ckpt.info.container_key, ckpt.info.ignored_keys) == ("module", "model", ("epoch",))
    assert isinstance(ckpt.module, Net)


def test_a_pickle_whose_class_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "gone.pt"
    # the pickle names a module that does not exist here
    buf = io.BytesIO()
    torch.save({"m": Pickled()}, buf, _use_new_zipfile_serialization=False)
    path.write_bytes(buf.getvalue().replace(b"test_checkpoints", b"no_such_module_x"))
    with pytest.raises(CheckpointError, match="needs Python code that cannot be imported here") as exc:
        load_checkpoint(path, unsafe_pickle=True)
    assert exc.value.hint is not None
    assert "PYTHONPATH" in exc.value.hint


def test_key_for_a_file_without_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    save_script(Small(), path)
    with pytest.raises(CheckpointError, match="key='ema' picks an entry of a pickled dict"):
        load_checkpoint(path, key="ema")


def test_a_shard_that_is_a_fifo(tmp_path: Path) -> None:
    save_file({"a": torch.ones(2)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    os.mkfifo(tmp_path / "model-00002-of-00002.safetensors")  # reading it would wait for a writer
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002\.safetensors is a named pipe \(FIFO\)"):
        load_checkpoint(tmp_path)


def test_recorded_metadata_nested_too_deep_to_decode_is_left_out(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"), metadata={"interpscan": "[" * 100_000})
    assert "interpscan" not in load_checkpoint(tmp_path / "w.safetensors").info.metadata

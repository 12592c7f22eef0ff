"""Every checkpoint layout users save, end to end: the same two networks written each way give the same curve.

Also the files that bring their own forward (TorchScript, torch.export, pickled modules) through both engine
strategies, tied weights, unsafe pickles, and the ``inspect`` and ``models`` commands.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from conftest import reference_curve, run_cli, run_cli_output, run_engine
from safetensors.torch import save_file, save_model
from torch import nn

from interpscan.api import ScanConfig, run_scan
from interpscan.checkpoints import load_checkpoint
from interpscan.data import Split
from interpscan.engine import Point
from interpscan.errors import CheckpointError, RunError, UsageError
from interpscan.models import CNN, build_model, parse_model_spec
from interpscan.train import save_checkpoint

ALPHAS = "0,0.25,0.5,0.75,1"
SPEC = parse_model_spec("cnn", {"in_channels": 1, "num_classes": 5, "width": 2, "bn": True})


def networks() -> tuple[CNN, CNN]:
    """θ_init and θ_final of a tiny zoo CNN with batch norm, with non-trivial running statistics."""
    torch.manual_seed(0)
    a, b = build_model(SPEC), build_model(SPEC)
    for m in (a, b):
        assert isinstance(m, CNN)
        for bn in (m.bn1, m.bn2):
            assert isinstance(bn, nn.BatchNorm2d)
            bn.running_mean.normal_(0, 0.2)  # type: ignore[operator]
            bn.running_var.uniform_(0.5, 1.5)  # type: ignore[operator]
    return a, b  # type: ignore[return-value]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """40 single-channel 8×8 images, 5 classes, one (test) split: every BN policy is 'interpolate' here."""
    gen = torch.Generator().manual_seed(1)
    path = tmp_path / "data.pt"
    torch.save({"x": torch.randn(40, 1, 8, 8, generator=gen), "y": torch.randint(0, 5, (40,), generator=gen)}, path)
    return path


def save_script(model: nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
        torch.jit.save(torch.jit.script(model), str(path))


def sharded(sd: dict[str, torch.Tensor], directory: Path) -> None:
    directory.mkdir()
    names = list(sd)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({n: sd[n].contiguous() for n in part}, str(directory / shard))
        weight_map.update(dict.fromkeys(part, shard))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def npz(sd: dict[str, torch.Tensor], path: Path) -> None:
    import numpy as np

    np.savez(path, **{k: v.numpy() for k, v in sd.items()})


def sd_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# name -> (writes one network to a path and returns what to pass, ScanConfig overrides)
Writer = Callable[[nn.Module, Path], Path]
LAYOUTS: dict[str, tuple[Writer, dict[str, Any]]] = {
    "plain state dict": (lambda m, p: _save(sd_of(m), p), {}),
    "legacy (non-zip) torch file": (lambda m, p: _save(sd_of(m), p, legacy=True), {}),
    "state_dict + optimizer": (lambda m, p: _save({"state_dict": sd_of(m), "optimizer": {"lr": 0.1}}, p), {}),
    "model_state_dict": (lambda m, p: _save({"model_state_dict": sd_of(m), "epoch": 3}, p), {}),
    "model": (lambda m, p: _save({"model": sd_of(m)}, p), {}),
    "module": (lambda m, p: _save({"module": sd_of(m)}, p), {}),
    "net": (lambda m, p: _save({"net": sd_of(m)}, p), {}),
    "DDP module. prefix": (lambda m, p: _save({f"module.{k}": v for k, v in sd_of(m).items()}, p), {}),
    "torch.compile inside DDP": (lambda m, p: _save({f"module._orig_mod.{k}": v for k, v in sd_of(m).items()}, p), {}),
    "Lightning": (
        lambda m, p: _save(
            {
                "epoch": 2,
                "global_step": 40,
                "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in sd_of(m).items()},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
                "lr_schedulers": [],
            },
            p.with_suffix(".ckpt"),
        ),
        {},
    ),
    "EMA weights with --key": (
        lambda m, p: _save({"state_dict": {k: v * 0 for k, v in sd_of(m).items()}, "model_ema": sd_of(m)}, p),
        {"key": "model_ema"},
    ),
    "safetensors": (lambda m, p: _save_st(sd_of(m), p.with_suffix(".safetensors")), {}),
    "safetensors named .pt": (lambda m, p: _save_st(sd_of(m), p), {}),
    "sharded safetensors directory": (lambda m, p: _shard(sd_of(m), p.with_suffix("")), {}),
    "npz": (lambda m, p: _npz(sd_of(m), p.with_suffix(".npz")), {}),
    "self-describing (interpscan.train)": (lambda m, p: _describe(m, p), {}),
    "TorchScript without --model": (lambda m, p: _script(m, p), {}),
    "torch.export without --model": (lambda m, p: _export(m, p.with_suffix(".pt2")), {}),
    "pickled module with --unsafe-pickle": (lambda m, p: _save(m, p), {"unsafe_pickle": True}),
}


def _save(obj: Any, path: Path, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def _save_st(sd: dict[str, torch.Tensor], path: Path) -> Path:
    save_file(sd, str(path))
    return path


def _shard(sd: dict[str, torch.Tensor], path: Path) -> Path:
    sharded(sd, path)
    return path


def _npz(sd: dict[str, torch.Tensor], path: Path) -> Path:
    npz(sd, path)
    return path


def _describe(model: nn.Module, path: Path) -> Path:
    save_checkpoint(model, path, SPEC)
    return path


def _script(model: nn.Module, path: Path) -> Path:
    save_script(model, path)
    return path


def _export(model: nn.Module, path: Path) -> Path:
    torch.export.save(torch.export.export(model, (torch.randn(3, 1, 8, 8),)), str(path))  # a fixed batch of 3
    return path


def scan(init: Path, final: Path, data: Path, **overrides: Any) -> Any:
    values = {"data": str(data), "alphas": ALPHAS, "batch_size": 16, **overrides}
    return run_scan(ScanConfig.from_values([init, final], values))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[float]:
    """The curve of the plain state dicts with --model given, evaluated on the same data."""
    tmp = tmp_path_factory.mktemp("reference")
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 1, 8, 8, generator=gen), torch.randint(0, 5, (40,), generator=gen)
    torch.save({"x": x, "y": y}, tmp / "data.pt")
    a, b = networks()
    init, final = _save(sd_of(a), tmp / "a.pt"), _save(sd_of(b), tmp / "b.pt")
    result = scan(init, final, tmp / "data.pt", model="cnn")
    # and that curve is the plain loop's: load_state_dict per point
    points = [float(v) for v in ALPHAS.split(",")]
    want = reference_curve(
        a, sd_of(a), sd_of(b), [dict.fromkeys(sd_of(a), t) for t in points], x, y, policy="interpolate"
    )
    assert result.results["loss"].tolist() == pytest.approx([w[0] for w in want], rel=1e-6)
    return list(result.results["loss"])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_gives_the_same_curve(tmp_path: Path, data: Path, reference: list[float], layout: str) -> None:
    write, overrides = LAYOUTS[layout]
    a, b = networks()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    init, final = write(a, tmp_path / "a" / "w.pt"), write(b, tmp_path / "b" / "w.pt")
    result = scan(init, final, data, **overrides)
    assert result.results["loss"].tolist() == reference  # bit for bit: the same tensors, the same arithmetic
    manifest = result.manifest
    assert manifest["model"]["source"] in ("detected", "recorded", "checkpoint")
    assert manifest["bn"]["policy"] == "interpolate"
    assert manifest["checkpoints"]["final"]["tensor_count"] == 14


def test_what_run_json_says_about_each_layout(tmp_path: Path, data: Path) -> None:
    a, b = networks()
    init = _save({f"module.{k}": v for k, v in sd_of(a).items()}, tmp_path / "a.pt")
    final = LAYOUTS["Lightning"][0](b, tmp_path / "b.pt")
    m = scan(init, final, data).manifest
    assert m["model"]["source"] == "detected"
    assert m["model"]["spec"] == "cnn"
    assert m["model"]["args"] == {"bn": True, "in_channels": 1, "num_classes": 5, "width": 2}
    assert m["model"]["origin"].startswith("detected: the only zoo model with the final checkpoint's 14 names")
    final_info = m["checkpoints"]["final"]
    assert (final_info["format"], final_info["layout"], final_info["container_key"]) == (
        "torch-zip",
        "lightning",
        "state_dict",
    )
    assert final_info["prefixes_stripped"] == ["model."]
    assert m["checkpoints"]["init"]["prefixes_stripped"] == ["module."]
    assert m["weights"] == {
        "key": None,
        "strict": True,
        "unsafe_pickle": False,
        "batched_obstacle": None,
        "tied": [],
        "filled": {},
        "ignored": {},
        "dtypes": {
            "init": {"float32": 12, "int64": 2},
            "final": {"float32": 12, "int64": 2},
            "model": {"float32": 12, "int64": 2},
            "interpolated_in": "float32",
            "integers_from": "final",
        },
    }


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoints_are_interpolated_in_float32(tmp_path: Path, data: Path, dtype: torch.dtype) -> None:
    a, b = networks()
    half = [{k: v.to(dtype) if v.is_floating_point() else v for k, v in sd_of(m).items()} for m in (a, b)]
    init, final = _save(half[0], tmp_path / "a.pt"), _save(half[1], tmp_path / "b.pt")
    # the same values held in float32: upcasting is exact, so the curves agree to the bit
    up = [{k: v.float() if v.is_floating_point() else v for k, v in h.items()} for h in half]
    init32, final32 = _save(up[0], tmp_path / "a32.pt"), _save(up[1], tmp_path / "b32.pt")
    got, want = scan(init, final, data), scan(init32, final32, data)
    assert got.results["loss"].tolist() == want.results["loss"].tolist()
    name = str(dtype).removeprefix("torch.")
    assert got.manifest["checkpoints"]["final"]["dtypes"] == {name: 12, "int64": 2}
    assert got.manifest["weights"]["dtypes"]["final"] == {name: 12, "int64": 2}
    assert got.manifest["weights"]["dtypes"]["model"] == {"float32": 12, "int64": 2}
    assert got.manifest["weights"]["dtypes"]["interpolated_in"] == "float32"


def test_a_half_precision_torchscript_archive_is_evaluated_in_float32(tmp_path: Path, data: Path) -> None:
    a, b = networks()
    save_script(a.half(), tmp_path / "a.pt")
    save_script(b.half(), tmp_path / "b.pt")
    result = scan(tmp_path / "a.pt", tmp_path / "b.pt", data)
    assert result.manifest["weights"]["dtypes"]["model"] == {"float32": 12, "int64": 2}
    assert result.results["loss"].notna().all()


# ---------------------------------------------------------------------- own forward through both strategies


def split_of(data: Path) -> Split:
    obj = torch.load(data, weights_only=True)
    return Split("test", obj["x"], obj["y"], None)


@pytest.mark.parametrize("strategy", ["sequential", "batched"])
def test_an_exported_program_through_both_strategies(tmp_path: Path, data: Path, strategy: str) -> None:
    a, b = networks()
    init, final = load_checkpoint(_export(a, tmp_path / "a.pt2")), load_checkpoint(_export(b, tmp_path / "b.pt2"))
    assert final.module is not None
    points = [Point("all", t) for t in (0.0, 0.3, 1.0, 1.5)]
    split = split_of(data)
    results, _ = run_engine(
        final.module, init.tensors, final.tensors, points, [split], strategy=strategy, batch_size=16
    )
    want = reference_curve(
        a,
        sd_of(a),
        sd_of(b),
        [dict.fromkeys(init.tensors, p.alpha) for p in points],
        split.inputs,
        split.targets,
        policy="interpolate",
        batch_size=16,
    )
    assert [r.loss for r in results] == pytest.approx([w[0] for w in want], rel=1e-5)
    assert [r.accuracy for r in results] == [w[2] for w in want]


def test_a_torchscript_archive_through_both_strategies(tmp_path: Path, data: Path) -> None:
    a, b = networks()
    save_script(a, tmp_path / "a.pt")
    save_script(b, tmp_path / "b.pt")
    init, final = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert final.module is not None
    points = [Point("all", t) for t in (0.0, 0.3, 1.0, 1.5)]
    split = split_of(data)
    results, _ = run_engine(
        final.module, init.tensors, final.tensors, points, [split], strategy="sequential", batch_size=16
    )
    want = reference_curve(
        a,
        sd_of(a),
        sd_of(b),
        [dict.fromkeys(init.tensors, p.alpha) for p in points],
        split.inputs,
        split.targets,
        policy="interpolate",
        batch_size=16,
    )
    assert [r.loss for r in results] == pytest.approx([w[0] for w in want], rel=1e-5)
    # the module that came with the file is never written to
    assert all(torch.equal(final.module.state_dict()[k], v) for k, v in final.tensors.items())
    # torch.func cannot swap a ScriptModule's weights: the engine fails, run_scan says why before any compute
    with pytest.raises(RunError, match="stateless API can't be used with Jitted modules"):
        run_engine(final.module, init.tensors, final.tensors, points, [split], strategy="batched")
    with pytest.raises(UsageError) as exc:
        scan(tmp_path / "a.pt", tmp_path / "b.pt", data, strategy="batched")
    assert str(exc.value) == "strategy='batched': torch.func cannot swap a TorchScript module's weights"
    assert exc.value.hint == "use strategy='sequential' (the same numbers)"


def test_a_program_fixes_its_batch_norm_policy(tmp_path: Path, data: Path) -> None:
    a, b = networks()
    save_script(a, tmp_path / "a.pt")
    save_script(b, tmp_path / "b.pt")
    auto = scan(tmp_path / "a.pt", tmp_path / "b.pt", data)
    assert auto.manifest["bn"]["policy"] == "interpolate"
    assert auto.manifest["bn"]["reason"] == (
        "the TorchScript archive's own forward fixes how batch norm runs; its statistics are interpolated"
    )
    with pytest.raises(UsageError, match=r"^bn='batch' needs to switch batch norm's mode"):
        scan(tmp_path / "a.pt", tmp_path / "b.pt", data, bn="batch")


def test_a_pickled_module_supplies_its_forward_and_every_bn_policy(tmp_path: Path, data: Path) -> None:
    a, b = networks()
    init, final = _save(a, tmp_path / "a.pt"), _save(b, tmp_path / "b.pt")
    result = scan(init, final, data, unsafe_pickle=True, bn="batch", strategy="batched")
    assert result.manifest["model"]["kind"] == "pickle"
    assert result.manifest["model"]["source"] == "checkpoint"
    assert result.manifest["bn"]["policy"] == "batch"


# ------------------------------------------------------------------------------------------ tied weights


class TiedNet(nn.Module):
    """Encoder and decoder sharing one weight matrix (as a language model ties embedding and output)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 6)
        self.mid = nn.Linear(6, 6)
        self.dec = nn.Linear(6, 6)
        self.dec.weight = self.enc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.tanh(self.mid(torch.tanh(self.enc(x.flatten(1))))))  # type: ignore[no-any-return]


def tied_net() -> TiedNet:
    return TiedNet()


def tied_states() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    return TiedNet().state_dict(), TiedNet().state_dict()


@pytest.fixture
def tied_data(tmp_path: Path) -> Path:
    gen = torch.Generator().manual_seed(2)
    path = tmp_path / "tied-data.pt"
    torch.save({"x": torch.randn(30, 6, generator=gen), "y": torch.randint(0, 6, (30,), generator=gen)}, path)
    return path


@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
def test_tied_weights_move_once_and_stay_tied(tmp_path: Path, tied_data: Path, fmt: str) -> None:
    a, b = tied_states()
    paths = []
    for name, sd in (("a", a), ("b", b)):
        model = TiedNet()
        model.load_state_dict(sd)
        if fmt == "torch":
            paths.append(_save(sd, tmp_path / f"{name}.pt"))  # the shared tensor is stored once, under two names
        else:
            save_model(model, str(tmp_path / f"{name}.safetensors"))  # drops the duplicate name
            paths.append(tmp_path / f"{name}.safetensors")
    result = scan(paths[0], paths[1], tied_data, model="test_formats:tied_net")
    split = split_of(tied_data)
    points = [float(v) for v in ALPHAS.split(",")]
    want = reference_curve(
        TiedNet(),
        a,
        b,
        [dict.fromkeys(a, t) for t in points],
        split.inputs,
        split.targets,
        policy="interpolate",
        batch_size=16,
    )
    assert result.results["loss"].tolist() == pytest.approx([w[0] for w in want], rel=1e-6)
    weights = result.manifest["weights"]
    assert weights["tied"] == [["enc.weight", "dec.weight"]]
    if fmt == "safetensors":
        # save_model keeps one of the two names; the other takes its value
        kept = sorted(load_checkpoint(paths[1]).tensors.keys() & {"enc.weight", "dec.weight"})
        assert len(kept) == 1
        other = ({"enc.weight", "dec.weight"} - set(kept)).pop()
        assert weights["filled"] == {label: {other: f"tied to {kept[0]}"} for label in ("init", "final")}
    # distances count the shared matrix once: named_parameters() lists it once
    summary = result.summary.iloc[0]
    diff = torch.cat(
        [(b[k] - a[k]).flatten() for k in ("enc.weight", "enc.bias", "mid.weight", "mid.bias", "dec.bias")]
    )
    assert summary["distance"] == pytest.approx(float(diff.norm()), rel=1e-6)
    batched = scan(paths[0], paths[1], tied_data, model="test_formats:tied_net", strategy="batched")
    assert batched.results["loss"].tolist() == pytest.approx([w[0] for w in want], rel=1e-6)


def test_a_group_that_splits_a_tied_tensor_is_refused(tmp_path: Path, tied_data: Path) -> None:
    a, b = tied_states()
    init, final = _save(a, tmp_path / "a.pt"), _save(b, tmp_path / "b.pt")
    with pytest.raises(UsageError) as exc:
        scan(init, final, tied_data, model="test_formats:tied_net", groups=("dec",))
    assert str(exc.value) == "groups: group dec holds dec.weight but not enc.weight, one tensor in the model"
    both = scan(init, final, tied_data, model="test_formats:tied_net", groups=("tied=enc,dec",))
    assert set(both.results["curve"]) == {"all", "tied"}


def test_engine_batched_strategy_with_tied_weights(tied_data: Path) -> None:
    a, b = tied_states()
    split = split_of(tied_data)
    points = [Point("all", a_) for a_ in (0.0, 0.5, 1.0)]
    batched, _ = run_engine(TiedNet(), a, b, points, [split], strategy="batched")
    sequential, _ = run_engine(TiedNet(), a, b, points, [split], strategy="sequential")
    for x, y in zip(batched, sequential, strict=True):
        assert x.loss == pytest.approx(y.loss, rel=1e-6)


@pytest.mark.parametrize("strategy", ["sequential", "batched"])
def test_engine_moves_a_tied_tensor_whichever_name_a_point_names(strategy: str, tied_data: Path) -> None:
    a, b = tied_states()
    split = split_of(tied_data)
    by_enc, by_dec = (Point(n, 0.0, frozenset({n}), 1.0) for n in ("enc.weight", "dec.weight"))
    results, _ = run_engine(TiedNet(), a, b, [by_enc, by_dec], [split], strategy=strategy)
    assert results[0].loss == results[1].loss
    # the reference: the tied matrix at its initial value under both names, everything else final
    ref = TiedNet().eval()
    ref.load_state_dict({**b, "enc.weight": a["enc.weight"], "dec.weight": a["enc.weight"]})
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(ref(split.inputs), split.targets)
    assert results[0].loss == pytest.approx(float(expected), rel=1e-5)


# -------------------------------------------------------------------------------------- unsafe pickles


class CreatesDirectory:
    """Unpickling this calls os.mkdir: a stand-in for whatever code a malicious checkpoint runs."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.target),))


def test_a_pickle_that_would_run_code_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path
) -> None:
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(CreatesDirectory(control)))  # the payload is real
    assert control.is_dir()
    target = tmp_path / "pwned"
    a, _ = networks()
    _save({"state_dict": sd_of(a), "hook": CreatesDirectory(target)}, tmp_path / "evil.pt")
    code, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        str(tmp_path / "evil.pt"),
        str(tmp_path / "evil.pt"),
        "--data",
        str(data),
        "-o",
        str(tmp_path / "o"),
    )
    assert code == 2
    assert not target.exists()
    assert err.startswith(
        f"error: {tmp_path / 'evil.pt'}: refused to unpickle objects other than tensors and plain containers "
        "(it needs posix.mkdir)"
    )
    assert "--unsafe-pickle" in err
    assert "run code" in err
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    assert not target.exists()


# ------------------------------------------------------------------------------------------ the CLI


def test_run_without_model_prints_and_records_the_detected_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path
) -> None:
    a, b = networks()
    init, final = _save(sd_of(a), tmp_path / "init.pt"), _save(sd_of(b), tmp_path / "final.pt")
    code, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        str(init),
        str(final),
        "--data",
        str(data),
        "--alphas",
        "3",
        "-o",
        str(tmp_path / "o"),
        "--no-html",
    )
    assert code == 0, err
    assert (
        "model cnn (detected: the only zoo model with the final checkpoint's 14 names and shapes; "
        "bn=True, in_channels=1, num_classes=5, width=2)" in err.replace("\n", " ")
    )
    manifest = json.loads((tmp_path / "o" / "run.json").read_text())
    assert manifest["model"]["source"] == "detected"


def test_run_flags_key_strict_and_unsafe_pickle(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path
) -> None:
    a, b = networks()
    init = _save({"state_dict": sd_of(a), "ema": {**sd_of(a), "extra": torch.zeros(1)}}, tmp_path / "a.pt")
    final = _save({"state_dict": sd_of(b), "ema": {**sd_of(b), "extra": torch.zeros(1)}}, tmp_path / "b.pt")
    common = ["--data", str(data), "--alphas", "3", "--model", "cnn", "--no-html"]
    code, err = run_cli(
        monkeypatch, capsys, "run", str(init), str(final), *common, "--key", "ema", "-o", str(tmp_path / "o1")
    )
    assert code == 2
    assert "init: unexpected extra [1]" in err
    assert "--no-strict tolerates missing and unexpected tensors" in err
    code, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        str(init),
        str(final),
        *common,
        "--key",
        "ema",
        "--no-strict",
        "-o",
        str(tmp_path / "o2"),
    )
    assert code == 0, err
    assert "init: ignored 1 tensors the model lacks (--no-strict; listed in run.json)" in err
    weights = json.loads((tmp_path / "o2" / "run.json").read_text())["weights"]
    assert (weights["key"], weights["strict"], weights["ignored"]) == (
        "ema",
        False,
        {"init": ["extra"], "final": ["extra"]},
    )
    _save(a, tmp_path / "whole_a.pt")
    _save(b, tmp_path / "whole_b.pt")
    whole = [str(tmp_path / "whole_a.pt"), str(tmp_path / "whole_b.pt")]
    code, err = run_cli(monkeypatch, capsys, "run", *whole, "--data", str(data), "-o", str(tmp_path / "o3"))
    assert code == 2
    assert "pass --unsafe-pickle" in err
    code, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        *whole,
        "--data",
        str(data),
        "--alphas",
        "3",
        "--unsafe-pickle",
        "-o",
        str(tmp_path / "o3"),
    )
    assert code == 0, err
    assert "the forward the pickled module carries" in err.replace("\n", " ")


def test_inspect(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, b = networks()
    path = LAYOUTS["Lightning"][0](b, tmp_path / "b.pt")
    code, out, err = run_cli_output(monkeypatch, capsys, "inspect", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:6] == [
        "format:            torch-zip",
        "layout:            lightning",
        "container key:     state_dict",
        "wrapper prefixes:  model.",
        "model:             cnn (detected: width=2, in_channels=1, bn=True, num_classes=5)",
        "ignored entries:   epoch, global_step, lr_schedulers, optimizer_states, pytorch-lightning_version",
    ]
    assert lines[6] == "metadata:          epoch=2, global_step=40, pytorch-lightning_version=2.4.0"
    table = "\n".join(lines)
    assert "model.fc.weight" in table
    assert "5×64" in table
    assert "14 tensors" in table
    code, out, _ = run_cli_output(monkeypatch, capsys, "inspect", str(path), "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["model"] == {
        "source": "detected",
        "model": "cnn",
        "args": {"width": 2, "in_channels": 1, "bn": True, "num_classes": 5},
        "code": False,
    }
    assert report["totals"]["tensors"] == 14
    assert report["totals"]["elements"] == sum(v.numel() for v in b.state_dict().values())
    assert report["tensors"][-2] == {
        "name": "model.fc.weight",
        "shape": [5, 64],
        "dtype": "float32",
        "count": 320,
        "bytes": 1280,
    }


def test_inspect_a_file_that_matches_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "w.pt")
    code, out, _ = run_cli_output(monkeypatch, capsys, "inspect", str(tmp_path / "w.pt"))
    assert code == 0
    assert "model:             none recorded or matched" in out
    code, _, err = run_cli_output(monkeypatch, capsys, "inspect", str(tmp_path / "w.pt"), "--format", "csv")
    assert code == 2
    assert "--format 'csv' is not table or json" in err


def test_models_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli_output(monkeypatch, capsys, "models")
    assert code == 0, err
    for name in ("mlp", "cnn", "resnet20", "resnet18", "resnet34", "resnet50", "vgg11", "vgg16"):
        assert f" {name} " in out
    assert "11,173,962" in out  # resnet18
    assert "torchvision:NAME builds torchvision's models" in err
    code, out, _ = run_cli_output(monkeypatch, capsys, "models", "vgg*", "--format", "json")
    assert code == 0
    listing = json.loads(out)
    assert [r["name"] for r in listing["zoo"]] == ["vgg11", "vgg16"]
    assert set(listing["packages"]) == {"torchvision", "timm"}
    code, _, err = run_cli_output(monkeypatch, capsys, "models", "transformer")
    assert code == 2
    assert "no zoo model matches 'transformer'" in err


def test_results_table_stays_tidy(tmp_path: Path, data: Path) -> None:
    a, b = networks()
    result = scan(_script(a, tmp_path / "a.pt"), _script(b, tmp_path / "b.pt"), data)
    assert isinstance(result.results, pd.DataFrame)
    assert result.results["alpha"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]

"""Checkpoints as timm, torchvision, Lightning and accelerate save them.

Lightning and accelerate are the real libraries (pure Python). timm needs torchvision, and torchvision's PyPI wheel
is a CUDA build that does not import with the CPU torch here: their checkpoint *layouts* are tested with stand-ins,
a timm training checkpoint written the way timm's train.py writes it (``arch``, ``args`` as an
``argparse.Namespace``, ``state_dict``, ``state_dict_ema``) and a hand-written replica of torchvision's resnet18
(its exact names and shapes) served as ``torchvision.models``.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from interpscan import scan
from interpscan.checkpoints import load_checkpoint
from interpscan.errors import CheckpointError, ModelError
from interpscan.models import build_model, parse_model_spec, resolve_model
from interpscan.models.spec import inferred_args
from tests.conftest import run_cli, run_cli_output

# ------------------------------------------------------------------------------- torchvision's resnet18


class _Block(nn.Module):
    """torchvision's BasicBlock: names and shapes as torchvision.models.resnet writes them."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """A replica of torchvision.models.resnet18's layout (62 parameters and buffers groups, 122 tensors)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [64, 128, 256, 512]
        for i, w in enumerate(widths):
            cin = widths[i - 1] if i else 64
            layer = nn.Sequential(_Block(cin, w, 1 if i == 0 else 2), _Block(w, w, 1))
            setattr(self, f"layer{i + 1}", layer)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # type: ignore[no-any-return]


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torchvision.models`` as interpscan calls it: list_models() and get_model(name, weights=None, ...)."""

    def get_model(name: str, *, weights: Any = None, **kwargs: Any) -> nn.Module:
        assert name == "resnet18"
        assert weights is None
        return ResNet18(**kwargs)

    package = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    models.list_models = lambda: ["resnet18"]  # type: ignore[attr-defined]
    models.get_model = get_model  # type: ignore[attr-defined]
    package.models = models  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)


def _grey_resnet(seed: int) -> nn.Module:
    """What a user fine-tuning resnet18 on 10 grey classes saves: the stem rebuilt for 1 channel, a new fc."""
    torch.manual_seed(seed)
    model = ResNet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    return model.eval()


def test_replica_has_torchvision_resnet18s_tensor_count() -> None:
    # torchvision's resnet18 state dict: 62 parameters + 60 batch-norm buffers
    assert len(ResNet18().state_dict()) == 122
    assert sum(p.numel() for p in ResNet18().parameters()) == 11_689_512  # torchvision's documented count


def test_exact_torchvision_layout_is_suggested_not_the_zoo_resnet18(
    fake_torchvision: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save(_grey_resnet(0).state_dict(), tmp_path / "final.pt")
    torch.save(_grey_resnet(1).state_dict(), tmp_path / "init.pt")
    ckpt = load_checkpoint(tmp_path / "final.pt")
    with pytest.raises(ModelError) as exc:
        resolve_model(None, {}, ckpt, ckpt)
    assert "has exactly the layout of resnet18" in str(exc.value)
    assert str(exc.value.hint).startswith("pass model='torchvision:resnet18'")
    code, out, _ = run_cli_output(monkeypatch, capsys, "inspect", str(tmp_path / "final.pt"))
    assert code == 0
    assert "try --model torchvision:resnet18" in out


def test_torchvision_model_takes_classes_and_input_channels_from_the_checkpoint(fake_torchvision: None) -> None:
    final, init = _grey_resnet(0), _grey_resnet(1)
    spec = parse_model_spec("torchvision:resnet18")
    assert inferred_args(spec, final.state_dict()) == {"num_classes": 10, "in_channels": 1}
    x = torch.randn(6, 1, 32, 32)
    y = torch.randint(0, 10, (6,))
    result = scan("torchvision:resnet18", init.state_dict(), final.state_dict(), (x, y), alphas=2, bootstrap=0)
    with torch.no_grad():
        expected = float(F.cross_entropy(final(x), y))
    assert float(result.results.set_index("alpha").loc[1.0, "loss"]) == pytest.approx(expected, abs=1e-5)
    assert result.manifest["model"]["args"] == {"num_classes": 10, "in_channels": 1}


def test_a_torchvision_that_fails_to_import_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's PyPI wheel raises RuntimeError ("operator torchvision::nms does not exist") with this torch."""
    import importlib

    real = importlib.import_module

    def broken(name: str, *args: Any) -> Any:
        if name.startswith("torchvision"):
            raise RuntimeError("operator torchvision::nms does not exist\n(more C++ lines)")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModelError, match="installed but fails to import: RuntimeError: operator") as exc:
        build_model(parse_model_spec("torchvision:resnet18"))
    assert "\n" not in str(exc.value)
    assert "reinstall torchvision" in str(exc.value.hint)


# --------------------------------------------------------------------------------------------- timm


class _TimmNet(nn.Module):
    """A stand-in for a timm model: ``in_chans`` and ``num_classes`` as timm's create_model takes them."""

    def __init__(self, in_chans: int = 3, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(in_chans, 8, 3, 2, 1)
        self.bn1 = nn.BatchNorm2d(8)
        self.classifier = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.relu(self.bn1(self.conv_stem(x))).mean((2, 3)))  # type: ignore[no-any-return]


@pytest.fixture
def fake_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("timm")
    module.list_models = lambda: ["tinynet_stub"]  # type: ignore[attr-defined]

    def create_model(name: str, *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        assert name == "tinynet_stub"
        assert not pretrained
        return _TimmNet(**kwargs)

    module.create_model = create_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "timm", module)


def _timm_checkpoint(path: Path, model: nn.Module, ema: nn.Module, epoch: int) -> Path:
    """What timm's train.py (CheckpointSaver) writes: arch, args as a Namespace, the weights, the EMA, metric."""
    args = argparse.Namespace(model="tinynet_stub", lr=0.1, epochs=3, model_ema=True, data_dir="/data")
    torch.save(
        {
            "epoch": epoch,
            "arch": "tinynet_stub",
            "state_dict": model.state_dict(),
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.1).state_dict(),
            "version": 2,
            "args": args,
            "state_dict_ema": ema.state_dict(),
            "metric": 0.5,
        },
        path,
    )
    return path


@pytest.fixture
def timm_run(tmp_path: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    nets = {name: _TimmNet(in_chans=1, num_classes=4).eval() for name in ("a", "b", "ema_a", "ema_b")}
    init = _timm_checkpoint(tmp_path / "checkpoint-0.pth.tar", nets["a"], nets["ema_a"], 0)
    final = _timm_checkpoint(tmp_path / "checkpoint-2.pth.tar", nets["b"], nets["ema_b"], 2)
    x, y = torch.randn(10, 1, 8, 8), torch.randint(0, 4, (10,))
    torch.save({"x": x, "y": y}, tmp_path / "data.pt")
    return {"init": init, "final": final, "x": x, "y": y, **nets}


def test_timm_training_checkpoint_loads_without_unsafe_pickle(timm_run: dict[str, Any]) -> None:
    ckpt = load_checkpoint(timm_run["final"])
    assert ckpt.info.container_key == "state_dict"
    assert "args" in ckpt.info.ignored_keys
    assert ckpt.info.metadata["arch"] == "tinynet_stub"
    assert ckpt.info.averaged == ("state_dict_ema",)
    assert ckpt.info.weights == "live"
    assert torch.equal(ckpt.tensors["classifier.weight"], timm_run["b"].classifier.weight)
    ema = load_checkpoint(timm_run["final"], key="state_dict_ema")
    assert ema.info.weights == "averaged"
    assert torch.equal(ema.tensors["classifier.weight"], timm_run["ema_b"].classifier.weight)


class _TrainConfig:
    """A class of the training script's own, which unpickling would import (and so run its module's code)."""

    lr = 0.1


def test_a_pickle_naming_other_code_is_still_refused(tmp_path: Path) -> None:
    """Allowing argparse.Namespace opens nothing else: a file naming another class still needs --unsafe-pickle."""
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": _TrainConfig()}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"refused to unpickle .* needs test_hub._TrainConfig"):
        load_checkpoint(tmp_path / "bad.pt")


def test_timm_arch_is_suggested_and_its_shapes_fill_in_chans_and_classes(
    fake_timm: None, timm_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(monkeypatch, capsys, "run", str(timm_run["init"]), str(timm_run["final"]), "--data", "x.pt")
    assert code == 2
    assert "records timm's architecture tinynet_stub" in err
    assert "pass --model timm:tinynet_stub" in err
    final = load_checkpoint(timm_run["final"])
    assert inferred_args(parse_model_spec("timm:tinynet_stub"), final.tensors) == {"num_classes": 4, "in_chans": 1}
    x, y = timm_run["x"], timm_run["y"]
    result = scan("timm:tinynet_stub", timm_run["init"], timm_run["final"], (x, y), alphas=2, bootstrap=0)
    with torch.no_grad():
        expected = float(F.cross_entropy(timm_run["b"](x), y))
    assert float(result.results.set_index("alpha").loc[1.0, "loss"]) == pytest.approx(expected, abs=1e-6)
    assert result.manifest["checkpoints"]["final"]["weights"] == "live"


def test_inspect_says_which_weights_are_averaged(
    timm_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli_output(monkeypatch, capsys, "inspect", str(timm_run["final"]))
    assert code == 0
    assert "weights read:      live (trained)" in out
    assert "state_dict_ema (averaged, EMA) (pick with --key)" in out


# ---------------------------------------------------------------------------------------- Lightning


def _lightning_fit(root: Path, callbacks: Callable[[], list[Any]]) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """A few steps of a real Lightning Trainer; its ModelCheckpoint's file, and the data."""
    lightning = pytest.importorskip("lightning")

    class Module(lightning.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.5)

    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    saver = lightning.pytorch.callbacks.ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=6)
    trainer = lightning.Trainer(
        max_steps=6,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        callbacks=[*callbacks(), saver],
        accelerator="cpu",
        default_root_dir=root,
    )
    module = Module()
    torch.save(module.net.state_dict(), root / "init.pt")
    trainer.fit(module, loader)
    return next((root / "ckpt").glob("*.ckpt")), x, y


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning")
def test_lightning_ema_callback_checkpoint_scans_the_live_weights_unless_picked(tmp_path: Path) -> None:
    lightning = pytest.importorskip("lightning")
    path, x, y = _lightning_fit(tmp_path, lambda: [lightning.pytorch.callbacks.EMAWeightAveraging(decay=0.5)])
    raw = torch.load(path, weights_only=True)
    live_sd, avg_sd = raw["current_model_state"], raw["state_dict"]
    assert not torch.equal(live_sd["net.0.weight"], avg_sd["net.0.weight"])
    ckpt = load_checkpoint(path)
    assert ckpt.info.container_key == "current_model_state"
    assert ckpt.info.weights == "live"
    assert ckpt.info.averaged == ("state_dict",)
    assert ckpt.info.layout == "lightning"
    assert torch.equal(ckpt.tensors["net.0.weight"], live_sd["net.0.weight"])
    picked = load_checkpoint(path, key="state_dict")
    assert picked.info.weights == "averaged"

    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    for state, key in ((live_sd, None), (avg_sd, "state_dict")):
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
        with torch.no_grad():
            expected = float(F.cross_entropy(net(x), y))
        result = scan(net, tmp_path / "init.pt", path if key is None else load_checkpoint(path, key=key), (x, y),
                      alphas=2, bootstrap=0)  # fmt: skip
        assert float(result.results.set_index("alpha").loc[1.0, "loss"]) == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------------------- accelerate


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning")
@pytest.mark.parametrize(("safe", "weights"), [(False, "pytorch_model.bin"), (True, "model.safetensors")])
def test_accelerate_state_directory_picks_the_model_file(tmp_path: Path, safe: bool, weights: str) -> None:
    accelerate = pytest.importorskip("accelerate")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    acc = accelerate.Accelerator(cpu=True)
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    acc.save_state(str(tmp_path / "state"), safe_serialization=safe)
    names = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert {weights, "optimizer.bin", "scheduler.bin"} <= set(names)
    ckpt = load_checkpoint(tmp_path / "state")
    assert Path(ckpt.info.path).name == "state"
    assert ckpt.info.format == ("safetensors" if safe else "torch-zip")
    assert set(ckpt.tensors) == set(model.state_dict())
    assert torch.equal(ckpt.tensors["0.weight"], model.state_dict()["0.weight"])


def test_a_directory_with_two_models_is_still_ambiguous(tmp_path: Path) -> None:
    for name in ("pytorch_model.bin", "pytorch_model_1.bin", "optimizer.bin"):
        torch.save({"w": torch.zeros(1)}, tmp_path / name)
    with pytest.raises(CheckpointError, match="2 candidate checkpoint files"):
        load_checkpoint(tmp_path)


def test_run_json_records_which_weights_were_read(
    timm_run: dict[str, Any], fake_timm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "run"
    code, err = run_cli(
        monkeypatch, capsys, "run", str(timm_run["init"]), str(timm_run["final"]), "--model", "timm:tinynet_stub",
        "--data", str(tmp_path / "data.pt"), "--key", "state_dict_ema", "--alphas", "2", "--out", str(out),
        "--no-html", "--bootstrap", "0",
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["checkpoints"]["final"]["weights"] == "averaged"

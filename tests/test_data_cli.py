"""``interpscan run`` with each data source and loss, end to end: named datasets from their files (and failing in
one line offline), factories, tensor files with --data-keys, regression and custom losses."""

from __future__ import annotations

import json
import math
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli
from test_data import fake_cifar

from interpscan import data
from interpscan.models import build_model, parse_model_spec

Paths = tuple[Path, Path]


def save_pair(tmp_path: Path, model: str, **args: Any) -> Paths:
    spec = parse_model_spec(model, args)
    torch.manual_seed(0)
    a, b = build_model(spec), build_model(spec)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    torch.save(b.state_dict(), tmp_path / "b.pt")
    return tmp_path / "a.pt", tmp_path / "b.pt"


@pytest.fixture
def mlp(tmp_path: Path) -> Paths:
    """An MLP from 6 features to 2 outputs: a 2-class classifier or a 2-value regressor."""
    return save_pair(tmp_path, "mlp", in_features=6, width=8, depth=1, num_classes=2)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No network, as on a machine without internet: every URL fails to resolve. Returns the URLs tried."""
    tried: list[str] = []

    def urlopen(request: Any, *args: object, **kwargs: object) -> None:
        tried.append(request.full_url)
        raise URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    return tried


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    return run_cli(monkeypatch, capsys, "run", *args, "--alphas", "3", "--quiet", "--no-html")


# ---------------------------------------------------------------------------------------- named datasets


def test_cifar10_offline_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, offline: list[str]
) -> None:
    a, b = save_pair(tmp_path, "cnn", width=4, in_channels=3)
    root = tmp_path / "empty"
    root.mkdir()
    out = tmp_path / "out"
    code, err = run_cli(
        monkeypatch, capsys, "run", str(a), str(b), "--model", "cnn", "--data", "cifar10", "--data-root", str(root),
        "--out", str(out),
    )  # fmt: skip
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert code == 1
    assert err.splitlines() == [
        f"error: CIFAR-10 not found under --data-root {root} and the download failed: {url}: "
        "Temporary failure in name resolution",
        f"hint: without network access, put cifar-10-python.tar.gz ({url}, md5 c58f30108f718f92721af3b95e74349a) "
        f"or its extracted cifar-10-batches-py/ folder in {root}",
    ]
    assert offline == [url]
    assert list(root.iterdir()) == []  # nothing half-written
    assert not out.exists()


def test_offline_default_cache_stays_empty(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, offline: list[str]
) -> None:
    a, b = save_pair(tmp_path, "cnn", width=4)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, err = run(monkeypatch, capsys, str(a), str(b), "--model", "cnn", "--data", "mnist", "-o", str(tmp_path / "o"))
    assert code == 1
    assert len(err.splitlines()) == 2
    assert err.startswith(f"error: MNIST not found in {tmp_path / 'cache' / 'interpscan'} and the download failed: ")
    assert offline == [
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz",
    ]
    assert not (tmp_path / "cache").exists()


def test_no_download_does_not_touch_the_network(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, offline: list[str]
) -> None:
    a, b = save_pair(tmp_path, "cnn", width=4, in_channels=3, num_classes=100)
    code, err = run(
        monkeypatch, capsys, str(a), str(b), "--model", "cnn", "--data", "cifar100", "--no-download",
        "--data-root", str(tmp_path / "root"), "-o", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 2
    assert err.startswith(f"error: CIFAR-100 not found under --data-root {tmp_path / 'root'} (looked in ")
    assert "and --no-download is set\nhint: drop --no-download to fetch it (161 MiB), or put cifar-100-python" in err
    assert offline == []
    assert not (tmp_path / "root").exists()


def test_cifar10_from_its_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a, b = save_pair(tmp_path, "cnn", width=4, in_channels=3)
    written = fake_cifar(tmp_path / "root" / "cifar-10-batches-py")
    out = tmp_path / "out"
    code, err = run(
        monkeypatch, capsys, str(a), str(b), "--model", "cnn", "--data", "cifar10", "--data-root",
        str(tmp_path / "root"), "--split", "train,test", "--samples", "all", "--no-download", "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    results = pd.read_csv(out / "results.csv")
    assert results.groupby("split")["n"].first().to_dict() == {"train": 10, "test": 2}
    assert results["accuracy"].notna().all()
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["data"]["kind"] == "named"
    assert manifest["data"]["location"] == str(tmp_path / "root" / "cifar-10-batches-py")
    assert manifest["data"]["normalization"] == [[0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]]
    assert manifest["data"]["splits"]["test"]["indices"] == "all"
    assert manifest["loss"] == {"name": "cross_entropy", "accuracy": True}
    assert len(written["test"][1]) == 2


def test_per_channel_normalize_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a, b = save_pair(tmp_path, "cnn", width=4, in_channels=3)
    fake_cifar(tmp_path / "cifar-10-batches-py")
    code, err = run(
        monkeypatch, capsys, str(a), str(b), "--model", "cnn", "--data", "cifar10", "--data-root", str(tmp_path),
        "--normalize", "0.5/0.5/0.5,0.25/0.25/0.25", "--bn", "interpolate", "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["data"]["normalization"] == [[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]


def test_bad_samples(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mlp: Paths) -> None:
    code, err = run(monkeypatch, capsys, str(mlp[0]), str(mlp[1]), "--samples", "some")
    assert code == 2
    assert err.splitlines()[0] == "error: --samples 'some' is not a count or all"


# ------------------------------------------------------------------------------------------ user data

FACTORY = """
import torch

def make():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 6, generator=g)
    y = (x[:, 0] > 0).long()
    return {"train": (x[:20], y[:20]), "test": torch.utils.data.TensorDataset(x[20:], y[20:])}
"""


def test_factory_end_to_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, mlp: Paths
) -> None:
    (tmp_path / "mydata.py").write_text(FACTORY)
    spec = f"{tmp_path / 'mydata.py'}:make"
    out = tmp_path / "out"
    code, err = run(
        monkeypatch, capsys, str(mlp[0]), str(mlp[1]), "--model", "mlp", "--data", spec, "--split", "train,test",
        "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    results = pd.read_csv(out / "results.csv")
    assert results.groupby("split")["n"].first().to_dict() == {"train": 20, "test": 10}
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["data"]["kind"] == "factory"
    assert manifest["data"]["name"] == spec
    assert manifest["data"]["normalization"] is None


def test_data_keys_end_to_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, mlp: Paths
) -> None:
    x, y = torch.randn(12, 6), torch.randint(0, 2, (12,))
    np.savez(tmp_path / "d.npz", feats=x.numpy(), cls=y.numpy())
    args = [str(mlp[0]), str(mlp[1]), "--model", "mlp", "--data", str(tmp_path / "d.npz")]
    code, err = run(monkeypatch, capsys, *args, "-o", str(tmp_path / "o1"))
    assert code == 2
    assert "no inputs/targets found (keys: cls, feats)" in err
    assert "--data-keys INPUTS,TARGETS" in err
    code, err = run(monkeypatch, capsys, *args, "--data-keys", "feats,cls", "-o", str(tmp_path / "o2"))
    assert code == 0, err
    assert (pd.read_csv(tmp_path / "o2" / "results.csv")["n"] == 12).all()


# ------------------------------------------------------------------------------------------------ losses


def regression_file(tmp_path: Path, outputs: int = 2) -> Path:
    g = torch.Generator().manual_seed(3)
    torch.save({"x": torch.randn(16, 6, generator=g), "y": torch.randn(16, outputs, generator=g)}, tmp_path / "r.pt")
    return tmp_path / "r.pt"


def final_outputs(mlp: Paths, x: torch.Tensor) -> torch.Tensor:
    model = build_model(parse_model_spec("mlp", {"in_features": 6, "width": 8, "depth": 1, "num_classes": 2}))
    model.load_state_dict(torch.load(mlp[1], weights_only=True))
    with torch.no_grad():
        return model.eval()(x)


def test_mse_end_to_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, mlp: Paths
) -> None:
    path = regression_file(tmp_path)
    out = tmp_path / "out"
    code, err = run(
        monkeypatch, capsys, str(mlp[0]), str(mlp[1]), "--model", "mlp", "--data", str(path), "--loss", "mse",
        "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    results = pd.read_csv(out / "results.csv")
    assert "accuracy" in results.columns
    assert results["accuracy"].isna().all()  # no accuracy for regression
    d = torch.load(path, weights_only=True)
    want = float(((final_outputs(mlp, d["x"]) - d["y"]) ** 2).mean())
    assert results.loc[results["alpha"] == 1.0, "loss"].item() == pytest.approx(want, rel=1e-5)
    summary = pd.read_csv(out / "summary.csv")
    assert math.isnan(summary["error_barrier_linear"].item())
    assert json.loads((out / "run.json").read_text())["loss"] == {"name": "mse", "accuracy": False}


def test_custom_loss_end_to_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, mlp: Paths
) -> None:
    path = regression_file(tmp_path)
    (tmp_path / "myloss.py").write_text("def l1(out, y):\n    return (out - y).abs().sum(1)\n")
    spec = f"{tmp_path / 'myloss.py'}:l1"
    code, err = run(
        monkeypatch, capsys, str(mlp[0]), str(mlp[1]), "--model", "mlp", "--data", str(path), "--loss", spec,
        "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    d = torch.load(path, weights_only=True)
    want = float((final_outputs(mlp, d["x"]) - d["y"]).abs().sum(1).mean())
    assert results.loc[results["alpha"] == 1.0, "loss"].item() == pytest.approx(want, rel=1e-5)
    assert results["accuracy"].isna().all()


def test_targets_that_do_not_fit_the_outputs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, mlp: Paths
) -> None:
    path = regression_file(tmp_path, outputs=3)
    code, err = run(
        monkeypatch, capsys, str(mlp[0]), str(mlp[1]), "--model", "mlp", "--data", str(path), "--loss", "mse",
        "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 2
    assert err.splitlines() == [
        "error: the model's output has shape [16, 2] but the targets [16, 3]; mse needs one target value per "
        "output value"
    ]
    assert not (tmp_path / "out").exists()


def test_class_count_that_does_not_fit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, mlp: Paths
) -> None:
    torch.save({"x": torch.randn(5, 6), "y": torch.tensor([0, 1, 4, 1, 0])}, tmp_path / "c.pt")
    code, err = run(
        monkeypatch, capsys, str(mlp[0]), str(mlp[1]), "--model", "mlp", "--data", str(tmp_path / "c.pt"),
        "-o", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 2
    assert err.splitlines()[0] == (
        "error: the model's output has shape [5, 2] and the targets [5]: targets go up to class 4 but the model "
        "outputs 2 classes"
    )


def test_regression_targets_with_cross_entropy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, mlp: Paths
) -> None:
    path = regression_file(tmp_path)
    code, err = run(
        monkeypatch, capsys, str(mlp[0]), str(mlp[1]), "--model", "mlp", "--data", str(path), "-o", str(tmp_path / "o")
    )
    assert code == 2
    assert err.splitlines() == [
        "error: r.pt: test targets are float32, expected integer class labels",
        "hint: for regression targets use --loss mse",
    ]


def test_unknown_loss(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mlp: Paths) -> None:
    code, err = run(monkeypatch, capsys, str(mlp[0]), str(mlp[1]), "--loss", "hinge")
    assert code == 2
    assert err.splitlines()[0] == "error: --loss 'hinge' is not a loss"


def test_help_lists_the_new_flags() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "interpscan", "run", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--download", "--no-download", "--data-keys", "--loss", "--samples"):
        assert flag in done.stdout
    assert data.NAMED  # the library knows the datasets the help names

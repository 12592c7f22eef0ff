"""End to end on the real Fashion-MNIST files (Debian package dataset-fashion-mnist, installed by .ci/run).

A model file interpscan has never seen, checkpoints in two formats, and the CLI's curve checked against an
independent float64 loop written here from scratch (its own IDX reader, its own interpolation, its own loss).
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli

FMNIST = Path("/usr/share/datasets/fashion-mnist")

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not FMNIST.is_dir() and not os.environ.get("INTERPSCAN_REQUIRE_REALDATA"),
        reason="needs the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
    ),
]

MODEL_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, hidden):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 5, stride=2)
            self.norm = nn.BatchNorm2d(8)
            self.drop = nn.Dropout(0.25)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 12 * 12, hidden), nn.Tanh(), nn.Linear(hidden, 10))

        def forward(self, x):
            return self.head(self.drop(torch.relu(self.norm(self.conv(x)))))

    def build(hidden=32):
        return Net(hidden)
    """
)


def _idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def test_cli_agrees_with_an_independent_float64_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "netdef.py").write_text(MODEL_FILE)
    sys.path.insert(0, str(tmp_path))
    try:
        import netdef  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(0)
    net = netdef.build(hidden=32)
    init_state = {k: v.clone() for k, v in net.state_dict().items()}

    # a short real training run, so the path goes somewhere: 3,000 training images, one epoch
    x_train = torch.from_numpy(_idx(FMNIST / "train-images-idx3-ubyte.gz")[:3000].copy()).float().div(255)
    y_train = torch.from_numpy(_idx(FMNIST / "train-labels-idx1-ubyte.gz")[:3000].astype(np.int64))
    x_train = ((x_train - 0.2860) / 0.3530).unsqueeze(1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()
    for lo in range(0, 3000, 50):
        opt.zero_grad()
        F.cross_entropy(net(x_train[lo : lo + 50]), y_train[lo : lo + 50]).backward()
        opt.step()
    final_state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    # init as a Lightning-style torch file, final as safetensors with an extension that says nothing
    torch.save({"state_dict": {f"model.{k}": v for k, v in init_state.items()}, "epoch": 0}, tmp_path / "init.ckpt")
    from safetensors.torch import save_file

    save_file(final_state, str(tmp_path / "final.bin"))

    out = tmp_path / "out"
    code, err = run_cli(
        monkeypatch,
        capsys,
        "run",
        str(tmp_path / "init.ckpt"),
        str(tmp_path / "final.bin"),
        "--model",
        f"{tmp_path / 'netdef.py'}:build",
        "--model-arg",
        "hidden=32",
        "--data",
        "fashion-mnist",
        "--data-root",
        str(FMNIST),
        "--split",
        "test",
        "--samples",
        "2000",
        "--alphas",
        "11",
        "--bn",
        "interpolate",
        "--out",
        str(out),
        "--quiet",
        "--no-html",
    )
    assert code == 0, err
    results = pd.read_csv(out / "results.csv")
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["checkpoints"]["final"]["format"] == "safetensors"
    assert manifest["checkpoints"]["init"]["prefixes_stripped"] == ["model."]
    indices = manifest["data"]["splits"]["test"]["indices"]
    assert len(indices) == 2000

    # the independent reference, in float64
    x = torch.from_numpy(_idx(FMNIST / "t10k-images-idx3-ubyte.gz")[indices].astype(np.float64) / 255.0)
    x = ((x - 0.2860) / 0.3530).unsqueeze(1)
    y = torch.from_numpy(_idx(FMNIST / "t10k-labels-idx1-ubyte.gz")[indices].astype(np.int64))
    ref = netdef.build(hidden=32).double().eval()
    for alpha, loss, acc in zip(results["alpha"], results["loss"], results["accuracy"], strict=True):
        state = {
            k: (1 - alpha) * init_state[k].double() + alpha * final_state[k].double()
            if init_state[k].is_floating_point()
            else final_state[k]
            for k in init_state
        }
        ref.load_state_dict(state)
        with torch.no_grad():
            logits = ref(x)
        assert loss == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-4)
        assert acc == pytest.approx(float((logits.argmax(1) == y).double().mean()), abs=1.5e-3)
    # the path really moved: trained accuracy well above chance, loss well below ln 10
    assert results["accuracy"].iloc[-1] > 0.6
    assert results["loss"].iloc[-1] < 1.5


def test_the_library_equals_the_cli_given_the_same_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """scan(spec, a, b, "fashion-mnist", key=…, data_root=…, normalize=…) and `interpscan run` with the same
    flags are one scan: the same numbers."""
    from interpscan import scan

    (tmp_path / "netdef.py").write_text(MODEL_FILE)
    spec = f"{tmp_path / 'netdef.py'}:build"
    for seed, name in ((0, "a.pt"), (1, "b.pt")):
        torch.manual_seed(seed)
        sys.path.insert(0, str(tmp_path))
        try:
            import netdef  # type: ignore[import-not-found]
        finally:
            sys.path.remove(str(tmp_path))
        live, averaged = netdef.build(hidden=16).state_dict(), netdef.build(hidden=16).state_dict()
        torch.save({"state_dict": live, "model_ema": averaged, "epoch": 3}, tmp_path / name)
    options = {
        "model_args": {"hidden": 16},
        "key": "model_ema",
        "data_root": FMNIST,
        "normalize": "0.3,0.4",
        "samples": 500,
        "alphas": 5,
        "bn": "interpolate",
        "bootstrap": 0,
    }
    result = scan(spec, tmp_path / "a.pt", tmp_path / "b.pt", "fashion-mnist", **options)  # type: ignore[arg-type]
    flags = ["--model-arg", "hidden=16", "--key", "model_ema", "--data-root", str(FMNIST), "--normalize", "0.3,0.4"]
    flags += ["--samples", "500", "--alphas", "5", "--bn", "interpolate", "--bootstrap", "0"]
    out = tmp_path / "out"
    args = [str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--model", spec, "--data", "fashion-mnist", *flags]
    code, err = run_cli(monkeypatch, capsys, "run", *args, "--out", str(out), "--quiet", "--no-html")
    assert code == 0, err
    cli = pd.read_csv(out / "results.csv")
    assert result.manifest["weights"]["key"] == json.loads((out / "run.json").read_text())["weights"]["key"]
    assert list(result.manifest["data"]["normalization"]) == [0.3, 0.4]
    for column in ("loss", "accuracy"):
        np.testing.assert_allclose(result.results[column], cli[column], rtol=1e-6)
    assert result.results["n"].tolist() == cli["n"].tolist() == [500] * 5

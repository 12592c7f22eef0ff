"""``interpscan demo``: train a small CNN on the bundled Fashion-MNIST subset, then scan the path it took."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .api import ScanConfig, ScanResult, run_scan
from .data import load_split, open_data
from .engine import Progress
from .models import build_model, parse_model_spec
from .train import TrainConfig, config_dict, save_checkpoint, train

DEMO_MODEL = "cnn"
DEMO_DATA = "fashion-mnist-small"


def run_demo(
    out: Path, *, epochs: int = 6, progress: Progress | None = None, log: Callable[[str], None] | None = None
) -> ScanResult:
    """Train ``cnn`` (with batch norm) for ``epochs`` on the bundled subset, save init.pt and final.pt in
    ``out`` (which must exist), and scan train and test loss along the straight line between them."""
    say = log or (lambda _m: None)
    torch.manual_seed(0)
    source = open_data(DEMO_DATA)
    train_split = load_split(source, "train", normalization=source.normalization)
    spec = parse_model_spec(DEMO_MODEL, {"in_channels": 1, "num_classes": 10, "width": 16})
    model = build_model(spec)
    config = TrainConfig(epochs=epochs, lr=0.05, weight_decay=5e-4, seed=0)
    save_checkpoint(model, out / "init.pt", spec, {"train": config_dict(config), "epoch": 0})
    say(f"training {DEMO_MODEL} on {DEMO_DATA} ({len(train_split)} images, {epochs} epochs)")
    train(model, train_split, config, log=say)
    save_checkpoint(model, out / "final.pt", spec, {"train": config_dict(config), "epoch": epochs})
    scan = ScanConfig(
        init=out / "init.pt",
        final=out / "final.pt",
        data=DEMO_DATA,
        splits=("train", "test"),
        alphas="21",
        device="cpu",
    )
    return run_scan(scan, progress=progress, log=say)

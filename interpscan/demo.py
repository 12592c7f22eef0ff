"""``interpscan demo``: train a small CNN on the bundled Fashion-MNIST subset, then scan the path it took."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .api import ScanResult, scan
from .atomic import OutputFolder
from .data import load_split, open_data
from .engine import Progress
from .models import build_model, parse_model_spec
from .train import TrainConfig, checkpoint, config_dict, train

DEMO_MODEL = "cnn"
DEMO_DATA = "fashion-mnist-small"
DEMO_FILES = ("init.pt", "final.pt")  # the checkpoints the demo writes beside the run's files
WRITER = "interpscan demo"  # recorded in them: where they came from


def run_demo(
    out: Path, *, epochs: int = 6, progress: Progress | None = None, log: Callable[[str], None] | None = None
) -> ScanResult:
    """Train ``cnn`` (with batch norm) for ``epochs`` on the bundled subset, save init.pt and final.pt in
    ``out`` (which must exist), and scan train and test loss along the straight line between them.

    Raises:
        OutputError: ``out`` holds an init.pt or final.pt that interpscan did not write (the user's checkpoints
            are never replaced), or a link by one of those names.
    """
    say = log or (lambda _m: None)
    torch.manual_seed(0)
    source = open_data(DEMO_DATA)
    train_split = load_split(source, "train", normalization=source.normalization)
    spec = parse_model_spec(DEMO_MODEL, {"in_channels": 1, "num_classes": 10, "width": 16})
    model = build_model(spec)
    config = TrainConfig(epochs=epochs, lr=0.05, weight_decay=5e-4, seed=0)
    mark = {"train": config_dict(config), "written_by": WRITER}
    with OutputFolder.open(out, create=False) as folder:
        folder.check(DEMO_FILES)  # before training: a refusal costs nothing
        _save(folder, "init.pt", checkpoint(model, spec, {**mark, "epoch": 0}, data=DEMO_DATA))
        say(f"training {DEMO_MODEL} on {DEMO_DATA} ({len(train_split)} images, {epochs} epochs)")
        train(model, train_split, config, log=say)
        _save(folder, "final.pt", checkpoint(model, spec, {**mark, "epoch": epochs}, data=DEMO_DATA))
    return scan(
        None,
        out / "init.pt",
        out / "final.pt",
        DEMO_DATA,
        splits=("train", "test"),
        device="cpu",
        progress=progress,
        log=say,
    )


def _save(folder: OutputFolder, name: str, payload: dict[str, Any]) -> None:
    folder.write({name: lambda fh: torch.save(payload, fh)})

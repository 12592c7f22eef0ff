"""``interpscan demo``: train a small CNN on the bundled Fashion-MNIST subset, then scan the path it took."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .api import ScanResult, scan
from .data import load_split, open_data
from .engine import Progress
from .models import build_model, parse_model_spec
from .train import TrainConfig, config_dict, save_checkpoint, train

DEMO_MODEL = "cnn"
DEMO_DATA = "fashion-mnist-small"
DEMO_FILES = ("init.pt", "final.pt")  # the checkpoints the demo writes beside the run's files
WRITER = "interpscan demo"  # recorded in them, so a later `demo --force` knows they are its own


def check_replaceable(out: Path) -> None:
    """``demo --force`` replaces interpscan's own files only: an init.pt or final.pt in ``out`` that an earlier
    demo did not write (the user's checkpoints) is never overwritten.

    Raises:
        OutputError: such a file is there.
    """
    from .checkpoints import load_checkpoint
    from .errors import InterpscanError, OutputError

    for name in DEMO_FILES:
        path = out / name
        if not path.exists() and not path.is_symlink():
            continue
        try:
            ours = (
                path.is_file()
                and not path.is_symlink()
                and load_checkpoint(path).info.metadata.get("interpscan", {}).get("written_by") == WRITER
            )
        except (InterpscanError, AttributeError):
            ours = False
        if not ours:
            raise OutputError(
                f"{path} was not written by interpscan demo; the demo would replace it",
                hint="choose another --out for the demo (it writes init.pt and final.pt there)",
            )


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
    check_replaceable(out)
    mark = {"train": config_dict(config), "written_by": WRITER}
    save_checkpoint(model, out / "init.pt", spec, {**mark, "epoch": 0}, data=DEMO_DATA)
    say(f"training {DEMO_MODEL} on {DEMO_DATA} ({len(train_split)} images, {epochs} epochs)")
    train(model, train_split, config, log=say)
    save_checkpoint(model, out / "final.pt", spec, {**mark, "epoch": epochs}, data=DEMO_DATA)
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

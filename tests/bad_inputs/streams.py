"""Data read as it streams, and options that shape it: image folders with symbolic links, the evaluation transform
(--resize, --crop) and DataLoader workers, memory a batch cannot have, and the user's own datasets failing as they
are read; each through `interpscan run` with two valid ``cnn width=2`` checkpoints.

Every case ends in seconds: the ones that would hang or allocate without end are refused before any worker starts.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .case import Case, good_state, run_args

TITLE = "Streamed data"
NAMES = (
    "stream-workers-with-warm-up",
    "link-class-to-root",
    "link-class-to-slash",
    "link-folder-out-of-tree",
    "link-loop-in-class",
    "link-image-into-second-class",
    "link-broken-image",
    "links-inside-followed-once",
    "crop-larger-than-images",
    "crop-larger-than-resize",
    "resize-batch-cannot-fit",
    "resize-on-tensor-file",
    "crop-on-named-dataset",
    "workers-on-tensor-file",
    "factory-dataset-item-raises",
    "factory-dataset-len-raises",
    "factory-dataset-item-exits",
)

FACTORY = """
import sys

import torch


class Broken(torch.utils.data.Dataset):
    def __init__(self, fails_in):
        self.fails_in = fails_in

    def __len__(self):
        if self.fails_in == "len":
            raise OSError("the shard index is gone")
        return 16

    def __getitem__(self, i):
        if self.fails_in == "item" and i == 5:
            raise KeyError(f"no row {i}")
        if self.fails_in == "exit":
            sys.exit(3)
        return torch.zeros(1, 28, 28), i % 10


def by_item():
    return Broken("item")


def by_len():
    return Broken("len")


def by_exit():
    return Broken("exit")
"""


def _png(array: np.ndarray[Any, Any]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def _link(link: Path, target: Path | str) -> None:
    if not link.is_symlink():
        link.symlink_to(target)


def build(root: Path) -> list[Case]:
    """Write every folder, file and link into ``root``; return the cases."""
    init, final = root / "init.pt", root / "final.pt"
    torch.save(good_state(0), init)
    torch.save(good_state(1), final)
    rng = np.random.default_rng(0)
    cases: list[Case] = []

    def folder(name: str, classes: str = "ab", shape: tuple[int, int] = (8, 8)) -> Path:
        """Classes ``classes`` of four grey PNGs of ``shape`` (height, width) each."""
        top = root / name
        for c in classes:
            (top / c).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                (top / c / f"{i}.png").write_bytes(_png(rng.integers(0, 256, shape, dtype=np.uint8)))
        return top

    def case(name: str, description: str, data: Path | str, error: str, *extra: str, exit_code: int = 2) -> None:
        cases.append(Case(name, description, run_args(init, final, "--data", str(data), *extra), exit_code, error))

    # -- a DataLoader worker forked while the CLI imports in the background (it waits for the imports)
    case(
        "stream-workers-with-warm-up",
        "an image folder streamed by 2 workers while the page's imports warm up",
        folder("streamed"),
        "",
        "--crop",
        "8",
        "--workers",
        "2",
        "--html",
        exit_code=0,
    )

    # -- symbolic links: followed inside the folder, each folder and image once
    to_root = folder("to-root")
    _link(to_root / "c", to_root)
    case("link-class-to-root", "class folder c linking to the dataset's root", to_root, "(a symbolic link to a folder")
    to_slash = folder("to-slash")
    _link(to_slash / "c", "/")
    case("link-class-to-slash", "class folder c linking to /", to_slash, "outside the image folder")
    out_of_tree = folder("out-of-tree")
    elsewhere = folder("elsewhere-images", classes="x")
    _link(out_of_tree / "b" / "more", elsewhere / "x")
    case(
        "link-folder-out-of-tree",
        "a folder inside class b linking to images outside the dataset",
        out_of_tree,
        "outside the image folder",
    )
    loop = folder("loop")
    _link(loop / "a" / "again", loop / "a")
    case("link-loop-in-class", "a folder in class a linking back to a", loop, "(a symbolic link to a folder")
    twice = folder("twice")
    _link(twice / "b" / "9.png", twice / "a" / "0.png")
    case("link-image-into-second-class", "b/9.png linking to a/0.png", twice, "the image would count twice")
    broken = folder("broken")
    _link(broken / "b" / "9.png", broken / "b" / "gone.png")
    case("link-broken-image", "b/9.png linking to a file that does not exist", broken, "which does not exist")
    inside = folder("inside", classes="a")
    folder("inside/.store", classes="x")
    _link(inside / "b", inside / ".store" / "x")
    case("links-inside-followed-once", "class b linking to a hidden folder of the dataset", inside, "", exit_code=0)

    # -- the evaluation transform
    small = folder("small")
    case("crop-larger-than-images", "--crop 16 on 8×8 images", small, "8×8 is smaller than --crop 16", "--crop", "16")
    case(
        "crop-larger-than-resize",
        "--resize 8 --crop 16",
        small,
        "--crop 16 is larger than --resize 8",
        "--resize",
        "8",
        "--crop",
        "16",
    )
    tall = folder("tall", shape=(512, 8))
    case(
        "resize-batch-cannot-fit",
        "--resize 8192 --workers 1 on 8×512 images: 8192×524288 pixels each",
        tall,
        "a batch of 8 images of up to 8192×524288 pixels needs at least 512.0 GiB of host memory",
        "--resize",
        "8192",
        "--workers",
        "1",  # the bound counts each worker's batches in flight: fixed here, so is the number
    )
    tensors = root / "tensors.pt"
    gen = torch.Generator().manual_seed(0)
    torch.save(
        {"x": torch.rand(16, 1, 28, 28, generator=gen), "y": torch.randint(0, 10, (16,), generator=gen)}, tensors
    )
    case(
        "resize-on-tensor-file",
        "--resize 32 with a tensor file",
        tensors,
        "--resize applies to image folders",
        "--resize",
        "32",
    )
    case(
        "crop-on-named-dataset",
        "--crop 20 with fashion-mnist-small",
        "fashion-mnist-small",
        "--crop applies to image folders",
        "--crop",
        "20",
    )
    case(
        "workers-on-tensor-file",
        "--workers 2 with a tensor file",
        tensors,
        "--workers applies to image",
        "--workers",
        "2",
    )

    # -- the user's dataset failing as it is read
    factory = root / "datasets.py"
    factory.write_text(FACTORY)
    for name, fn, description, error in (
        (
            "factory-dataset-item-raises",
            "by_item",
            "a factory's Dataset raising KeyError at item 5",
            "item 5: the data",
        ),
        ("factory-dataset-len-raises", "by_len", "a factory's Dataset whose __len__ raises", "dataset's length"),
        (
            "factory-dataset-item-exits",
            "by_exit",
            "a factory's Dataset calling sys.exit(3)",
            "the data called sys.exit(3) instead of returning",
        ),
    ):
        case(name, description, f"{factory}:{fn}", error)
    return cases

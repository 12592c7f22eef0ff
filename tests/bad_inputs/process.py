"""The process a scan runs in: environment variables left over or set by hand (torchrun's, interpscan's own),
options whose effect the run would have misstated (--refine beyond its rounds, groups with no pattern), memory
that kept per-example losses cannot have, a 120 KB value echoed back, and a model that has no data. Each is one
line before any point is evaluated; the torchrun cases end within seconds, not after the 600 s a collective
waits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .case import OUT, Case, good_state, run_args

TITLE = "The process: environment, memory, honest options"
NAMES = (
    "torchrun-variables-without-torchrun",
    "torchrun-variables-without-master-addr",
    "master-port-not-a-port",
    "world-size-not-a-number",
    "dist-timeout-negative",
    "dist-join-timeout-zero",
    "save-every-not-a-number",
    "local-world-size-not-a-number",
    "max-memory-not-a-size",
    "kept-losses-exceed-memory",
    "per-example-exceeds-memory",
    "refine-beyond-its-rounds",
    "groups-only-a-comma",
    "groups-empty-between-commas",
    "groups-name-without-patterns",
    "groups-pattern-120-kb",
    "model-factory-on-meta",
)

META_FACTORY = """
import torch

from interpscan.models import CNN


def make():
    with torch.device("meta"):
        return CNN(width=2)
"""


def _env(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(values.items())


# rank 0 of 2 with an address torch can serve on (port 0: any free one), as torchrun would set it for the first of
# two processes, with no second process coming; the join timeout cut to 1 s so that the case ends at once
ALONE = _env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="0")


def _argv(init: Path, final: Path, model: tuple[str, ...], data: str, *extra: str) -> tuple[str, ...]:
    """`interpscan run` of the fast settings with another model or data than run_args' (cnn on fashion-mnist)."""
    fast = ("--alphas", "2", "--bn", "interpolate", "-q", "--no-html")
    return ("run", str(init), str(final), "--model", *model, "--data", data, *fast, *extra, "--out", OUT)


def build(root: Path) -> list[Case]:
    """Write two valid checkpoints, an image folder and a factory that builds on the meta device into ``root``;
    return the cases."""
    from PIL import Image

    init, final = root / "init.pt", root / "final.pt"
    torch.save(good_state(0), init)
    torch.save(good_state(1), final)
    images = root / "images"
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    for c in "ab":
        (images / c).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.fromarray(noise).save(images / c / f"{i}.png")
    meta = root / "meta_model.py"
    meta.write_text(META_FACTORY)
    cases: list[Case] = []

    def case(name: str, description: str, code: int, error: str, *flags: str, env: object = ()) -> None:
        cases.append(Case(name, description, run_args(init, final, *flags), code, error, env=env))  # type: ignore[arg-type]

    case(
        "torchrun-variables-without-torchrun",
        "RANK=0 WORLD_SIZE=2 MASTER_ADDR MASTER_PORT set by hand, no torchrun (waited 600 s, silent, deaf to "
        "SIGTERM); INTERPSCAN_DIST_JOIN_TIMEOUT=1",
        2,
        "the other 1 process did not join within 1 s (RANK=0, WORLD_SIZE=2",
        env=(*ALONE, ("INTERPSCAN_DIST_JOIN_TIMEOUT", "1")),
    )
    case(
        "torchrun-variables-without-master-addr",
        "RANK=0 WORLD_SIZE=2 with no MASTER_ADDR or MASTER_PORT (torch's ValueError)",
        2,
        "MASTER_ADDR and MASTER_PORT are not set: these variables are torchrun's",
        env=_env(RANK="0", WORLD_SIZE="2", MASTER_ADDR="", MASTER_PORT=""),
    )
    case(
        "master-port-not-a-port",
        "MASTER_PORT=99999",
        2,
        "MASTER_PORT=99999 is not a port",
        env=(*ALONE[:-1], ("MASTER_PORT", "99999")),
    )
    case(
        "world-size-not-a-number",
        "WORLD_SIZE=two",
        2,
        "WORLD_SIZE='two' is not a whole number",
        env=_env(WORLD_SIZE="two"),
    )
    case(
        "dist-timeout-negative",
        "INTERPSCAN_DIST_TIMEOUT=-5 under torchrun's variables",
        2,
        "INTERPSCAN_DIST_TIMEOUT='-5' is not a number ≥ 0.001",
        env=(*ALONE, ("INTERPSCAN_DIST_TIMEOUT", "-5")),
    )
    case(
        "dist-join-timeout-zero",
        "INTERPSCAN_DIST_JOIN_TIMEOUT=0",
        2,
        "INTERPSCAN_DIST_JOIN_TIMEOUT='0' is not a number ≥ 0.001",
        env=(*ALONE, ("INTERPSCAN_DIST_JOIN_TIMEOUT", "0")),
    )
    case(
        "save-every-not-a-number",
        "INTERPSCAN_SAVE_EVERY=2s (float() raised: an internal error)",
        2,
        "INTERPSCAN_SAVE_EVERY='2s' is not a number ≥ 0",
        env=_env(INTERPSCAN_SAVE_EVERY="2s"),
    )
    cases.append(
        Case(
            "local-world-size-not-a-number",
            "LOCAL_WORLD_SIZE=four with a streamed image folder (int() raised: an internal error)",
            _argv(init, final, ("cnn", "--model-arg", "width=2"), str(images), "--resize", "28"),
            2,
            "LOCAL_WORLD_SIZE='four' is not a whole number ≥ 1",
            env=_env(LOCAL_WORLD_SIZE="four"),
        )
    )
    case(
        "max-memory-not-a-size",
        "INTERPSCAN_MAX_MEMORY=lots",
        2,
        "INTERPSCAN_MAX_MEMORY='lots' is not a size",
        env=_env(INTERPSCAN_MAX_MEMORY="lots"),
    )
    case(
        "kept-losses-exceed-memory",
        "the bootstrap's per-example losses beyond the memory there is (INTERPSCAN_MAX_MEMORY=64K; the allocator "
        "failed at the end of the scan)",
        2,
        "keeping every example's loss for --bootstrap 1000 needs about",
        env=_env(INTERPSCAN_MAX_MEMORY="64K"),
    )
    case(
        "per-example-exceeds-memory",
        "--save-per-example beyond the memory there is (INTERPSCAN_MAX_MEMORY=100 bytes)",
        2,
        "keeping every example's loss for --save-per-example needs about",
        "--bootstrap",
        "0",
        "--save-per-example",
        env=_env(INTERPSCAN_MAX_MEMORY="100"),
    )
    case(
        "refine-beyond-its-rounds",
        "--alphas 3 --refine 10000 (added 62 points, said 10,000)",
        2,
        "--refine 10000 would add only 62 points per curve on a grid of 3 α",
        "--alphas",
        "3",
        "--refine",
        "10000",
    )
    case(
        "groups-only-a-comma",
        "--groups , (ran with no group at all)",
        2,
        "--groups ',' holds an empty pattern",
        "--groups",
        ",",
    )
    case(
        "groups-empty-between-commas",
        "--groups 'conv*,,fc' (the empty pattern dropped)",
        2,
        "--groups 'conv*,,fc' holds an empty pattern",
        "--groups",
        "conv*,,fc",
    )
    case(
        "groups-name-without-patterns",
        "--groups head=",
        2,
        "--groups 'head=' holds an empty pattern (after '=')",
        "--groups",
        "head=",
    )
    case(
        "groups-pattern-120-kb",
        "a --groups pattern of 120,000 characters (echoed whole in the error)",
        2,
        "(120,002 characters) matched no module or tensor",
        "--groups",
        "x" * 120_000,
    )
    cases.append(
        Case(
            "model-factory-on-meta",
            "a model factory that builds under torch.device('meta') (torch's NotImplementedError)",
            _argv(init, final, (f"{meta}:make",), "fashion-mnist-small", "--samples", "16"),
            2,
            "tensors on the meta device, shapes without data",
        )
    )
    return cases

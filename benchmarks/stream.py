"""Peak memory and images/s of `interpscan run` on a generated image folder: the resident path on a folder that
fits, the streamed one on a folder whose float32 copy would not fit in the default run, with --workers 0 and the
default.

    python benchmarks/stream.py [--images 8000] [--small 1000] [--dir /tmp/interpscan-bench-images]

Generates JPEGs of 256×256 px (smooth random colour fields, quality 90, 10 classes) once into --dir (outside the
repository), and two checkpoints of the zoo's small CNN (3 channels, width 4: cheap, so the data path dominates).
Each command runs as its own process; peak RSS is the largest sum over the process and its DataLoader workers,
sampled every 50 ms from /proc; images/s counts each image once (2 α: every image is evaluated twice).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _generate(folder: Path, count: int, size: int = 256) -> None:
    from PIL import Image

    if folder.is_dir() and sum(1 for _ in folder.rglob("*.jpg")) == count:
        return
    gen = np.random.default_rng(0)
    for i in range(count):
        d = folder / f"class{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        coarse = gen.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
        image.save(d / f"{i:05d}.jpg", quality=90)


def checkpoints(folder: Path, model: str, model_args: dict[str, int]) -> list[str]:
    """Two seeded initializations of a zoo model saved as init.pt and final.pt in ``folder``: their paths."""
    import torch

    from interpscan.models import build_model, parse_model_spec

    spec = parse_model_spec(model, model_args)
    torch.manual_seed(0)
    paths = []
    for name in ("init", "final"):
        path = folder / f"{name}.pt"
        torch.save(build_model(spec).state_dict(), path)
        paths.append(str(path))
    return paths


def _rss_tree(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (the DataLoader workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        todo += children.get(p, [])
    return total


def _measure(cmd: list[str], env_extra: dict[str, str] | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS of the process tree in bytes) of ``cmd``, run from the repository's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _rss_tree(proc.pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr.read() if proc.stderr else ''}")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "interpscan-bench-images")
    args = parser.parse_args()
    from interpscan.data.images import default_workers, resident_bytes

    large, small = args.dir / f"large-{args.images}", args.dir / f"small-{args.small}"
    _generate(large, args.images)
    _generate(small, args.small)
    ckpts = checkpoints(args.dir, "cnn", {"in_channels": 3, "width": 4})
    with tempfile.TemporaryDirectory() as out:
        base = [sys.executable, "-m", "interpscan", "run", *ckpts, "--model", "cnn", "--model-arg", "in_channels=3"]
        base += ["--model-arg", "width=4", "--alphas", "2", "--bn", "interpolate", "--bootstrap", "0", "--no-html"]
        base += ["-q", "--force", "--out", out]
        rows = [
            (f"{args.small} images, resident", small, args.small, []),
            (f"{args.images} images, streamed, --workers 0", large, args.images, ["--workers", "0"]),
            (f"{args.images} images, streamed, default ({default_workers()} workers)", large, args.images, []),
        ]
        print("| data | float32 copy | peak RSS | wall s | images/s |\n| --- | --- | --- | --- | --- |")
        for label, folder, count, extra in rows:
            seconds, peak = _measure([*base, "--data", str(folder), *extra])
            copy = resident_bytes(count, (256, 256), False) / 2**30
            print(f"| {label} | {copy:.2f} GiB | {peak / 2**30:.2f} GiB | {seconds:.1f} | {count / seconds:.0f} |")


if __name__ == "__main__":
    main()

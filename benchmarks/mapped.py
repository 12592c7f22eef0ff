"""Peak memory and examples/s of `interpscan run` on a generated tensor file whose float32 copy is several times
the resident limit (2 GiB): read whole (the limit raised to let it), and streamed from a memory map in each format.

    python benchmarks/mapped.py [--examples 2000000] [--dir /tmp/interpscan-bench-tensors]

Generates uint8 images of 1×28×28 (random pixels, 10 classes) once into --dir (outside the repository), saved as
.pt (torch.save), .safetensors and .npz (np.savez), and two checkpoints of the zoo's MLP (one hidden layer of 8
units: cheap, so the data path dominates). Each command runs as its own process; peak RSS is sampled every 50 ms
from /proc (benchmarks/stream.py's sampler); examples/s counts each example once (2 α: each is evaluated twice).
On a shared machine run it with OMP_NUM_THREADS=1 (two threads on busy cores spin). The row that reads the file
whole needs about 20 GiB of memory (--no-resident skips it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream import _measure, checkpoints  # the sibling benchmark's RSS sampler and checkpoints


def _generate(folder: Path, count: int) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file

    paths = {fmt: folder / f"data-{count}.{fmt}" for fmt in ("pt", "safetensors", "npz")}
    if all(p.exists() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (count, 1, 28, 28), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, 10, (count,), generator=gen)
    torch.save({"x": x, "y": y}, paths["pt"])
    save_file({"x": x, "y": y}, str(paths["safetensors"]))
    np.savez(paths["npz"], x=x.numpy(), y=y.numpy())
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2_000_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "interpscan-bench-tensors")
    parser.add_argument("--formats", default="pt,safetensors,npz", help="streamed rows, comma-separated")
    parser.add_argument("--no-resident", action="store_true", help="skip the row that reads the file whole")
    args = parser.parse_args()
    paths = _generate(args.dir, args.examples)
    ckpts = checkpoints(args.dir, "mlp", {"width": 8, "depth": 1})
    copy = args.examples * 28 * 28 * 4 / 2**30
    with tempfile.TemporaryDirectory() as out:
        base = [sys.executable, "-m", "interpscan", "run", *ckpts, "--model", "mlp", "--model-arg", "width=8"]
        base += ["--model-arg", "depth=1", "--alphas", "2", "--bn", "interpolate", "--bootstrap", "0", "--no-html"]
        base += ["-q", "--force", "--out", out]
        whole = "64G"  # a resident limit above the file's float32 copy: read whole
        rows = [] if args.no_resident else [("pt", f"read whole (INTERPSCAN_RESIDENT_BYTES={whole})", whole)]
        rows += [(fmt, "streamed from a memory map", None) for fmt in args.formats.split(",")]
        print("| file | read | file size | float32 copy | peak RSS | wall s | examples/s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for fmt, how, limit in rows:
            env = {"INTERPSCAN_RESIDENT_BYTES": limit} if limit else {}
            seconds, peak = _measure([*base, "--data", str(paths[fmt])], env)
            size = paths[fmt].stat().st_size / 2**30
            print(
                f"| .{fmt} | {how} | {size:.2f} GiB | {copy:.2f} GiB | {peak / 2**30:.2f} GiB | {seconds:.1f} | "
                f"{args.examples / seconds:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

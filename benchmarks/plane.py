"""Whole-process timing of a plane: `interpscan plane C0 C1 C2 --grid 11` against the per-point loop peers write
(Garipov et al.'s plane.py: build each point's state dict, load_state_dict, evaluate), on the same 11 × 11 grid
plus the three checkpoints' own points, as fresh processes.

    python benchmarks/plane.py [--repeat 3] [--samples 1000] [--grid 11] [--device cpu]

Needs the real Fashion-MNIST test set (`apt-get install dataset-fashion-mnist`). The checkpoints are the demo's CNN
(tests/golden/init.pt, final.pt: width 16, batch norm) and a third, a fresh initialization (seed 1) written beside
them in the same format. The commands run in turn ``--repeat`` times (round robin); each row is a median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

import torch
from process import FASHION, GOLDEN, run_once

# The loop a researcher writes: the plane's basis over the parameters (Gram–Schmidt), then per grid point the
# state dict C0 + a1·(C1 − C0) + a2·(C2 − C0) (buffers alike, as interpscan's --bn interpolate), load_state_dict,
# evaluate in batches of 256, a CSV. The grid is interpscan's: the box of the three points widened by 0.2 per side,
# and the three points themselves.
NAIVE = textwrap.dedent(
    """
    import csv, gzip, sys
    import numpy as np, torch, torch.nn.functional as F
    from interpscan.models import CNN

    paths, (images, labels, n, grid, out) = sys.argv[1:4], sys.argv[4:9]
    n, grid = int(n), int(grid)
    x = np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    y = torch.from_numpy(np.frombuffer(gzip.open(labels).read(), np.uint8, offset=8)[:n].astype(np.int64))
    x = (torch.from_numpy(x.copy()).float() / 255 - 0.2860) / 0.3530
    c = [torch.load(p, weights_only=True)["state_dict"] for p in paths]
    model = CNN(in_channels=1, num_classes=10, width=16).eval()
    params = [k for k, _ in model.named_parameters()]
    flat = [torch.cat([s[k].double().flatten() for k in params]) for s in c]
    d1, d2 = flat[1] - flat[0], flat[2] - flat[0]
    n1 = float(d1.norm()); p = float(d2 @ d1) / n1; q = float((d2 - p * d1 / n1).norm())
    xs, ys = [0.0, n1, p], [0.0, 0.0, q]
    def steps(lo, hi):
        w = hi - lo
        lo, hi = lo - 0.2 * w, hi + 0.2 * w
        return [lo + (hi - lo) * i / (grid - 1) for i in range(grid)]
    points = [(a, b) for b in steps(min(ys), max(ys)) for a in steps(min(xs), max(xs))] + list(zip(xs, ys))
    rows = []
    with torch.no_grad():
        for px, py in points:
            a2 = py / q; a1 = (px - a2 * p) / n1
            model.load_state_dict({
                k: v + a1 * (c[1][k] - v) + a2 * (c[2][k] - v) if v.is_floating_point() else v for k, v in c[0].items()
            })
            loss = correct = 0.0
            for lo in range(0, n, 256):
                logits = model(x[lo : lo + 256])
                loss += float(F.cross_entropy(logits, y[lo : lo + 256], reduction="sum"))
                correct += int((logits.argmax(1) == y[lo : lo + 256]).sum())
            rows.append((px, py, loss / n, correct / n))
    with open(out, "w", newline="") as fh:
        csv.writer(fh).writerows([("x", "y", "loss", "accuracy"), *rows])
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--grid", type=int, default=11)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not (FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        sys.exit("needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist")
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        from interpscan.models import CNN

        third = Path(tmp) / "random.pt"
        torch.manual_seed(1)
        torch.save({"state_dict": CNN(in_channels=1, num_classes=10, width=16).state_dict()}, third)
        ckpts = [str(GOLDEN / "init.pt"), str(GOLDEN / "final.pt"), str(third)]
        script = Path(tmp) / "naive.py"
        script.write_text(NAIVE)
        images, labels = str(FASHION / "t10k-images-idx3-ubyte.gz"), str(FASHION / "t10k-labels-idx1-ubyte.gz")
        n, grid = str(args.samples), str(args.grid)
        scan = ["--data", "fashion-mnist", "--samples", n, "--device", args.device, "--grid", grid, "-q"]
        rows = [
            ("plain loop (load_state_dict)", [py, str(script), *ckpts, images, labels, n, grid, f"{tmp}/naive.csv"]),
            (
                "interpscan plane --bn interpolate",
                [py, "-m", "interpscan", "plane", *ckpts, *scan, "--bn", "interpolate", "-o", f"{tmp}/o", "--force"],
            ),
        ]
        times: list[list[float]] = [[] for _ in rows]
        for _ in range(args.repeat):
            for i, (_, cmd) in enumerate(rows):
                times[i].append(run_once(cmd))
        print(f"| workload | command | seconds (median of {args.repeat}) | × plain loop |")
        print("|---|---|---|---|")
        base = statistics.median(times[0])
        for (label, _), seconds in zip(rows, map(statistics.median, times), strict=True):
            print(f"| {args.grid} × {args.grid} plane + 3 anchors | {label} | {seconds:.2f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()

"""Whole-process timings: `interpscan run` as a user runs it (imports, reading, the scan, the files), against the
plain script a researcher would write, and the default BN policy against the cheap one.

    python benchmarks/process.py [--repeat 3] [--samples 5000] [--only whole|groups]

Needs the real Fashion-MNIST test set (`apt-get install dataset-fashion-mnist`) and uses the demo's own CNN
checkpoints (tests/golden/init.pt, final.pt: width 16, batch norm). Each command runs as its own process, the
commands in turn ``--repeat`` times; the table gives each one's median wall-clock time. Issue 16's targets: a grouped
scan under recompute ≤ 1.25× the same scan under interpolate, and a whole-path scan ≤ 1.10× the plain loop.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
FASHION = Path("/usr/share/datasets/fashion-mnist")

# What a researcher writes by hand: load both checkpoints, and for each α build the state dict, load_state_dict,
# evaluate the test images in batches of 256, write a CSV. Running statistics are interpolated with the rest, as
# load_state_dict of an interpolated state dict does; that is interpscan's --bn interpolate.
NAIVE = textwrap.dedent(
    """
    import csv, gzip, sys
    import numpy as np, torch, torch.nn.functional as F
    from interpscan.models import CNN

    init_path, final_path, images, labels, n, alphas, out = sys.argv[1:]
    n, alphas = int(n), int(alphas)
    x = np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    y = torch.from_numpy(np.frombuffer(gzip.open(labels).read(), np.uint8, offset=8)[:n].astype(np.int64))
    x = (torch.from_numpy(x.copy()).float() / 255 - 0.2860) / 0.3530
    init = torch.load(init_path, weights_only=True)["state_dict"]
    final = torch.load(final_path, weights_only=True)["state_dict"]
    model = CNN(in_channels=1, num_classes=10, width=16).eval()
    rows = []
    with torch.no_grad():
        for i in range(alphas):
            a = i / (alphas - 1)
            model.load_state_dict(
                {k: (1 - a) * v + a * final[k] if v.is_floating_point() else final[k] for k, v in init.items()}
            )
            loss = correct = 0.0
            for lo in range(0, n, 256):
                logits = model(x[lo : lo + 256])
                loss += float(F.cross_entropy(logits, y[lo : lo + 256], reduction="sum"))
                correct += int((logits.argmax(1) == y[lo : lo + 256]).sum())
            rows.append((a, loss / n, correct / n))
    with open(out, "w", newline="") as fh:
        csv.writer(fh).writerows([("alpha", "loss", "accuracy"), *rows])
    """
)


def run_once(cmd: list[str]) -> float:
    """Wall-clock seconds of ``cmd`` as a fresh process."""
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--only", choices=("whole", "groups"), help="one workload only")
    parser.add_argument(
        "--memory-format", help="passed to every interpscan command (default: the CLI's, auto; e.g. contiguous)"
    )
    args = parser.parse_args()
    if not (FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        sys.exit("needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist")
    py = sys.executable
    init, final = str(GOLDEN / "init.pt"), str(GOLDEN / "final.pt")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "naive.py"
        script.write_text(NAIVE)

        def run(*extra: str) -> list[str]:
            scan = ["--data", "fashion-mnist", "--samples", str(args.samples), "--device", "cpu", "-q"]
            scan += ["--memory-format", args.memory_format] if args.memory_format else []
            return [py, "-m", "interpscan", "run", init, final, *scan, *extra, "--out", f"{tmp}/o", "--force"]

        n, images = str(args.samples), str(FASHION / "t10k-images-idx3-ubyte.gz")
        labels = str(FASHION / "t10k-labels-idx1-ubyte.gz")
        groups = ("--groups", "conv*", "--groups", "bn*", "--alphas", "6", "--bn-samples", "2048")
        top = ("--groups", "@top", "--alphas", "6", "--bn-samples", "2048")  # conv1, bn1, conv2, bn2, fc
        rows = [
            ("whole, 11 α", "plain loop (load_state_dict)", [py, str(script), init, final, images, labels, n, "11",
                                                            f"{tmp}/naive.csv"]),
            ("whole, 11 α", "interpscan --bn interpolate", run("--alphas", "11", "--bn", "interpolate")),
            ("whole, 11 α", "… --no-html", run("--alphas", "11", "--bn", "interpolate", "--no-html")),
            ("whole, 11 α", "… --no-html --bootstrap 0", run("--alphas", "11", "--bn", "interpolate", "--no-html",
                                                             "--bootstrap", "0")),
            ("groups conv*, bn* × 6 α", "interpscan --bn interpolate", run(*groups, "--bn", "interpolate")),
            ("groups conv*, bn* × 6 α", "interpscan --bn recompute", run(*groups, "--bn", "recompute")),
            ("groups @top (5) × 6 α", "interpscan --bn interpolate", run(*top, "--bn", "interpolate")),
            ("groups @top (5) × 6 α", "interpscan --bn recompute", run(*top, "--bn", "recompute")),
        ]  # fmt: skip
        rows = [r for r in rows if not args.only or r[0].startswith(args.only)]
        # round robin, so that a machine that slows down or speeds up during the run weighs on every row alike
        times: list[list[float]] = [[] for _ in rows]
        for _ in range(args.repeat):
            for i, (_, _, cmd) in enumerate(rows):
                times[i].append(run_once(cmd))
        print(f"| workload | command | seconds (median of {args.repeat}) | × first row of the workload |")
        print("|---|---|---|---|")
        base: dict[str, float] = {}
        for (workload, label, _), seconds in zip(rows, map(statistics.median, times), strict=True):
            base.setdefault(workload, seconds)
            print(f"| {workload} | {label} | {seconds:.2f} | {seconds / base[workload]:.2f} |", flush=True)


if __name__ == "__main__":
    main()

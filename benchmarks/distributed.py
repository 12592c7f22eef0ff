"""The speed-up of several CPU processes (torchrun, gloo) over one on the same scan, whole process included.

    python benchmarks/distributed.py [--repeat 3] [--nproc 2] [--alphas 21] [--groups @top]

Uses the demo's CNN checkpoints (tests/golden/init.pt, final.pt: width 16, batch norm) on the real Fashion-MNIST
test set (`apt-get install dataset-fashion-mnist`), `--bn recompute`. One process runs with every core's thread
(torch's default); N processes with 1 thread each, so both use the same cores. The commands alternate, ``--repeat``
times; the table gives each one's median wall-clock time and checks that their results.csv agree to 1e-6.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from interpscan.results import load_run

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _scan_args(out: Path, alphas: int, groups: str | None) -> list[str]:
    return [
        "run",
        str(GOLDEN / "init.pt"),
        str(GOLDEN / "final.pt"),
        "--data",
        "fashion-mnist",
        "--no-download",
        "--alphas",
        str(alphas),
        "--bn",
        "recompute",
        *(["--groups", groups] if groups else []),
        "--out",
        str(out),
        "--force",
        "--no-html",
        "-q",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--alphas", type=int, default=21)
    parser.add_argument("--groups", default="@top")
    args = parser.parse_args()
    if not FASHION.is_dir():
        sys.exit("needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        commands = {
            "1 process": ([sys.executable, "-m", "interpscan", *_scan_args(one, args.alphas, args.groups)], env),
            f"{args.nproc} processes (torchrun, 1 thread each)": (
                [
                    sys.executable,
                    "-m",
                    "torch.distributed.run",
                    "--standalone",
                    "--nproc-per-node",
                    str(args.nproc),
                    "-m",
                    "interpscan",
                    *_scan_args(many, args.alphas, args.groups),
                ],
                {**env, "OMP_NUM_THREADS": "1"},
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, (cmd, cmd_env) in commands.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, env=cmd_env, check=True, capture_output=True)
                times[name].append(time.perf_counter() - t0)
        a, b = load_run(one).results, load_run(many).results
        worst = float(((a["loss"] - b["loss"]).abs() / a["loss"].abs()).max())
    base = statistics.median(next(iter(times.values())))
    print("| command | median s | speed-up |\n| --- | --- | --- |")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} | {base / statistics.median(ts):.2f}× |")
    print(f"\nlargest relative difference of a loss between the two: {worst:.1e}")


if __name__ == "__main__":
    main()

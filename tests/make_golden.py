"""Write the golden runs (tests/golden/): each case's results.csv and summary.csv computed by a plain float64 loop,
not by interpscan's engine, and machine.json (the CPU and torch that computed them).

    python tests/make_golden.py                      # rewrite tests/golden/*/ from cases.json
    python tests/make_golden.py --check              # compute, compare with the files, write nothing
    python tests/make_golden.py --cases F --out DIR  # other cases (e.g. the pre-2026-12 ones), elsewhere

The loop is the one a careful user would write: build each point's state dict by hand (lerp per tensor in
float64), load it into a float64 copy of the model, re-estimate batch norm the way the policy says (a cumulative
average over the calibration batches, in batches of the scan's size), evaluate batch by batch, and take the mean
and standard error of the per-example losses. The summary's shape metrics and distances are interpscan.metrics'
formulas (tested on their own in test_metrics.py) applied to the reference curves. Data and the model's
architecture come from interpscan (the bundled subset, its seeded subsets, the zoo's ``cnn``).

It also checks that a float32 run cannot round its way to another golden accuracy: every prediction's top two
logits must be further apart than float32 rounding could move them.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

GOLDEN = Path(__file__).resolve().parent / "golden"
BATCH_SIZE = 256  # interpscan's default on CPU; batch statistics (--bn batch, recompute) depend on it
# top-1 minus top-2 logit, relative to the largest: ~40 float32 steps, where the demo CNN's float32 logits differ
# from its float64 ones by up to 6 (measured at α = 0, 0.5, 1 on the test split)
MIN_MARGIN = 5e-6


@dataclass(frozen=True)
class Case:
    """The flags of one golden case that change its numbers (a subset of `interpscan run`'s, same meaning)."""

    data: str
    splits: tuple[str, ...]
    alphas: tuple[float, ...]
    groups: tuple[str, ...]
    hold: str
    mode: str
    bn: str
    samples: int | None
    bn_samples: int


def parse_case(args: Sequence[str]) -> Case:
    """The case's `interpscan run` arguments, read as the CLI reads them (the flags the cases use)."""
    p = argparse.ArgumentParser(exit_on_error=False)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--alphas", type=int, default=21)
    p.add_argument("--alpha-range", default="0,1")
    p.add_argument("-g", "--groups", action="append", default=[])
    p.add_argument("--hold", default="final", choices=["final", "init"])
    p.add_argument("--mode", default="only", choices=["only", "all-but"])
    p.add_argument("--bn", default="recompute", choices=["recompute", "interpolate", "batch"])
    p.add_argument("--strategy")  # how, not what: the reference has one way
    p.add_argument("--samples", type=int)
    p.add_argument("--bn-samples", type=int, default=2048)
    a = p.parse_args(args)
    lo, hi = (float(v) for v in a.alpha_range.split(","))
    grid = [lo + (hi - lo) * k / (a.alphas - 1) for k in range(a.alphas)]
    alphas = tuple(sorted({*grid, *(e for e in (0.0, 1.0) if e not in grid)}))
    return Case(
        a.data, tuple(a.split.split(",")), alphas, tuple(a.groups), a.hold, a.mode, a.bn, a.samples, a.bn_samples
    )


def resolve_groups(patterns: Sequence[str], names: Sequence[str]) -> dict[str, list[str]]:
    """Group name -> its tensors, for the patterns the cases use: a module name with ``*``, or ``@top`` (each
    top-level module with tensors)."""
    import fnmatch

    modules = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in names))
    groups: dict[str, list[str]] = {}
    for pattern in patterns:
        matched = modules if pattern == "@top" else fnmatch.filter(modules, pattern)
        if not matched:
            raise ValueError(f"group {pattern!r} matches no module of {modules}")
        for module in matched:
            groups[module] = [n for n in names if n.startswith(module + ".")]
    return groups


@dataclass(frozen=True)
class Curve:
    name: str
    hold: str  # "" for the whole network
    mode: str
    moving: frozenset[str]


def curves(case: Case, names: Sequence[str]) -> list[Curve]:
    out = [Curve("all", "", "", frozenset(names))]
    for group, tensors in resolve_groups(case.groups, names).items():
        moving = set(tensors) if case.mode == "only" else set(names) - set(tensors)
        out.append(Curve(group, case.hold, case.mode, frozenset(moving)))
    return out


State = dict[str, torch.Tensor]
Data = dict[str, tuple[torch.Tensor, torch.Tensor]]


def lerp_state(start: State, end: State, curve: Curve, alpha: float, hold: float) -> State:
    """The point's state dict: the curve's moving tensors at ``alpha``, the others at ``hold``, in float64."""
    state = {}
    for name, s in start.items():
        if not s.is_floating_point():
            state[name] = end[name].clone()  # counters (num_batches_tracked) are the final checkpoint's
            continue
        c = alpha if name in curve.moving else hold
        state[name] = s.double() + c * (end[name].double() - s.double())
    return state


def evaluate(
    model: nn.Module, state: State, case: Case, data: Data, calibration: torch.Tensor | None
) -> tuple[dict[str, tuple[float, float, float, int]], float]:
    """One point: (loss, loss_se, accuracy, n) per split, and the smallest relative top-2 margin seen."""
    m = copy.deepcopy(model)
    m.load_state_dict(state)
    m.eval()
    bns = [mod for mod in m.modules() if isinstance(mod, _BatchNorm)]
    if case.bn == "recompute":
        assert calibration is not None
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average over the calibration batches
            bn.train()
        with torch.no_grad():
            for lo in range(0, len(calibration), BATCH_SIZE):
                m(calibration[lo : lo + BATCH_SIZE])
        m.eval()
    elif case.bn == "batch":
        for bn in bns:
            bn.train()  # each evaluation batch normalized by its own statistics
    out, margin = {}, math.inf
    with torch.no_grad():
        for split, (x, y) in data.items():
            losses, correct = [], 0
            for lo in range(0, len(x), BATCH_SIZE):
                logits = m(x[lo : lo + BATCH_SIZE])
                target = y[lo : lo + BATCH_SIZE]
                losses.append(F.cross_entropy(logits, target, reduction="none"))
                correct += int((logits.argmax(1) == target).sum())
                top = logits.topk(2, dim=1).values
                finite = top.isfinite().all(1)
                if finite.any():
                    gap = (top[finite, 0] - top[finite, 1]) / top[finite].abs().amax(1).clamp_min(1.0)
                    margin = min(margin, float(gap.min()))
            per = torch.cat(losses)
            n = len(per)
            se = float(per.std() / math.sqrt(n)) if per.isfinite().all() else math.nan
            out[split] = (float(per.mean()), se, correct / n, n)
    return out, margin


def run_case(case: Case, init: Path, final: Path) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """results.csv's and summary.csv's golden columns for one case, and its smallest top-2 margin."""
    from interpscan.data import load_split, open_data
    from interpscan.metrics import distances, summarize_curve
    from interpscan.models import build_model, parse_model_spec

    a, b = (torch.load(p, weights_only=True) for p in (init, final))
    info = a["interpscan"]
    model = build_model(parse_model_spec(info["model"], info["model_args"])).double()
    start, end = a["state_dict"], b["state_dict"]
    names = list(start)
    params = {n for n, _ in model.named_parameters()}
    source = open_data(case.data)

    def read(split: str, samples: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = load_split(source, split, samples=samples, seed=seed, normalization=source.normalization)
        assert isinstance(s.inputs, torch.Tensor)
        return s.inputs.double(), s.targets

    data = {split: read(split, case.samples, 0) for split in case.splits}
    calibration = read("train", case.bn_samples, 1)[0] if case.bn == "recompute" else None
    hold = 1.0 if case.hold == "final" else 0.0
    rows, margin = [], math.inf
    for curve in curves(case, names):
        for alpha in case.alphas:
            state = lerp_state(start, end, curve, alpha, hold)
            point, m = evaluate(model, state, case, data, calibration)
            margin = min(margin, m)
            for split, (loss, se, acc, n) in point.items():
                rows.append((curve, split, alpha, loss, se, acc, n))
    results = pd.DataFrame(
        [(c.name, s, al, lo, se, ac, n, c.hold, c.mode) for c, s, al, lo, se, ac, n in rows],
        columns=["curve", "split", "alpha", "loss", "loss_se", "accuracy", "n", "hold", "mode"],
    )
    # interpscan's order: curves as defined, splits as given, then α
    order = {
        "curve": {c.name: i for i, c in enumerate(curves(case, names))},
        "split": {s: i for i, s in enumerate(case.splits)},
    }
    results = results.sort_values(
        ["curve", "split", "alpha"], key=lambda col: col.map(order[str(col.name)]) if col.name in order else col
    ).reset_index(drop=True)
    summary = []
    for curve in curves(case, names):
        moved = [n for n in names if n in params and n in curve.moving]
        d = distances(start, end, moved)
        for split in case.splits:
            g = results[(results["curve"] == curve.name) & (results["split"] == split)]
            shape = summarize_curve(g["alpha"].tolist(), g["loss"].tolist(), g["accuracy"].tolist()).to_dict()
            summary.append(
                {
                    "curve": curve.name,
                    "split": split,
                    **shape,
                    "distance": d.distance,
                    "relative_distance": d.relative_distance,
                    "cosine": d.cosine,
                    "hold": curve.hold,
                    "mode": curve.mode,
                    "nonfinite_points": int((~np.isfinite(g["loss"].to_numpy())).sum()),
                }
            )
    return results, pd.DataFrame(summary), margin


SUMMARY_COLUMNS = [
    "curve", "split", "loss_start", "loss_end", "delta", "monotone", "barrier_linear", "barrier_linear_alpha",
    "barrier_max", "barrier_max_alpha", "error_barrier_linear", "error_barrier_max", "distance",
    "relative_distance", "cosine", "hold", "mode", "plateau_alpha", "nonfinite_points",
]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from floats import this_machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=GOLDEN / "cases.json")
    parser.add_argument("--out", type=Path, default=GOLDEN)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = parser.parse_args(argv)
    cases: dict[str, list[str]] = json.loads(args.cases.read_text())
    worst = 0.0
    for name, flags in cases.items():
        results, summary, margin = run_case(parse_case(flags), GOLDEN / "init.pt", GOLDEN / "final.pt")
        summary = summary[SUMMARY_COLUMNS]
        print(f"{name}: {len(results)} rows, smallest top-2 margin {margin:.2e} (relative)")
        if margin < MIN_MARGIN and not args.check:
            print(f"  a float32 run could round to another accuracy: choose other {name} inputs")
            return 1
        if args.check:
            for file, frame in (("results.csv", results), ("summary.csv", summary)):
                want = pd.read_csv(args.out / name / file, keep_default_na=False, na_values=[""])
                for column in frame.columns:
                    if frame[column].dtype.kind == "f":
                        got, ref = frame[column].to_numpy(), want[column].to_numpy(dtype=float)
                        both = np.isfinite(got) & np.isfinite(ref)
                        assert (np.isfinite(got) == np.isfinite(ref)).all(), (name, file, column)
                        scale = np.maximum(np.abs(ref[both]), 1.0)
                        err = float((np.abs(got[both] - ref[both]) / scale).max(initial=0.0))
                        worst = max(worst, err)
                        print(f"  {file} {column}: largest difference {err / 2**-23:.2f} float32 steps")
            continue
        (args.out / name).mkdir(parents=True, exist_ok=True)
        results.to_csv(args.out / name / "results.csv", index=False, float_format="%.10g")
        summary.to_csv(args.out / name / "summary.csv", index=False, float_format="%.10g")
    if args.check:
        print(f"largest difference: {worst / 2**-23:.2f} float32 steps (at 1.0 for values below it)")
    else:
        (args.out / "machine.json").write_text(json.dumps(this_machine(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Vlaar & Frankle (2022), "What can linear interpolation of neural network loss landscapes tell us?", reproduced
at small scale on Fashion-MNIST on a CPU: train, scan, compare, and write one HTML report.

    python examples/paper/reproduce.py --out paper-out           # the real Fashion-MNIST; see docs/paper.md
    python examples/paper/reproduce.py --out /tmp/paper --tiny   # the bundled subset, seconds: a smoke test

What it shows (the paper's findings, docs/design.md; docs/paper.md says which reproduced):
  (a) weight decay changes the shape of the path θ_init → θ_final, from a straight fall to a plateau at chance
      and a cliff at the end — under the BN policy that interpolates the running statistics as the paper does,
      and not once they are re-estimated (``recompute``);
  (b) layer-wise: a ResNet-18's stages and classifier rewound one at a time (``--groups 'layer*' fc``);
  (c) the shape of the path against final accuracy across runs (``interpscan compare``);
  (d) init → final → a fresh random initialization: a path through three checkpoints.

Every scan is ``interpscan run`` through the library (``run_scan``), so each run directory under ``runs/`` holds
init.pt, final.pt, train.json and one scan directory per policy that ``interpscan plot`` and ``compare`` read;
report.html shows them all, findings.csv says which finding reproduced and with which numbers.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import interpscan
from interpscan.api import Hooks, ScanConfig, ScanResult, run_scan
from interpscan.compare import Comparison, compare_runs
from interpscan.data import DataSource, load_split, open_data
from interpscan.errors import DataError, InterpscanError, OutputError, UsageError
from interpscan.models import ModelSpec, build_model, parse_model_spec
from interpscan.options import command_words, flags
from interpscan.plots import compare_figure, path_figure
from interpscan.report import Section, render_page, render_report, table_html, write_page
from interpscan.results import load_runs
from interpscan.rundir import prepare_output_dir, write_csv, write_json
from interpscan.train import TrainConfig, config_dict, save_checkpoint, train

CHANCE = math.log(10)  # cross-entropy of a uniform guess over Fashion-MNIST's 10 classes, nats
SWEEP = (0.0, 1e-3, 5e-3, 2e-2)  # the weight decays of (a), per SGD step (L2 coefficient)
BASE_WD = 5e-3  # the weight decay of (c)'s interventions (half the data, augmentation)
POLICIES = ("interpolate", "recompute")  # the paper's view (running statistics interpolated), and the honest one
PAPER_POLICY = "interpolate"
SHAPE_METRICS = (  # (c): the whole network's summary.csv columns set against final accuracy
    ("plateau_alpha", "plateau α"),
    ("barrier_linear", "B_lin"),
    ("delta", "Δ"),
    ("distance", "‖θ_T − θ_0‖"),
)
RANDOM_INIT_SEED = 1  # the fresh initialization at the end of (d)'s path (the run's own init used seed 0)

TITLE = "Vlaar & Frankle (2022) at small scale: Fashion-MNIST on a CPU"
DATA_HINT = (
    "the real Fashion-MNIST (60,000 + 10,000 images) is needed: on Debian/Ubuntu `apt-get install "
    "dataset-fashion-mnist` (it lands in /usr/share/datasets/fashion-mnist, found without flags); or put "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
    "t10k-labels-idx1-ubyte.gz (github.com/zalandoresearch/fashion-mnist) in a folder and pass --data-root FOLDER; "
    "or pass --download to fetch them (30 MiB); or --tiny for a smoke test on the bundled subset"
)


@dataclass(frozen=True)
class Size:
    """How much is trained and scanned: ``FULL`` (the reproduction) or ``TINY`` (the bundled subset, a test)."""

    data: str
    cnn_examples: int  # training images of each CNN (a seeded subset of the training split)
    cnn_epochs: int
    cnn_width: int
    resnet_examples: int
    resnet_epochs: int
    resnet_width: int
    samples: int  # test images per scan (a seeded subset: --samples)
    alphas: int  # points per path (per segment of (d)); the paper's grid has 50
    group_alphas: int  # points per curve of the layer-wise scan
    bn_samples: int  # training images that re-estimate the statistics at each point under recompute
    bootstrap: int  # resamples behind the 95% intervals


FULL = Size(
    data="fashion-mnist",
    cnn_examples=12_000,
    cnn_epochs=4,  # 376 steps of 128 images
    cnn_width=16,
    resnet_examples=10_000,
    resnet_epochs=3,
    resnet_width=8,
    samples=1000,
    alphas=51,
    group_alphas=21,
    bn_samples=512,
    bootstrap=1000,
)
TINY = Size(
    data="fashion-mnist-small",
    cnn_examples=256,
    cnn_epochs=1,
    cnn_width=4,
    resnet_examples=128,
    resnet_epochs=1,
    resnet_width=2,
    samples=64,
    alphas=5,
    group_alphas=3,
    bn_samples=32,
    bootstrap=20,
)


@dataclass(frozen=True)
class Recipe:
    """One network to train: a run directory ``runs/NAME`` and the label it carries in plots and tables."""

    name: str
    model: str
    model_args: Mapping[str, Any]
    config: TrainConfig
    varies: str  # what sets it apart, in words
    groups: tuple[str, ...] = ()  # --groups of its scan
    policies: tuple[str, ...] = POLICIES


def wd_text(wd: float) -> str:
    return "0" if wd == 0 else f"{wd:g}".replace("e-0", "e-")


def recipes(size: Size, train_examples: int) -> list[Recipe]:
    """(a)'s weight-decay sweep, (c)'s interventions and (b)'s ResNet-18: every network the reproduction trains.

    Every CNN starts from the same initial weights (seed 0) and sees the same examples in the same order, so the
    runs differ only in what their name says.
    """
    cnn = {"in_channels": 1, "num_classes": 10, "width": size.cnn_width}  # conv-BN-ReLU ×2, linear head
    fraction = min(1.0, size.cnn_examples / train_examples)
    base = TrainConfig(epochs=size.cnn_epochs, batch_size=128, lr=0.05, weight_decay=BASE_WD, data_fraction=fraction)
    out = [
        Recipe(f"cnn-wd{wd_text(wd)}", "cnn", cnn, replace(base, weight_decay=wd), f"weight decay {wd_text(wd)}")
        for wd in SWEEP
    ]
    out += [
        Recipe("cnn-half", "cnn", cnn, replace(base, data_fraction=fraction / 2), "half the training images"),
        Recipe("cnn-augment", "cnn", cnn, replace(base, augment=True), "random 2-pixel shifts and flips"),
    ]
    resnet = {"in_channels": 1, "num_classes": 10, "width": size.resnet_width}
    resnet_config = TrainConfig(
        epochs=size.resnet_epochs,
        batch_size=128,
        lr=0.1,
        weight_decay=5e-4,  # the paper's
        data_fraction=min(1.0, size.resnet_examples / train_examples),
    )
    out.append(
        Recipe(
            "resnet18",
            "resnet18",
            resnet,
            resnet_config,
            "ResNet-18, stages rewound one at a time",
            groups=("layer*", "fc"),
            policies=(PAPER_POLICY,),
        )
    )
    return out


# --- progress ------------------------------------------------------------------------------------------------


class Steps:
    """The reproduction's progress on stderr: one bar over its steps, one over the current step's work."""

    def __init__(self, total: int, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.overall = self.bar.add_task("[bold]reproducing the paper", total=total)
        self.current = self.bar.add_task("", total=None, visible=False)

    @contextmanager
    def step(self, description: str) -> Iterator[Callable[[int, int | None], None]]:
        """One step; yields ``advance(n, total)`` for its own bar (training steps, or a scan's point×batch)."""
        self.bar.reset(self.current, total=None, description=f"  {description}", visible=True)

        def advance(n: int, total: int | None) -> None:
            self.bar.update(self.current, advance=n, total=total)

        try:
            yield advance
        finally:
            self.bar.update(self.current, visible=False)
            self.bar.advance(self.overall)

    def say(self, message: str) -> None:
        self.bar.console.print(message, highlight=False)


# --- training and scanning -----------------------------------------------------------------------------------


@dataclass
class Trained:
    recipe: Recipe
    directory: Path
    spec: ModelSpec
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def train_run(recipe: Recipe, data: Any, directory: Path, steps: Steps) -> Trained:
    """Train ``recipe`` from seed 0; write init.pt (before the first step), final.pt and train.json."""
    spec = parse_model_spec(recipe.model, dict(recipe.model_args))
    torch.manual_seed(0)  # every run of one architecture starts from the same weights
    model = build_model(spec)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"train": config_dict(recipe.config), "written_by": "examples/paper/reproduce.py"}
    save_checkpoint(model, directory / "init.pt", spec, {**meta, "epoch": 0})
    with steps.step(f"training {recipe.name} ({recipe.varies})") as advance:
        start = time.perf_counter()
        done = 0

        def on_step(n: int, total: int) -> None:
            nonlocal done
            advance(n - done, total)
            done = n

        history = train(model, data, recipe.config, on_step=on_step)
        seconds = time.perf_counter() - start
    save_checkpoint(model, directory / "final.pt", spec, {**meta, "epoch": recipe.config.epochs})
    write_json(
        {"recipe": recipe.name, "model": spec.to_json(), "train": config_dict(recipe.config), "history": history},
        directory / "train.json",
    )
    return Trained(recipe, directory, spec, seconds, history)


def scan_command(config: ScanConfig, out: Path) -> list[str]:
    """The ``interpscan run`` command line that makes the same scan (recorded in run.json and the report)."""
    flags = command_words(config.read, config.options)
    return ["interpscan", "run", *map(str, config.checkpoints), "--data", str(config.data), *flags, "--out", str(out)]


@dataclass(frozen=True)
class Scanned:
    name: str  # the run's label
    policy: str
    directory: Path
    result: ScanResult
    command: str


def scan_run(
    name: str,
    init: Path,
    final: Path,
    out: Path,
    *,
    size: Size,
    policy: str,
    data_root: Path | None,
    steps: Steps,
    groups: Sequence[str] = (),
    alphas: int | None = None,
    random_init: int | None = None,
) -> Scanned:
    """``interpscan run INIT FINAL`` on ``size.samples`` test images under ``policy``, saved in ``out``; with
    ``random_init``, on through a fresh initialization seeded so (``--random-init``)."""
    config = ScanConfig.from_values(
        [init, final],
        {
            "data": size.data,
            "data_root": data_root,
            "download": False,  # the data was found before anything was trained
            "splits": ("test",),
            "samples": size.samples,
            "alphas": alphas or size.alphas,
            "bn": policy,
            "bn_samples": size.bn_samples,
            "groups": tuple(groups),
            "random_init": random_init,
            "bootstrap": size.bootstrap,
            "device": "cpu",
        },
    )
    command = scan_command(config, out)
    what = " by group" if groups else (" on to a random init" if random_init is not None else "")
    with steps.step(f"scanning {name}{what}, BN {policy}") as advance:
        result = run_scan(config, Hooks(progress=advance, command=command))
    result.save(out, force=True, html=False)  # one HTML page in all: the report
    return Scanned(name, policy, out, result, shlex.join(command))


# --- what the scans show -------------------------------------------------------------------------------------


def curve(result: ScanResult, name: str = "all", segment: int = 1) -> pd.DataFrame:
    """One curve's test points of one segment (a two-checkpoint run has one, segment 1), in α order."""
    rows = result.results
    return rows[(rows["curve"] == name) & (rows["split"] == "test") & (rows["segment"] == segment)].sort_values("alpha")


def summary_row(result: ScanResult, name: str = "all", segment: int = 1) -> pd.Series[Any]:
    rows = result.summary
    return rows[(rows["curve"] == name) & (rows["split"] == "test") & (rows["segment"] == segment)].iloc[0]


def loss_at(result: ScanResult, alpha: float, name: str = "all") -> float:
    """The test loss at the grid point nearest ``alpha``."""
    points = curve(result, name)
    return float(points.iloc[(points["alpha"] - alpha).abs().argmin()]["loss"])


def interval(row: pd.Series[Any], metric: str) -> str:
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    if low is None or pd.isna(low):
        return f"{row[metric]:.3g}"
    return f"{row[metric]:.3g} [{low:.3g}, {high:.3g}]"


@dataclass(frozen=True)
class Finding:
    """One of the paper's claims, what the reproduction measured, and whether that reproduces it."""

    part: str  # a, b, c, d
    claim: str
    measured: str
    verdict: str  # reproduced, partly, not reproduced


def sweep_findings(scans: Mapping[tuple[str, str], Scanned], sweep: Sequence[str]) -> list[Finding]:
    """(a): the shape of the path along the weight-decay sweep, under both BN policies."""
    found = []
    for policy in POLICIES:
        rows = {name: summary_row(scans[name, policy].result) for name in sweep}
        plateaus = [float(rows[name]["plateau_alpha"]) for name in sweep]
        mid = [loss_at(scans[name, policy].result, 0.5) for name in sweep]
        strongest = sweep[-1]
        cliff = plateaus[-1] >= 0.9 and mid[-1] >= 0.8 * CHANCE
        lengthens = all(b >= a - 0.02 for a, b in pairwise(plateaus)) and plateaus[-1] > plateaus[0]
        measured = "; ".join(
            f"{name}: plateau α {p:.2f}, L(0.5) {m:.2f}, B_lin {interval(rows[name], 'barrier_linear')}"
            for name, p, m in zip(sweep, plateaus, mid, strict=True)
        )
        found.append(
            Finding(
                "a",
                f"[BN {policy}] strong weight decay gives a plateau near chance (ln 10 = 2.30) and a cliff at the end; "
                "weight decay lengthens the plateau",
                measured,
                "reproduced"
                if cliff and lengthens
                else ("partly" if cliff or lengthens else f"not reproduced (strongest: {strongest})"),
            )
        )
        bumps = [name for name in sweep if bool(rows[name].get("rise_significant"))]
        found.append(
            Finding(
                "a",
                f"[BN {policy}] without weight decay the path has bumps (a rise beyond the examples' noise)",
                "; ".join(f"{name}: Δ {interval(rows[name], 'delta')}" for name in sweep),
                "reproduced"
                if sweep[0] in bumps
                else "not reproduced" + (f" (bumps in {', '.join(bumps)})" if bumps else ""),
            )
        )
    return found


def plateau_end(result: ScanResult, name: str = "all") -> float:
    """The last α at which the loss is still within 10% of chance (≥ 0.9·ln 10): where the plateau ends (0 when
    the path never sits there)."""
    points = curve(result, name)
    on = points[points["loss"] >= 0.9 * CHANCE]
    return float(on["alpha"].max()) if len(on) else 0.0


def vary_all_finding(scan: Scanned) -> Finding:
    """(b): the ResNet-18's whole-network curve, the paper's "vary all"."""
    row = summary_row(scan.result)
    end = plateau_end(scan.result)
    return Finding(
        "b",
        f"[BN {scan.policy}] vary all (ResNet-18, weight decay 5e-4): a plateau at chance (ln 10 = 2.30) until "
        "α≈0.98, then a cliff to the trained loss",
        f"L(0) {row['loss_start']:.2f}, L(0.5) {loss_at(scan.result, 0.5):.2f}, L(1) {row['loss_end']:.2f}; within "
        f"10% of chance until α {end:.2f}; plateau α {row['plateau_alpha']:.2f}; Δ {interval(row, 'delta')}",
        "reproduced" if end >= 0.9 else ("partly" if end >= 0.5 else "not reproduced"),
    )


def layer_findings(scan: Scanned) -> list[Finding]:
    """(b): which stage of the ResNet-18 is most sensitive to being rewound to its initial values."""
    rows = scan.result.summary
    groups = rows[(rows["curve"] != "all") & (rows["split"] == "test")].set_index("curve")
    by_group = {str(name): row for name, row in groups.iterrows()}
    start = groups["loss_start"].astype(float)
    ranked = ", ".join(f"{g} {v:.2f}" for g, v in start.sort_values(ascending=False).items())
    whole = summary_row(scan.result)
    early = [g for g in ("layer1", "layer2") if g in start.index]
    late = [g for g in ("layer4", "fc") if g in start.index]
    found = []
    if early and late:
        if start[early].min() > start[late].max():
            verdict = "reproduced"
        elif start[early].max() > start[late].max():
            verdict = "partly"
        else:
            verdict = "not reproduced"
        found.append(
            Finding(
                "b",
                "rewinding an early or middle stage (B1, B2) hurts most, the last stage (B4) and the classifier (fc) "
                "least; the whole-network curve shows none of it",
                f"L(0) with the group rewound: {ranked}; the whole network's L(0) {whole['loss_start']:.2f}, "
                f"L(1) {whole['loss_end']:.2f}",
                verdict,
            )
        )
    if "fc" in groups.index:
        fc = by_group["fc"]
        found.append(
            Finding(
                "b",
                "the classifier recovers fast: its curve is down near the trained network's loss by α≈0.4",
                f"fc: L(0) {fc['loss_start']:.2f}, L(0.4) {loss_at(scan.result, 0.4, 'fc'):.2f}, L(1) "
                f"{fc['loss_end']:.2f}, plateau α {fc['plateau_alpha']:.2f}",
                "reproduced" if float(fc["plateau_alpha"]) <= 0.5 else "not reproduced",
            )
        )
    middle = [g for g in ("layer2", "layer3") if g in groups.index]
    rising = [g for g in middle if bool(by_group[g].get("rise_significant"))]
    found.append(
        Finding(
            "b",
            "a middle stage's curve is not monotone (B2 and B3 in the paper)",
            "; ".join(f"{g}: Δ {interval(by_group[g], 'delta')}" for g in middle),
            "reproduced" if rising else "not reproduced",
        )
    )
    return found


def permutation_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Exact two-sided p-value of Spearman's ρ: the share of the n! orderings of ``y`` whose |ρ| is at least the
    observed one (n ≤ 8, else NaN). With 6 runs, p < 0.05 needs |ρ| ≥ 0.886."""
    from itertools import permutations

    import numpy as np

    from interpscan.compare import spearman

    pairs = [(a, b) for a, b in zip(x, y, strict=True) if math.isfinite(a) and math.isfinite(b)]
    observed, n = spearman([a for a, _ in pairs], [b for _, b in pairs])
    if not math.isfinite(observed) or n > 8:
        return math.nan
    # ρ of every ordering at once (8! = 40320 of them): Pearson's r of the ranks, ties averaged as spearman does
    rx = pd.Series([a for a, _ in pairs]).rank().to_numpy()
    ry = pd.Series([b for _, b in pairs]).rank().to_numpy()
    dx, dy = rx - rx.mean(), ry[np.array(list(permutations(range(n))))] - ry.mean()  # (n,), (n!, n)
    rhos = dy @ dx / math.sqrt(float(dx @ dx) * float(dy[0] @ dy[0]))
    return float(np.mean(np.abs(rhos) >= abs(observed) - 1e-12))


def compare_findings(
    comparison: Comparison, policy: str, base: str, interventions: Sequence[str], sweep: Sequence[str]
) -> list[Finding]:
    """(c): does the shape of the path say how well the network does?"""
    table = comparison.table.set_index("run")
    acc = table["final_accuracy"].astype(float)
    plateau = table["plateau_alpha"].astype(float)
    b_lin = table["barrier_linear"].astype(float)
    found = []
    same_shape = [
        r for r in interventions if abs(plateau[r] - plateau[base]) <= 0.05 and abs(b_lin[r] - b_lin[base]) <= 0.1
    ]
    differ = [r for r in interventions if abs(acc[r] - acc[base]) >= 0.01]
    found.append(
        Finding(
            "c",
            f"[BN {policy}] interventions that change the final accuracy (half the data, augmentation) leave the "
            "path's shape alike",
            "; ".join(
                f"{r}: accuracy {acc[r]:.3f}, plateau α {plateau[r]:.2f}, B_lin {b_lin[r]:.2f}"
                for r in (base, *interventions)
            ),
            "reproduced"
            if len(same_shape) == len(interventions) and differ
            else ("partly" if same_shape or differ else "not reproduced"),
        )
    )
    spread_shape = plateau[list(sweep)].max() - plateau[list(sweep)].min()
    spread_acc = acc[list(sweep)].max() - acc[list(sweep)].min()
    found.append(
        Finding(
            "c",
            f"[BN {policy}] weight decay changes the shape of the path far more than the final accuracy",
            f"across the sweep: plateau α spans {spread_shape:.2f} of the path, B_lin {b_lin[list(sweep)].min():.2f}–"
            f"{b_lin[list(sweep)].max():.2f}; final accuracy spans {100 * spread_acc:.1f} points "
            f"({acc[list(sweep)].min():.3f}–{acc[list(sweep)].max():.3f})",
            "reproduced"
            if spread_shape >= 0.15 and spread_acc <= 0.02
            else ("partly" if spread_shape >= 0.15 else "not reproduced"),
        )
    )
    tests = []
    for metric, name in SHAPE_METRICS:
        rho = comparison.correlations
        row = rho[(rho["metric"] == metric) & (rho["outcome"] == "final_accuracy")].iloc[0]
        p = permutation_p(table[metric].astype(float).tolist(), acc.tolist())
        tests.append((name, float(row["spearman"]), int(row["n"]), p))
    significant = [name for name, _, _, p in tests if math.isfinite(p) and p < 0.05]
    found.append(
        Finding(
            "c",
            f"[BN {policy}] no shape metric predicts the final accuracy across runs",
            "; ".join(f"{name}: ρ {rho:+.2f} (n={n}, exact p {p:.2f})" for name, rho, n, p in tests),
            "reproduced" if not significant else f"not reproduced ({', '.join(significant)} significant at p < 0.05)",
        )
    )
    return found


def three_point_path(trained: Trained, size: Size, data_root: Path | None, policy: str, steps: Steps) -> Scanned:
    """init → final → random init (``--random-init``): ``runs/NAME/path3-POLICY``, segments 1 and 2."""
    return scan_run(
        trained.recipe.name,
        trained.directory / "init.pt",
        trained.directory / "final.pt",
        trained.directory / f"path3-{policy}",
        size=size,
        policy=policy,
        data_root=data_root,
        steps=steps,
        random_init=RANDOM_INIT_SEED,
    )


def rise_alpha(alphas: Sequence[float], losses: Sequence[float]) -> float:
    """Where a rising segment has done 90% of its rise: the first α with L(α) ≥ L(0) + 0.9·(L(1) − L(0)).
    The mirror of ``plateau_alpha``: a path that leaves at once gives a small α, a straight line 0.9."""
    target = losses[0] + 0.9 * (losses[-1] - losses[0])
    return next((a for a, v in zip(alphas, losses, strict=True) if v >= target), math.nan)


def three_point_findings(paths: Sequence[Scanned]) -> list[Finding]:
    """(d): the trained network's neighbourhood towards its own init and towards a stranger's."""
    found = []
    for path in paths:
        one, two = curve(path.result, segment=1), curve(path.result, segment=2)
        p1 = float(summary_row(path.result, segment=1)["plateau_alpha"])
        r2 = rise_alpha(two["alpha"].tolist(), two["loss"].tolist())
        l0, l1, l2 = float(one["loss"].iloc[0]), float(one["loss"].iloc[-1]), float(two["loss"].iloc[-1])
        mirror = math.isfinite(r2) and abs((1 - r2) - p1) <= 0.1
        found.append(
            Finding(
                "d",
                f"[BN {path.policy}] going on from the trained network to a fresh random initialization looks like "
                "the way back to its own: up to about chance, with the plateau and cliff mirrored",
                f"L(init) {l0:.2f}, L(final) {l1:.2f}, L(random init) {l2:.2f}; way in: plateau α {p1:.2f}; "
                f"way out: 90% of the rise by α {r2:.2f} (mirrored: 1 − α = {1 - r2:.2f})",
                "reproduced" if mirror and abs(l2 - l0) <= 0.3 else "not reproduced",
            )
        )
    return found


# --- the report ----------------------------------------------------------------------------------------------


def overlay(scans: Sequence[Scanned]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Several scans' results and summaries as one frame each, a ``run`` column first (plots.path_figure)."""
    results = pd.concat([s.result.results.assign(run=s.name) for s in scans], ignore_index=True)
    summary = pd.concat([s.result.summary.assign(run=s.name) for s in scans], ignore_index=True)
    return results, summary


def shape_table(scans: Sequence[Scanned]) -> pd.DataFrame:
    """One row per scan: the whole network's test path in numbers."""
    rows = []
    for scan in scans:
        row = summary_row(scan.result)
        end = curve(scan.result).iloc[-1]
        rows.append(
            {
                "run": scan.name,
                "bn": scan.policy,
                "L(0)": row["loss_start"],
                "L(0.5)": loss_at(scan.result, 0.5),
                "L(0.9)": loss_at(scan.result, 0.9),
                "L(1)": row["loss_end"],
                "accuracy at α=1": end["accuracy"],
                "plateau α": row["plateau_alpha"],
                "plateau α, 95% CI": interval(row, "plateau_alpha"),
                "B_lin, 95% CI": interval(row, "barrier_linear"),
                "Δ, 95% CI": interval(row, "delta"),
                "rise significant": row.get("rise_significant"),
                "‖θ_T − θ_0‖": row["distance"],
            }
        )
    return pd.DataFrame(rows)


def findings_frame(findings: Sequence[Finding]) -> pd.DataFrame:
    # the verdict before the long texts: the report's table scrolls sideways
    return pd.DataFrame([vars(f) for f in findings], columns=["part", "verdict", "claim", "measured"])


@dataclass
class Reproduction:
    """Everything the report shows."""

    size: Size
    trained: list[Trained]
    sweep: dict[str, list[Scanned]]  # policy -> the sweep's scans
    interventions: dict[str, list[Scanned]]
    layers: Scanned
    comparisons: dict[str, Comparison]
    paths: list[Scanned]
    findings: list[Finding]
    timings: list[tuple[str, float]]
    seconds: float


def report_sections(rep: Reproduction) -> list[Section]:
    """report.html's sections: the findings first, then one per part with its figures and tables."""
    size = rep.size
    verdicts = findings_frame(rep.findings)
    sections = [
        Section(
            "Findings",
            notes=[
                "Each row is a claim of Vlaar & Frankle (2022), what this reproduction measured, and the "
                "verdict the script draws from the numbers with the rule in examples/paper/reproduce.py. 95% "
                "intervals are bootstrap intervals over the test images (summary.csv's *_ci_low, *_ci_high).",
            ],
            tables=[("Findings", table_html(verdicts, table_id="findings", caption="findings.csv"))],
        )
    ]
    sweep_figures = []
    for policy, scans in rep.sweep.items():
        results, summary = overlay(scans)
        sweep_figures.append(
            (f"sweep-{policy}", path_figure(results, summary, title=f"weight-decay sweep, BN {policy}"))
        )
    sections.append(
        Section(
            "(a) Weight decay and the shape of the path",
            notes=[
                f"A small CNN (two conv-BN-ReLU stages, width {size.cnn_width}) trained on {size.cnn_examples:,} "
                f"Fashion-MNIST images for {size.cnn_epochs} epochs (SGD, Nesterov momentum 0.9, peak lr 0.05 "
                "cosine-decayed, batch 128), from the same initial weights, with weight decay "
                f"{', '.join(wd_text(w) for w in SWEEP)}. Test loss along θ(α) on {size.samples:,} test images, "
                f"{size.alphas} points. The first figure interpolates the BN running statistics with the weights "
                "(what interpolating a state dict does, as the paper's figures do); the second re-estimates them at "
                "every point (recompute).",
            ],
            figures=sweep_figures,
            tables=[
                (
                    "The whole network's path, per run and policy",
                    table_html(
                        shape_table([s for scans in rep.sweep.values() for s in scans]),
                        table_id="sweep",
                        caption="from each scan's summary.csv and results.csv (test split)",
                    ),
                )
            ],
        )
    )
    results, summary = rep.layers.result.results, rep.layers.result.summary
    groups = summary[summary["split"] == "test"][
        ["curve", "loss_start", "loss_end", "plateau_alpha", "delta", "delta_ci_low", "delta_ci_high", "distance"]
    ]
    sections.append(
        Section(
            "(b) Layer-wise: which stage is sensitive to its initialization",
            notes=[
                f"A CIFAR-style ResNet-18 at width {size.resnet_width} (stages layer1–layer4 = the paper's B1–B4, "
                f"classifier fc) trained on {size.resnet_examples:,} images for {size.resnet_epochs} epochs "
                "(weight decay 5e-4, as the paper). Each group moves from its initial to its final value while "
                f"every other tensor stays final (--groups 'layer*' --groups fc), BN {rep.layers.policy}, "
                f"{size.group_alphas} points per curve.",
            ],
            figures=[("layers", path_figure(results, summary, title="ResNet-18, one stage rewound at a time"))],
            tables=[("Per group", table_html(groups, table_id="groups", caption="summary.csv, test split"))],
        )
    )
    compare_tables = []
    figures = []
    for policy, comparison in rep.comparisons.items():
        if policy == PAPER_POLICY:
            figures.append(
                (
                    f"compare-{policy}",
                    compare_figure(
                        comparison.table,
                        comparison.correlations,
                        metrics=list(SHAPE_METRICS),
                        outcomes=[("final_accuracy", "final test accuracy"), ("final_loss", "final test loss")],
                        title=f"shape vs final accuracy, BN {policy}",
                    ),
                )
            )
        columns = ["run", "final_accuracy", "final_loss", "plateau_alpha", "barrier_linear", "delta", "distance"]
        compare_tables.append(
            (f"compare.csv, BN {policy}", table_html(comparison.table[columns], table_id=f"compare-{policy}"))
        )
        compare_tables.append(
            (
                f"correlations.csv, BN {policy}",
                table_html(comparison.correlations, table_id=f"correlations-{policy}"),
            )
        )
    sections.append(
        Section(
            "(c) Does the shape of the path predict accuracy?",
            notes=[
                "interpscan compare over the six CNN runs: the sweep, and two interventions on the weight decay "
                f"{wd_text(BASE_WD)} run (half the training images; random shifts and flips). Outcomes are each "
                "scan's α=1 point. Spearman's ρ across runs; findings.csv adds its exact permutation p-value.",
            ],
            figures=figures,
            tables=compare_tables,
        )
    )
    path_figures = [
        (
            f"path3-{path.policy}",
            path_figure(
                path.result.results, path.result.summary, title=f"init → final → random init, BN {path.policy}"
            ),
        )
        for path in rep.paths
    ]
    sections.append(
        Section(
            "(d) init → final → random init",
            notes=[
                f"The weight decay {wd_text(SWEEP[-1])} CNN's path from its initial weights (t=0) to its final weights "
                f"(t=1), then on to a fresh initialization of the same architecture (--random-init "
                f"{RANDOM_INIT_SEED}, t=2); {size.alphas} points per segment.",
            ],
            figures=path_figures,
        )
    )
    timing = pd.DataFrame(rep.timings, columns=["step", "seconds"])
    commands = pd.DataFrame(
        [
            {"run": s.name, "bn": s.policy, "command": s.command}
            for s in [
                *(x for v in rep.sweep.values() for x in v),
                *(x for v in rep.interventions.values() for x in v),
                rep.layers,
                *rep.paths,
            ]
        ]
    )
    sections.append(
        Section(
            "How this was made",
            notes=[
                f"python {' '.join(shlex.quote(a) for a in sys.argv)} — {rep.seconds / 60:.1f} minutes "
                f"(torch {torch.__version__}, {torch.get_num_threads()} threads). Every scan equals the "
                "interpscan run command listed (paths relative to where the script ran).",
            ],
            tables=[
                ("Time per step", table_html(timing, table_id="timings")),
                ("Each scan as a command", table_html(commands, table_id="commands")),
            ],
        )
    )
    return sections


def report_page(rep: Reproduction, sections: Sequence[Section]) -> str:
    manifests = [(f"run.json of {s.name}, BN {s.policy}", s.result.manifest) for s in rep.sweep[PAPER_POLICY]]
    return render_report(
        title=TITLE,
        sections=sections,
        notes=[f"interpscan {interpscan.__version__}; {len(rep.trained)} networks trained, data {rep.size.data}"],
        manifests=manifests,
    )


def find_browser() -> str | None:
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
    return next((path for name in names if (path := shutil.which(name))), None)


def check_browser() -> str:
    """The browser ``--png`` draws with.

    Raises:
        UsageError: no Chromium or Chrome is installed.
    """
    browser = find_browser()
    if browser is None:
        raise UsageError(
            "--png needs a Chromium or Chrome to draw the figures, and none is installed",
            hint="apt-get install chromium, or open report.html and use each figure's camera icon",
        )
    return browser


def write_pngs(sections: Sequence[Section], directory: Path, steps: Steps) -> list[Path]:
    """Each figure of the report as DIRECTORY/ID.png, drawn by a headless Chromium (for docs/paper.md).

    Raises:
        UsageError: no Chromium or Chrome is installed.
        OutputError: the browser failed to draw a figure.
    """
    browser = check_browser()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    figures = [(div_id, fig) for section in sections for div_id, fig in section.figures]
    with tempfile.TemporaryDirectory() as scratch, steps.step("drawing the figures as PNG") as advance:
        for div_id, fig in figures:
            page = Path(scratch) / f"{div_id}.html"
            title = str(fig.layout.title.text or div_id)
            write_page(page, render_page(title=title, figures=[(div_id, fig)]))
            height = int(fig.layout.height or 480) + 120  # the page's heading above the figure
            target = directory / f"{div_id}.png"
            command = [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--window-size=1400,{height}",
                "--virtual-time-budget=10000",
                f"--user-data-dir={scratch}/profile",
                f"--screenshot={target}",
                page.as_uri(),
            ]
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
            if done.returncode != 0 or not target.is_file():
                raise OutputError(f"{browser} could not draw {div_id}: {done.stderr.strip()[-300:]}")
            written.append(target)
            advance(1, len(figures))
    return written


# --- the whole reproduction ----------------------------------------------------------------------------------


def find_data(size: Size, data_root: Path | None, download: bool) -> DataSource:
    """The dataset, found before anything is trained or written.

    Raises:
        DataError: the real Fashion-MNIST is not there; the hint says where to get it.
    """
    try:
        return open_data(size.data, data_root, download=download)
    except DataError as exc:
        raise DataError(exc.text, hint=DATA_HINT) from exc  # exc.text: its options still marked (errors.opt)


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def choose_threads(asked: int | None) -> int:
    """torch's CPU threads: ``asked``, else 1 on a busy machine and torch's default otherwise.

    On a machine whose cores are already busy, two threads that wait for each other at every small op make the
    small networks here several times slower than one thread (see benchmarks/README.md).
    """
    if asked is not None:
        return max(1, asked)
    load = load_average()
    busy = load is not None and load >= (os.cpu_count() or 1)
    return 1 if busy else torch.get_num_threads()


class Timer:
    """Wall time per step, for timings.json and the report."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.steps.append((what, round(time.perf_counter() - t0, 1)))


def scan_all(
    plan: Sequence[Recipe],
    trained: Mapping[str, Trained],
    size: Size,
    data_root: Path | None,
    steps: Steps,
    timer: Timer,
) -> dict[tuple[str, str], Scanned]:
    """Every run's path under each of its policies: ``runs/NAME/scan-POLICY``."""
    scans = {}
    for recipe in plan:
        run = trained[recipe.name]
        for policy in recipe.policies:
            with timer(f"scan {recipe.name}, BN {policy}"):
                scans[recipe.name, policy] = scan_run(
                    recipe.name,
                    run.directory / "init.pt",
                    run.directory / "final.pt",
                    run.directory / f"scan-{policy}",
                    size=size,
                    policy=policy,
                    data_root=data_root,
                    steps=steps,
                    groups=recipe.groups,
                    alphas=size.group_alphas if recipe.groups else None,
                )
    return scans


def compare_all(scans: Mapping[tuple[str, str], Scanned], names: Sequence[str], out: Path) -> dict[str, Comparison]:
    """``interpscan compare`` over the CNN runs under each policy: ``compare-POLICY/compare.csv`` and
    ``correlations.csv``."""
    comparisons = {}
    for policy in POLICIES:
        runs = load_runs([scans[name, policy].directory for name in names], need_summary=True)
        comparisons[policy] = compare_runs(runs, names)
        (out / f"compare-{policy}").mkdir(exist_ok=True)
        write_csv(comparisons[policy].table, out / f"compare-{policy}" / "compare.csv")
        write_csv(comparisons[policy].correlations, out / f"compare-{policy}" / "correlations.csv")
    return comparisons


def reproduce(args: argparse.Namespace) -> Reproduction:
    """Train, scan, compare; write findings.csv, timings.json and report.html (and figures/ with ``--png``)."""
    start = time.perf_counter()
    load_at_start = load_average()
    size = TINY if args.tiny else FULL
    torch.set_num_threads(choose_threads(args.threads))
    source = find_data(size, args.data_root, args.download)
    if args.png:
        check_browser()  # before anything is trained
    out = prepare_output_dir(args.out, force=args.force)
    train_split = load_split(source, "train", normalization=source.normalization)
    plan = recipes(size, len(train_split))
    cnns = [r.name for r in plan if r.model == "cnn"]
    sweep, interventions = cnns[: len(SWEEP)], cnns[len(SWEEP) :]
    steps = Steps(len(plan) + sum(len(r.policies) for r in plan) + len(POLICIES) + args.png, enabled=not args.quiet)
    timer = Timer()
    with steps.bar:
        trained = {}
        for recipe in plan:
            with timer(f"train {recipe.name}"):
                trained[recipe.name] = train_run(recipe, train_split, out / "runs" / recipe.name, steps)
        del train_split  # the scans read their own data, as `interpscan run` does
        scans = scan_all(plan, trained, size, args.data_root, steps, timer)
        paths = []
        for policy in POLICIES:
            with timer(f"scan {sweep[-1]} on to a random init, BN {policy}"):
                paths.append(three_point_path(trained[sweep[-1]], size, args.data_root, policy, steps))
        comparisons = compare_all(scans, cnns, out)
        layers = scans["resnet18", PAPER_POLICY]
        base = f"cnn-wd{wd_text(BASE_WD)}"
        rep = Reproduction(
            size=size,
            trained=list(trained.values()),
            sweep={p: [scans[n, p] for n in sweep] for p in POLICIES},
            interventions={p: [scans[n, p] for n in interventions] for p in POLICIES},
            layers=layers,
            comparisons=comparisons,
            paths=paths,
            findings=[
                *sweep_findings(scans, sweep),
                vary_all_finding(layers),
                *layer_findings(layers),
                *(f for p in POLICIES for f in compare_findings(comparisons[p], p, base, interventions, sweep)),
                *three_point_findings(paths),
            ],
            timings=timer.steps,
            seconds=time.perf_counter() - start,
        )
        write_csv(findings_frame(rep.findings), out / "findings.csv")
        sections = report_sections(rep)
        write_page(out / "report.html", report_page(rep, sections))
        if args.png:
            with timer("figures as PNG"):
                write_pngs(sections, out / "figures", steps)
    rep.seconds = time.perf_counter() - start
    write_json(
        {
            "seconds": round(rep.seconds, 1),
            "steps": dict(timer.steps),
            "size": vars(size),
            "threads": torch.get_num_threads(),
            "cores": os.cpu_count(),
            # how busy the machine was: other work on its cores slows every step
            "load_average_at_start": load_at_start,
            "load_average_at_end": load_average(),
        },
        out / "timings.json",
    )
    return rep


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Reproduce Vlaar & Frankle (2022) at small scale on Fashion-MNIST: train, scan, compare, report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="output directory (new or empty)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.add_argument("--data-root", type=Path, help="where the Fashion-MNIST IDX files are [default: interpscan's]")
    p.add_argument("--download", action="store_true", help="fetch Fashion-MNIST (30 MiB) when it is not found")
    p.add_argument("--tiny", action="store_true", help="a smoke test in seconds on the bundled subset")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch [default: 1 when the machine is busy (load average ≥ cores), else torch's]",
    )
    p.add_argument("--png", action="store_true", help="also write each figure as figures/ID.png (needs Chromium)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rep = reproduce(args)
    except InterpscanError as exc:
        if os.environ.get("INTERPSCAN_DEBUG"):
            raise
        message, hint = exc.rendered(flags())  # this script's flags are interpscan's: --data-root, --out, --force
        print(f"error: {message}", file=sys.stderr)
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
        return exc.exit_code
    for f in rep.findings:
        print(f"({f.part}) {f.verdict}: {f.claim}\n    {f.measured}")
    print(f"{rep.seconds / 60:.1f} minutes; wrote {args.out / 'report.html'} and {args.out / 'findings.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
